"""Experiments: A/B and multivariate tests with an optional control group, as frozen objects.

An experiment splits customers between *arms*. Each arm carries a *treatment*: a small mapping
the decision core applies (``{"policy": "ucb"}``, ``{"offer": "cashback"}``,
``{"framing": "urgency"}``, ``{"message": "m2"}``...). A *control group* receives
``{"control": "no_action"}`` (nothing) or ``{"control": "random"}`` (a uniformly random eligible
offer). The JSON shape (the engine-config ``experiments`` list holds these)::

    {
      "id": "framing-test", "use_case": "default",          # use_case: null = every use case
      "control": {"share": 0.1, "mode": "no_action"},       # optional; mode "no_action"|"random"
      "arms": [{"name": "A", "weight": 1, "treatment": {"framing": "neutral"}},
               {"name": "B", "weight": 1, "treatment": {"framing": "urgency"}}],
      "factors": {"framing": ["neutral", "urgency"], "message": ["m1", "m2"]},  # or this
      "alpha": 0.05, "srm_alpha": 0.001, "plan_n": 10000, "min_n": 30,
      "guardrails": [{"metric": "opt_out", "max_rate": 0.01, "max_increase": 0.002}],
      "window_s": 604800,                                   # per customer [use case's window]
      "goal": {"type": "transaction", "category": "travel"}, # optional goal interaction
      "enabled": true, "salt": "framing-test"               # salt: re-randomise by changing it
    }

The unit is the customer (``enrolment.py``): enrolled at the first exposure, converted by the
first goal event inside ``window_s`` (a response to a decision made under the experiment, or
the ``goal`` interaction: how a ``no_action`` control converts), settled as one outcome when
the window closes.

``alpha`` bounds the chance that any arm *ever* shows a false lift however often statistics are
read; ``plan_n`` is the number of outcomes per arm at which intervals are tightest (any value
keeps them valid); no claim is made before ``min_n`` outcomes per arm; ``srm_alpha`` is the
sample-ratio alarm threshold. Guardrail rates are per exposure.

``factors`` builds a full-factorial multivariate test (one equally weighted arm per
combination, named ``framing=urgency|message=m2``); give ``arms`` or ``factors``, not both.
The control share is taken first; the other arms split the rest in proportion to their weights.

>>> exp = parse_experiment({"id": "x", "control": {"share": 0.2},
...                         "factors": {"framing": ["neutral", "urgency"]}})
>>> [a.name for a in exp.arms], exp.shares.tolist()
(['control', 'framing=neutral', 'framing=urgency'], [0.2, 0.4, 0.4])

A key not in the shape above is refused with its JSON path:

>>> parse_experiments([{"id": "x", "arms": [{"name": "A"}, {"name": "B", "wieght": 2}]}])
Traceback (most recent call last):
...
stream_app.core.catalogue.ConfigError: experiments[0].arms[1]: unknown key ['wieght'] (known: name, weight, treatment)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

from stream_app.core.catalogue import ConfigError, refuse_unknown_keys

__all__ = ["Arm", "Guardrail", "Experiment", "parse_experiment", "parse_experiments", "CONTROL"]

CONTROL = "control"
CONTROL_MODES = ("no_action", "random")
EXPERIMENT_KEYS = ("id", "use_case", "control", "arms", "factors", "alpha", "srm_alpha", "plan_n",
                   "min_n", "guardrails", "enabled", "salt", "window_s", "goal")


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    weight: float
    treatment: Mapping[str, Any]
    control: bool = False


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A harm metric counted per exposure (e.g. opt-outs); alarms on anytime-valid evidence
    that its rate exceeds ``max_rate``, or exceeds the baseline's by more than ``max_increase``."""

    metric: str
    max_rate: float | None = None
    max_increase: float | None = None


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    arms: tuple[Arm, ...]
    use_case: str | None = None
    salt: str = ""
    alpha: float = 0.05
    srm_alpha: float = 0.001
    plan_n: float = 10_000.0
    min_n: int = 30
    guardrails: tuple[Guardrail, ...] = ()
    enabled: bool = True
    window_s: float | None = None  # a customer's measurement window (None: the use case's)
    goal_type: str | None = None  # the goal interaction's type (None: responses only)
    goal_category: str | None = None  # ... and its category (None: any)
    shares: np.ndarray = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        w = np.array([a.weight for a in self.arms], np.float64)
        shares = w / w.sum()
        shares.flags.writeable = False
        object.__setattr__(self, "shares", shares)
        object.__setattr__(self, "salt", self.salt or self.id)

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    @property
    def baseline(self) -> int:
        """Index of the arm lifts are measured against: the control group, else the first arm."""
        return next((i for i, a in enumerate(self.arms) if a.control), 0)

    def index_of(self, arm: str) -> int:
        try:
            return self.arm_names.index(arm)
        except ValueError:
            raise KeyError(f"experiment {self.id!r} has no arm {arm!r}") from None

    def applies_to(self, use_case: str) -> bool:
        return self.enabled and (self.use_case is None or self.use_case == use_case)

    def is_goal(self, interaction: Mapping[str, Any]) -> bool:
        """Whether an interaction is this experiment's goal event."""
        return self.goal_type is not None and interaction.get("type") == self.goal_type and (
            self.goal_category is None or interaction.get("category") == self.goal_category)


def _prob(doc: Mapping[str, Any], key: str, where: str, default: float, hi: float = 1.0) -> float:
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < hi:
        raise ConfigError(f"{where}: {key} must be a number in (0, {hi:g})")
    return float(v)


def _rate(doc: Mapping[str, Any], key: str, where: str) -> float | None:
    v = doc.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
        raise ConfigError(f"{where}: guardrail {key} must be a number >= 0")
    return None if v is None else float(v)


def _arms(doc: Mapping[str, Any], where: str, path: str) -> list[Arm]:
    if ("arms" in doc) == ("factors" in doc):
        raise ConfigError(f"{where}: give either 'arms' or 'factors'")
    if "factors" in doc:
        factors = doc["factors"]
        if not isinstance(factors, Mapping) or not factors or not all(
            isinstance(v, list) and v for v in factors.values()
        ):
            raise ConfigError(f"{where}: factors must map names to non-empty lists of levels")
        names = list(factors)
        return [
            Arm("|".join(f"{k}={v}" for k, v in zip(names, combo)), 1.0,
                MappingProxyType(dict(zip(names, combo))))  # fmt: skip
            for combo in itertools.product(*(factors[k] for k in names))
        ]
    arms = []
    for i, a in enumerate(doc["arms"] if isinstance(doc["arms"], list) else [None]):
        if not isinstance(a, Mapping) or not isinstance(a.get("name"), str) or not a["name"]:
            raise ConfigError(f"{where}: every arm needs a non-empty string name")
        refuse_unknown_keys(a, ("name", "weight", "treatment"), f"{path}.arms[{i}]")
        w = a.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0:
            raise ConfigError(f"{where}: arm {a['name']!r} weight must be > 0")
        treatment = a.get("treatment", {})
        if not isinstance(treatment, Mapping):
            raise ConfigError(f"{where}: arm {a['name']!r} treatment must be an object")
        arms.append(Arm(a["name"], float(w), MappingProxyType(dict(treatment))))
    return arms


def parse_experiment(doc: Mapping[str, Any], path: str = "experiment") -> Experiment:
    """One experiment from its JSON, or ``ConfigError`` with a one-line reason (``path``: where
    the experiment is in the config, for the reason)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise ConfigError(f"{path}: experiment needs a non-empty string id: {str(doc)[:200]}")
    refuse_unknown_keys(doc, EXPERIMENT_KEYS, path)
    where = f"experiment {doc['id']!r}"
    arms = _arms(doc, where, path)
    if len(arms) + ("control" in doc) < 2:
        raise ConfigError(f"{where}: needs at least two arms (a control group counts)")
    if "control" in doc:
        ctl = doc["control"]
        if not isinstance(ctl, Mapping):
            raise ConfigError(f"{where}: control must be an object")
        refuse_unknown_keys(ctl, ("share", "mode"), f"{path}.control")
        share = _prob(ctl, "share", f"{where} control", 0.1)
        mode = ctl.get("mode", "no_action")
        if mode not in CONTROL_MODES:
            raise ConfigError(f"{where}: control mode must be one of {CONTROL_MODES}")
        total = sum(a.weight for a in arms)
        arms = [Arm(CONTROL, share, MappingProxyType({"control": mode}), control=True)] + [
            Arm(a.name, (1 - share) * a.weight / total, a.treatment) for a in arms
        ]
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: arm names must be unique ('control' is reserved)")
    guardrails = []
    for i, g in enumerate(doc.get("guardrails", [])):
        if not isinstance(g, Mapping) or not isinstance(g.get("metric"), str):
            raise ConfigError(f"{where}: every guardrail needs a string metric")
        refuse_unknown_keys(g, ("metric", "max_rate", "max_increase"), f"{path}.guardrails[{i}]")
        gr = Guardrail(g["metric"], _rate(g, "max_rate", where), _rate(g, "max_increase", where))
        if gr.max_rate is None and gr.max_increase is None:
            raise ConfigError(f"{where}: guardrail {gr.metric!r} needs max_rate or max_increase")
        guardrails.append(gr)
    if len({g.metric for g in guardrails}) != len(guardrails):
        raise ConfigError(f"{where}: guardrail metrics must be unique")
    plan_n = doc.get("plan_n", 10_000)
    min_n = doc.get("min_n", 30)
    if isinstance(plan_n, bool) or not isinstance(plan_n, (int, float)) or plan_n <= 0:
        raise ConfigError(f"{where}: plan_n must be > 0")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 2:
        raise ConfigError(f"{where}: min_n must be an integer >= 2")
    if not isinstance(doc.get("enabled", True), bool):
        raise ConfigError(f"{where}: enabled must be true or false")
    use_case = doc.get("use_case")
    if use_case is not None and not isinstance(use_case, str):
        raise ConfigError(f"{where}: use_case must be a string or null")
    window = doc.get("window_s")
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float))
                               or not 0 < window <= 366 * 86400):
        raise ConfigError(f"{where}: window_s must be a number of seconds in (0, 1 year]")
    goal = doc.get("goal")
    if goal is not None:
        if not isinstance(goal, Mapping) or not isinstance(goal.get("type"), str):
            raise ConfigError(f"{where}: goal must be an object with an interaction type")
        refuse_unknown_keys(goal, ("type", "category"), f"{path}.goal")
        if goal.get("category") is not None and not isinstance(goal["category"], str):
            raise ConfigError(f"{where}: goal.category must be a string")
    return Experiment(
        id=doc["id"],
        arms=tuple(arms),
        use_case=use_case,
        salt=str(doc.get("salt", "")),
        alpha=_prob(doc, "alpha", where, 0.05, 0.5),
        srm_alpha=_prob(doc, "srm_alpha", where, 0.001, 0.5),
        plan_n=float(plan_n),
        min_n=min_n,
        guardrails=tuple(guardrails),
        enabled=doc.get("enabled", True),
        window_s=None if window is None else float(window),
        goal_type=None if goal is None else goal["type"],
        goal_category=None if goal is None else goal.get("category"),
    )


def parse_experiments(docs: Iterable[Mapping[str, Any]] | None) -> dict[str, Experiment]:
    """The engine-config ``experiments`` list, by id."""
    out: dict[str, Experiment] = {}
    for i, doc in enumerate(docs or ()):
        exp = parse_experiment(doc, f"experiments[{i}]")
        if exp.id in out:
            raise ConfigError(f"experiment {exp.id!r} is defined twice")
        out[exp.id] = exp
    return out
