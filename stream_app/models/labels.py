"""Where training labels come from, in event time, with O(1) work per message.

Churn is "no interaction for ``horizon``". A churn example is the customer's profile at a
*checkpoint* ``b = first_seen + k * period`` (so each customer contributes one example per period
whatever their activity, and different customers' labels become final at different moments
rather than in one burst), labelled ``True`` when no interaction follows within
``(b, b + horizon]``. Only checkpoints where the customer is still active (seen within the last
``horizon``) are examples: a customer silent for a whole horizon has churned by definition, there
is nothing left to predict. The label of a checkpoint is final either when the next interaction
arrives (``next_event_ms``: ``next - b > horizon``) or when ``now - b >= horizon`` passes in
silence (``next_event_ms=None``). The checkpoints after a customer's last interaction are
therefore all final, in silence, at ``silence_final_ms``: one horizon after the last of them
(between one and two horizons after the last interaction); a partition keeps one timer per
customer at that time, moved by every interaction, and labels them when it fires. The profile
remembers the last labelled checkpoint (``churn_labelled_ms``), so no checkpoint is labelled
twice and at most ``max_examples`` (the most recent) are produced per call.

>>> from stream_app.profile import Profile, apply_interaction
>>> p = apply_interaction(Profile.empty(), {"ts": 0, "type": "login"})
>>> p = apply_interaction(p, {"ts": 5, "type": "login"})
>>> churn_checkpoints(p, next_event_ms=35, now_ms=35, horizon_ms=20, period_ms=10)
([(10, True), (20, False)], 20)
>>> churn_checkpoints(p, next_event_ms=None, now_ms=35, horizon_ms=20, period_ms=10)
([(10, True)], 10)
>>> silence_final_ms(p, horizon_ms=20, period_ms=10)   # checkpoints 10 and 20, final at 40
40
>>> churn_checkpoints(p, next_event_ms=None, now_ms=40, horizon_ms=20, period_ms=10)
([(10, True), (20, True)], 20)
"""

from __future__ import annotations

import math

from stream_app.profile import MAX_AMOUNT, Profile, ProfileClocks
from stream_app.profile.transitions import transaction_amount

__all__ = ["capacity_target", "churn_checkpoints", "from_capacity_target", "silence_final_ms"]


def churn_checkpoints(
    profile: Profile,
    next_event_ms: int | None,
    now_ms: int,
    horizon_ms: int,
    period_ms: int,
    max_examples: int = 8,
) -> tuple[list[tuple[int, bool]], int]:
    """Checkpoints ``(b, churned)`` whose labels became final, and the new ``churn_labelled_ms``.

    ``profile`` is the state *before* the interaction at ``next_event_ms`` (or the current state
    for a silence sweep at ``now_ms``). Late interactions (before the last one) label nothing.
    """
    if profile.n_events == 0 or period_ms <= 0:
        return [], profile.churn_labelled_ms
    last = profile.last_event_ms
    if next_event_ms is not None:
        if next_event_ms <= last:
            return [], profile.churn_labelled_ms
        upper = next_event_ms  # checkpoints strictly before the next interaction
    else:
        upper = now_ms - horizon_ms + 1  # checkpoints at least a horizon in the past
    upper = min(upper, last + horizon_ms)  # a customer silent for a horizon has churned
    origin = profile.first_seen_ms
    start = max(last, profile.churn_labelled_ms)
    first = origin + ((start - origin) // period_ms + 1) * period_ms
    if first >= upper:
        return [], profile.churn_labelled_ms
    final = first + ((upper - 1 - first) // period_ms) * period_ms
    count = min((final - first) // period_ms + 1, max_examples)
    points = [final - (count - 1 - i) * period_ms for i in range(count)]
    if next_event_ms is None:
        return [(b, True) for b in points], final
    return [(b, next_event_ms - b > horizon_ms) for b in points], final


def silence_final_ms(profile: Profile | ProfileClocks, horizon_ms: int, period_ms: int
                     ) -> int | None:
    """When the labels of the checkpoints after the last interaction are all final if the
    customer stays silent (``churn_checkpoints(profile, None, now)`` labels them all from then
    on), or ``None`` when there is none left to label."""
    if profile.n_events == 0 or period_ms <= 0:
        return None
    last, origin = profile.last_event_ms, profile.first_seen_ms
    start = max(last, profile.churn_labelled_ms)
    first = origin + ((start - origin) // period_ms + 1) * period_ms
    upper = last + horizon_ms  # a customer silent for a horizon has churned: no checkpoint after
    if first >= upper:
        return None
    return first + ((upper - 1 - first) // period_ms) * period_ms + horizon_ms


def capacity_target(amount: float) -> float:
    """Capacity is learned on ``log1p(amount)``: spend is heavy-tailed, and a model of the log
    predicts something near the median ticket, which is what minimises absolute error.

    An amount that is not a finite number in ``[0, MAX_AMOUNT]`` raises ``ValueError``: a model
    refuses it rather than learn it (one ``1e308`` taught a regression targets of ~709, whose
    predictions then overflowed ``expm1`` at every later interaction).

    >>> round(capacity_target(99.0), 6), capacity_target(0)
    (4.60517, 0.0)
    >>> capacity_target(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: amount must be a finite number in [0, 1e+09], got inf
    """
    return math.log1p(transaction_amount(amount))


def from_capacity_target(value: float) -> float:
    """The amount a learned ``capacity_target`` stands for, within ``[0, MAX_AMOUNT]`` whatever
    the model predicts (NaN is 0).

    >>> round(from_capacity_target(capacity_target(99.0)), 9), from_capacity_target(1e6)
    (99.0, 1000000000.0)
    >>> from_capacity_target(float("nan")), from_capacity_target(-5.0)
    (0.0, 0.0)
    """
    if value >= _MAX_TARGET:
        return MAX_AMOUNT
    if not value > 0.0:  # also NaN
        return 0.0
    return math.expm1(value)


_MAX_TARGET = math.log1p(MAX_AMOUNT)
