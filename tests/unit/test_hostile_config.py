"""Config that cannot take the fleet down: unknown keys refused with their JSON path, the last
good configuration kept (locally and on ``accepted-configs``), a bad or oversized one
dead-lettered once, a feed that never dies. The feed is driven with stand-ins for a Kafka
message and producer (``tests/integration/test_hostile_input.py`` runs it on the broker)."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from stream_app.core.catalogue import ConfigError, parse_config
from stream_app.core.decision import Decider
from stream_app.deadletter import restore_prefix
from stream_app.schemas import Contract, InvalidMessage
from stream_app.settings import PROJECT_ROOT
from stream_app.worker import config_feed
from stream_app.worker.accepted_configs import (
    AcceptedConfig,
    LocalConfigState,
    RollbackError,
    rollback_target,
)
from stream_app.worker.config_feed import ConfigFeed

CONFIG = orjson.loads((PROJECT_ROOT / "config" / "offers.json").read_bytes())
CONTRACT = Contract.load()


def with_use_case(**changes) -> dict:
    use_case = {**CONFIG["use_cases"][0], **changes}
    return {**CONFIG, "use_cases": [use_case]}


# -- unknown keys ----------------------------------------------------------------------------
def test_a_use_case_with_rule_for_rules_is_refused_with_its_json_path():
    doc = with_use_case(rule={"fatigue": {"same_offer_s": 0}})
    with pytest.raises(InvalidMessage, match=r"data\.use_cases\[0\] must not contain \{'rule'\}"):
        CONTRACT.decode("engine-config", orjson.dumps(doc))
    with pytest.raises(ConfigError, match=r"use_cases\[0\]: unknown key \['rule'\]"):
        parse_config(doc)


UNKNOWN = [
    ({**CONFIG, "rulez": {}}, r"config: unknown key \['rulez'\]"),
    ({**CONFIG, "offers": [*CONFIG["offers"][:1], {**CONFIG["offers"][1], "valeu": 3}]},
     r"offers\[1\]: unknown key \['valeu'\]"),
    (with_use_case(promotion={"autto": True}), r"use_cases\[0\]\.promotion: unknown key"),
    (with_use_case(challengers=[{"policy": "ucb", "parms": {}}]),
     r"use_cases\[0\]\.challengers\[0\]: unknown key \['parms'\]"),
    (with_use_case(rules={"fatigue": {"cooldown": 60}}),
     r"use case 'default': rules\.fatigue has unknown keys \['cooldown'\]"),
    ({**CONFIG, "experiments": [{"id": "x", "arm": []}]},
     r"experiments\[0\]: unknown key \['arm'\]"),
    ({**CONFIG, "experiments": [{"id": "x", "arms": [{"name": "A"}, {"name": "B", "w": 2}]}]},
     r"experiments\[0\]\.arms\[1\]: unknown key \['w'\]"),
    ({**CONFIG, "experiments": [{"id": "x", "arms": [{"name": "A"}], "control": {"shre": .1}}]},
     r"experiments\[0\]\.control: unknown key \['shre'\]"),
    ({**CONFIG, "experiments": [{"id": "x", "arms": [{"name": "A"}, {"name": "B"}],
                                 "guardrails": [{"metric": "opt_out", "max": 0.1}]}]},
     r"experiments\[0\]\.guardrails\[0\]: unknown key \['max'\]"),
    ({**CONFIG, "routing": [{"when": {}, "policy": "ucb", "parms": {}}]}, r"unknown fields"),
]


@pytest.mark.parametrize("doc, where", UNKNOWN)
def test_an_unknown_key_is_refused_everywhere_with_where_it_is(doc, where):
    """What a worker does with a config (``ConfigFeed._put_in_force``: parse, then build the
    decision core) refuses it, saying where the key is."""
    feed = ConfigFeed("127.0.0.1:1", "engine-config", "dead-letter", CONTRACT)
    feed.on_change.append(lambda cfg: Decider(cfg))
    with pytest.raises(InvalidMessage, match=where):
        feed._put_in_force(doc)
    assert feed.current is None


def test_config_numbers_are_bounded():
    for doc in (with_use_case(attribution_window_s=1e308),
                {**CONFIG, "offers": [{**CONFIG["offers"][0], "value": 1e308}]},
                with_use_case(half_life_s=1e300)):
        with pytest.raises(InvalidMessage, match="must be smaller"):
            CONTRACT.decode("engine-config", orjson.dumps(doc))
        with pytest.raises(ConfigError, match="must be"):
            parse_config(doc)


# -- the feed ----------------------------------------------------------------------------------
class Message:
    """A stand-in for a confluent_kafka message of ``engine-config``."""

    def __init__(self, offset: int, value: bytes | None, key: bytes = b"engine") -> None:
        self._offset, self._value, self._key = offset, value, key

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes:
        return self._key

    def topic(self) -> str:
        return "engine-config"

    def partition(self) -> int:
        return 0

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_764_000_000_000

    def error(self) -> None:
        return None


class Producer:
    """A stand-in producer that refuses what the broker's 1 MB limit would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def produce(self, topic: str, key: bytes | None = None, value: bytes = b"") -> None:
        if len(value) + len(key or b"") > 1_000_000:
            raise ValueError("Broker: Message size too large")
        self.sent.append((topic, key, value))

    def to(self, topic: str) -> list[dict]:
        return [orjson.loads(v) for t, _, v in self.sent if t == topic]


def feed_in(tmp_path, max_bytes: int = 64 * 1024) -> ConfigFeed:
    feed = ConfigFeed("127.0.0.1:1", "engine-config", "dead-letter",
                      Contract.load(max_bytes=max_bytes), accepted_topic="accepted-configs",
                      state_path=tmp_path / "engine-config.json")
    feed.on_change.append(lambda cfg: Decider(cfg))
    feed.restore()
    return feed


GOOD = orjson.dumps({**CONFIG, "version": "good-v1"})
BAD = orjson.dumps(with_use_case(rule={}, id="default"))


def test_a_restart_after_a_bad_last_config_starts_with_the_last_good_one(tmp_path):
    feed, producer = feed_in(tmp_path), Producer()
    feed._judge(Message(0, GOOD), producer)
    feed._judge(Message(1, BAD), producer)
    assert feed.current.version == "good-v1"
    assert len(producer.to("dead-letter")) == 1
    # compaction keeps only offset 1 (the bad one); the worker restarts:
    restarted, again = feed_in(tmp_path), Producer()
    assert restarted.current is not None and restarted.current.version == "good-v1"
    restarted._judge(Message(1, BAD), again)  # read again after the restart
    assert again.sent == []  # dead-lettered once, not at every restart
    restarted._mark_loaded(end=2)
    assert restarted.loaded.is_set()


def test_every_accepted_config_is_published_in_order_for_the_fleet(tmp_path):
    feed, producer = feed_in(tmp_path), Producer()
    feed._judge(Message(4, GOOD), producer)
    feed._judge(Message(7, orjson.dumps({**CONFIG, "version": "good-v2"})), producer)
    records = [(k, AcceptedConfig.from_record(v)) for t, k, v in producer.sent
               if t == "accepted-configs"]
    assert [(k, a.seq, a.version) for k, a in records] == [
        (b"good-v1", 4, "good-v1"), (b"good-v2", 7, "good-v2")]
    assert records[1][1].config == {**CONFIG, "version": "good-v2"}


def test_a_new_machine_starts_from_the_fleets_last_accepted_config(tmp_path, monkeypatch):
    history = [AcceptedConfig(3, "good-v1", orjson.loads(GOOD), 1),
               AcceptedConfig(9, "good-v2", {**CONFIG, "version": "good-v2"}, 2)]
    monkeypatch.setattr(config_feed, "read_accepted", lambda bootstrap, topic: history)
    feed = feed_in(tmp_path)  # no local state
    assert feed.current is None
    feed._recover_from_fleet()
    assert feed.current.version == "good-v2" and feed._position == 10


def test_an_oversized_config_is_dead_lettered_once_with_its_size_and_hash(tmp_path):
    big = {**CONFIG, "version": "big", "description": "x" * 4000,
           "offers": [{"id": f"o{i}", "category": "c" * 40} for i in range(13_000)]}
    raw = orjson.dumps(big)
    assert 850_000 < len(raw) < 1_000_000  # fits the broker whole, but not its base64
    feed, producer = feed_in(tmp_path), Producer()
    feed._judge(Message(0, GOOD), producer)
    feed._judge(Message(1, raw), producer)  # the stand-in refuses a record over 1 MB
    [letter] = producer.to("dead-letter")
    assert "too large" in letter["reason"] and letter["truncated"] is True
    assert letter["value_bytes"] == len(raw)
    assert letter["value_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(restore_prefix(letter))
    assert feed.current.version == "good-v1"
    restarted, again = feed_in(tmp_path), Producer()
    restarted._judge(Message(1, raw), again)
    assert again.sent == [] and restarted.current.version == "good-v1"


def test_without_any_valid_config_the_feed_never_says_loaded(tmp_path):
    feed, producer = feed_in(tmp_path), Producer()
    feed._judge(Message(0, BAD), producer)
    feed._mark_loaded(end=1)
    assert not feed.loaded.is_set()  # the agents wait: nothing is dead-lettered for want of one
    feed._judge(Message(1, GOOD), producer)
    feed._mark_loaded(end=1)
    assert feed.loaded.is_set()


def test_the_feed_thread_survives_its_own_errors(tmp_path, monkeypatch):
    feed = feed_in(tmp_path)
    calls = []

    def follow() -> None:
        calls.append(1)
        if len(calls) == 3:
            feed._stop.set()
            return
        raise RuntimeError("broker away")

    monkeypatch.setattr(config_feed, "RETRY_S", 0.01)
    monkeypatch.setattr(feed, "_follow", follow)
    feed._run()
    assert len(calls) == 3  # two failures retried, then stopped


def test_local_state_is_written_atomically_and_a_broken_file_is_ignored(tmp_path):
    path = tmp_path / "engine-config.json"
    state = LocalConfigState(path, 5, AcceptedConfig(4, "v", {"version": "v"}, 9))
    state.save()
    assert LocalConfigState(path).load() == state
    path.write_bytes(b"{not json")
    assert LocalConfigState(path).load() == LocalConfigState(path)


def test_a_rollback_names_what_it_cannot_do():
    with pytest.raises(RollbackError, match="no accepted configuration"):
        rollback_target([])
    only = [AcceptedConfig(1, "v1", {}, 1), AcceptedConfig(5, "v1", {}, 2)]
    with pytest.raises(RollbackError, match="only version 'v1'"):
        rollback_target(only)
    with pytest.raises(RollbackError, match="'v9' was never accepted"):
        rollback_target(only, to="v9")
