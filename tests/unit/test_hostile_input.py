"""The hostile-input suite: whatever arrives on an input topic, the partition never raises, every
message is processed or dead-lettered with a reason, and no valid customer's decisions or
settlements change because of another's hostile message (checked against a clean run of the
same valid traffic).

Driven in-process through ``PartitionSession`` on a ``DictStore``. Property-based over raw bytes
and over every input topic's schema (messages generated from the schema itself, then broken);
the bulk run mixes ``STREAM_APP_HOSTILE_MESSAGES`` hostile messages (400 by default; the long
mode is 10,000) into seeded valid traffic:

    STREAM_APP_HOSTILE_MESSAGES=10000 python -m pytest -q tests/unit/test_hostile_input.py -s
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.core.catalogue import parse_config
from stream_app.core.decision import Decider, decision_id_for
from stream_app.core.delta import outcome_rows
from stream_app.partition import SOURCES, DictStore, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule
from stream_app.schemas import Contract
from stream_app.simulator import default_engine_config

CONTRACT = Contract.load()
HOSTILE_MESSAGES = int(os.environ.get("STREAM_APP_HOSTILE_MESSAGES", "400"))
START = 1_790_000_000_000  # the valid traffic's event time (the test's wall clock follows it)
WINDOW_MS = 3_600_000  # default_engine_config's attribution window
MAX_FUTURE_MS = 86_400_000
WALL = START + 3_600_000  # the wall clock of the property tests


@pytest.fixture(scope="module")
def decider() -> Decider:
    return Decider(parse_config(default_engine_config()), seed=11)


class Wall:
    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> int:
        return self.at


def session_with(decider: Decider, wall: Wall) -> PartitionSession:
    rule = EventTimeRule(max_future_ms=MAX_FUTURE_MS, wall_ms=wall)
    return PartitionSession(0, DictStore(), lambda: decider, seed=11, event_time=rule)


# -- messages generated from the schemas -------------------------------------------------------
def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid instances of the JSON Schema subset the input topics use (small sizes)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}) for k in kind])
    if kind == "string":
        low, high = schema.get("minLength", 0), min(schema.get("maxLength", 24), 24)
        return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                       min_size=low, max_size=max(low, high))
    if kind in ("integer", "number"):
        low = schema.get("minimum", -(2**53))
        high = schema.get("maximum", 2**53)
        if "exclusiveMaximum" in schema:
            high = min(high, schema["exclusiveMaximum"] - 1)
        ints = st.integers(int(low), int(high))
        if kind == "integer":
            return ints
        return ints | st.floats(float(low), float(high), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {"type": "string"}))
        return st.lists(items, min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4),
                        unique=bool(schema.get("uniqueItems")))
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        extra = schema.get("additionalProperties")
        fixed = st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required})
        if isinstance(extra, dict):
            more = st.dictionaries(st.text(max_size=8), from_schema(extra),
                                   max_size=min(schema.get("maxProperties", 3), 3))
            return st.tuples(fixed, more).map(lambda fm: {**fm[1], **fm[0]})
        return fixed
    return st.none()


def breakage(topic: str) -> st.SearchStrategy[tuple[str, Any]]:
    """Ways to break a message of ``topic``: (field, what to put there)."""
    numbers = st.sampled_from([1e308, -1e308, 1e300, -1, 4_102_444_800_000, 1.5, 2**64, "12",
                               None, True, [], {}])
    fields = sorted(CONTRACT.schemas[topic]["properties"]) + ["unknown_key"]
    return st.tuples(st.sampled_from(fields), numbers | st.text(max_size=300))


def judged_invalid(topic: str, raw: bytes | None, key: bytes | None, wall_ms: int) -> bool:
    """Whether the contract must refuse this record, judged independently of the engine's code
    (the ``jsonschema`` library on the parsed value, the key rule, the wall-clock bound)."""
    if raw is None:
        return True
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True
    if len(raw) > CONTRACT.max_bytes or not isinstance(value, dict):
        return True
    if not jsonschema.Draft7Validator(CONTRACT.schemas[topic]).is_valid(value):
        return True
    if key is None or key.decode("utf-8", "replace") != value["customer_id"]:
        return True
    return value["ts"] > wall_ms + MAX_FUTURE_MS


def expect_one_verdict(session: PartitionSession, topic: str, raw: bytes | None,
                       key: bytes | None) -> None:
    out = session.process(topic, [InputRecord(key, raw, 7, None, topic)])  # never raises
    letters = [orjson.loads(v) for t, _, v in out.records if t == "dead-letter"]
    assert all(letter["reason"] and letter["source"]["offset"] == 7 for letter in letters)
    if judged_invalid(topic, raw, key, WALL):
        assert out.dead_letters == 1, (raw, out.records)
    elif topic == "outcomes":  # a fresh partition knows no decision: refused with the reason
        assert out.dead_letters == 1 and "unknown decision_id" in letters[0]["reason"]
    elif topic == "decision-requests":
        assert out.dead_letters == 0 and len(out.decisions) == 1
    else:
        assert out.dead_letters == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(SOURCES), raw=st.binary(max_size=200) | st.none(),
       key=st.binary(max_size=16) | st.none())
def test_any_bytes_are_dead_lettered_never_raised(decider, topic, raw, key):
    expect_one_verdict(session_with(decider, Wall(WALL)), topic, raw, key)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), topic=st.sampled_from(SOURCES))
def test_schema_messages_and_broken_ones_get_the_verdict_the_schema_gives(decider, data, topic):
    message = data.draw(from_schema(CONTRACT.schemas[topic]), label="message")
    if data.draw(st.booleans(), label="break it"):
        field, value = data.draw(breakage(topic), label="breakage")
        message = {**message, field: value}
        if data.draw(st.booleans(), label="drop a field"):
            message.pop(data.draw(st.sampled_from(sorted(message))), None)
    try:
        raw = orjson.dumps(message)
    except TypeError:  # 2**64: not even JSON to orjson
        raw = repr(message).encode()
    cid = message.get("customer_id")
    key = cid.encode() if isinstance(cid, str) and data.draw(st.booleans()) else b"someone-else"
    expect_one_verdict(session_with(decider, Wall(WALL)), topic, raw, key)


# -- the bulk run: valid traffic, then the same traffic with hostile messages mixed in ----------
def valid_traffic(rng: random.Random, n: int) -> list[tuple[str, dict]]:
    """Seeded valid traffic of 40 customers over a few hours, in event-time order: requests,
    interactions, and outcomes to a third of the requests (some after their window)."""
    events: list[tuple[str, dict]] = []
    span = max(n, 200) * 20_000
    for i in range(n):
        ts = START + rng.randrange(span)
        cid = f"c{rng.randrange(40)}"
        kind = rng.random()
        if kind < 0.5:
            request = {"request_id": f"r{i}", "customer_id": cid, "ts": ts, "channel": "app",
                       "use_case": "default"}
            events.append(("decision-requests", request))
            if rng.random() < 0.35:
                later = rng.randrange(5_000, WINDOW_MS) if rng.random() < 0.85 else \
                    rng.randrange(WINDOW_MS, 2 * WINDOW_MS)
                events.append(("outcomes", {
                    "outcome_id": f"o{i}", "decision_id": decision_id_for(f"r{i}"),
                    "customer_id": cid, "ts": ts + later,
                    "type": rng.choice(["clicked", "converted", "dismissed"]),
                    "value": round(rng.uniform(0, 50), 2)}))
        else:
            events.append(("interactions", {
                "event_id": f"e{i}", "customer_id": cid, "ts": ts,
                "type": rng.choice(["transaction", "login", "page_view"]), "channel": "web",
                "amount": round(rng.uniform(1, 300), 2), "category": "groceries"}))
    events.sort(key=lambda e: e[1]["ts"])
    return events


def batches_of(events: list[tuple[str, dict]], rng: random.Random) -> list[tuple[str, list]]:
    """Consecutive events of one topic, up to 12 at a time, as the worker's agents take them."""
    out: list[tuple[str, list]] = []
    for topic, message in events:
        if out and out[-1][0] == topic and len(out[-1][1]) < rng.randint(1, 12):
            out[-1][1].append(message)
        else:
            out.append((topic, [message]))
    return out


def hostile(rng: random.Random, i: int, topic: str, earlier: list[tuple[str, dict]],
            wall_ms: int) -> tuple[bytes | None, bytes | None, str]:
    """One hostile message of ``topic`` from a customer of its own (``h<i>``): (key, value,
    what it is). Duplicates re-deliver a recent valid interaction or outcome (``earlier``: the
    batches a crash could make the worker read again); a redelivered request is the
    crash-consistency suite's."""
    cid = f"h{i}"
    base = {"decision-requests": {"request_id": f"hr{i}", "customer_id": cid, "ts": wall_ms,
                                  "channel": "app", "use_case": "default"},
            "outcomes": {"outcome_id": f"ho{i}", "decision_id": f"dc-{i:020x}",
                         "customer_id": cid, "ts": wall_ms, "type": "clicked"},
            "interactions": {"event_id": f"he{i}", "customer_id": cid, "ts": wall_ms,
                             "type": "transaction", "amount": 10.0}}[topic]
    choice = rng.randrange(13)
    if choice == 0:
        return cid.encode(), rng.randbytes(rng.randrange(0, 300)), "random bytes"
    if choice == 1:
        return cid.encode(), rng.choice([b"[]", b"null", b"1e999", b'"x"', b"{", b""]), "not an object"
    if choice == 2:
        return cid.encode(), orjson.dumps({**base, "ts": 1e300}), "ts 1e300"
    if choice == 3:
        return cid.encode(), orjson.dumps({**base, "ts": 4_118_000_000_000}), "ts in 2100"
    if choice == 4:
        return cid.encode(), orjson.dumps({**base, "ts": wall_ms + 2 * MAX_FUTURE_MS}), "future"
    if choice == 5:
        field = {"decision-requests": "context", "outcomes": "value",
                 "interactions": "amount"}[topic]
        huge = {"context": {"x": 1e308}, "value": 1e308, "amount": 1e308}[field]
        return cid.encode(), orjson.dumps({**base, field: huge}), "number out of bounds"
    if choice == 6:
        return cid.encode(), orjson.dumps({**base, "rogue": 1}), "unknown key"
    if choice == 7:
        missing = dict(base)
        required = CONTRACT.schemas[topic]["required"]
        missing.pop(rng.choice(sorted(k for k in required if k != "customer_id")))
        return cid.encode(), orjson.dumps(missing), "missing field"
    if choice == 8:
        return b"c1", orjson.dumps(base), "key is another customer"
    if choice == 9:
        return cid.encode(), orjson.dumps({**base, "pad": "x" * (CONTRACT.max_bytes + 10)}), "too large"
    if choice == 10:
        return None, None, "null key and value"
    if choice == 11 and topic == "outcomes":
        victim = [m for t, m in earlier if t == "decision-requests"]
        if victim:  # names a valid customer's decision, as another customer
            target = rng.choice(victim)["request_id"]
            return cid.encode(), orjson.dumps({**base, "decision_id": decision_id_for(target)}), \
                "another customer's decision"
        return cid.encode(), orjson.dumps(base), "unknown decision"
    same = [m for t, m in earlier if t == topic and t != "decision-requests"]
    if same:
        message = rng.choice(same)
        return message["customer_id"].encode(), orjson.dumps(message), "duplicate"
    return cid.encode(), orjson.dumps({**base, "ts": -5}), "negative ts"


def run(decider: Decider, schedule: list[tuple[str, list]], walls: list[int]) -> dict[str, Any]:
    """Process the batches in order, each with the wall clock at the event time the valid
    traffic reached before it; what the valid customers got, and every dead letter."""
    wall = Wall(walls[0])
    session = session_with(decider, wall)
    decisions: dict[str, dict] = {}
    settlements: list[tuple] = []
    letters: dict[int, dict] = {}
    duplicates = 0
    for (topic, records), at in zip(schedule, walls):
        wall.at = at
        out = session.process(topic, records)
        duplicates += out.duplicates
        for d in out.decisions:
            decisions[d["request_id"]] = {k: v for k, v in d.items() if k != "latency_ms"}
        for t, _, value in out.records:
            message = orjson.loads(value)
            if t == "dead-letter":
                message.pop("failed_at")  # the wall clock of the machine
                letters[message["source"]["offset"]] = message
            elif t == "delta-metrics" and message["kind"] in ("outcome", "outcomes"):
                settlements += [(r["decision_id"], r["ts"], r["actual"], r["ignored"], r["late"],
                                 r.get("outcome_type")) for r in outcome_rows(message)]
    return {"decisions": decisions, "settlements": settlements, "letters": letters,
            "duplicates": duplicates}


def test_hostile_messages_change_nothing_for_valid_customers(decider):
    rng = random.Random(24)
    n_valid = max(HOSTILE_MESSAGES * 3 // 2, 300)
    events = valid_traffic(rng, n_valid)
    batches = batches_of(events, rng)
    offset = 0
    clean: list[tuple[str, list]] = []
    walls: list[int] = []
    reached = START
    for topic, messages in batches:
        records = []
        for m in messages:
            records.append(InputRecord(m["customer_id"].encode(), orjson.dumps(m), offset, None,
                                       topic))
            offset += 1
        clean.append((topic, records))
        walls.append(reached)
        reached = max(reached, max(m["ts"] for m in messages))
    # the same batches with the hostile messages mixed in (offsets from 10**9: told apart)
    mixed = [(topic, list(records)) for topic, records in clean]
    kinds: Counter[str] = Counter()
    hostile_offsets = {}
    for i in range(HOSTILE_MESSAGES):
        b = rng.randrange(len(mixed))
        topic, records = mixed[b]
        earlier = [(t, orjson.loads(r.value))
                   for t, rs in clean[max(b - 12, 0):max(b - 1, 0)] for r in rs]
        key, value, kind = hostile(rng, i, topic, earlier, walls[b])
        kinds[kind] += 1
        hostile_offsets[10**9 + i] = kind
        records.insert(rng.randrange(len(records) + 1),
                       InputRecord(key, value, 10**9 + i, None, topic))
    before = run(decider, clean, walls)
    after = run(decider, mixed, walls)
    valid_decided = len(before["decisions"])
    assert valid_decided > n_valid // 3
    # no valid customer's decisions or settlements changed
    assert after["decisions"] == before["decisions"]
    assert after["settlements"] == before["settlements"]
    # every valid message has the same verdict; every hostile one is dead-lettered with a
    # reason, or recognised as a duplicate of what was processed already
    assert {o: m for o, m in after["letters"].items() if o < 10**9} == before["letters"]
    refused = {o for o in after["letters"] if o >= 10**9}
    assert all(after["letters"][o]["reason"] for o in refused)
    not_refused = [hostile_offsets[o] for o in hostile_offsets if o not in refused]
    assert set(not_refused) <= {"duplicate"}
    assert after["duplicates"] - before["duplicates"] == len(not_refused)
    print(f"\nhostile suite: {len(events)} valid messages ({valid_decided} decisions, "
          f"{len(before['settlements'])} settlements) + {HOSTILE_MESSAGES} hostile "
          f"({len(refused)} dead-lettered, {len(not_refused)} duplicates): "
          f"{dict(sorted(kinds.items()))}; 0 crashes, 0 changes for valid customers")


def test_a_message_too_large_to_dead_letter_whole_is_traced_truncated(decider):
    """A ~1 MB input used to give a base64 dead letter past the broker's limit: the send failed
    and the offset was committed without a trace."""
    import hashlib

    session = session_with(decider, Wall(WALL))
    value, key = b"x" * 1_048_000, b"k" * 2_000
    out = session.process("decision-requests", [InputRecord(key, value, 3, None, "in")])
    [(topic, sent_key, sent_value)] = out.records
    assert topic == "dead-letter" and len(sent_key) + len(sent_value) < 500_000
    letter = orjson.loads(sent_value)
    assert "too large" in letter["reason"] and letter["truncated"] is True
    assert letter["value_bytes"] == len(value) and letter["key_bytes"] == len(key)
    assert letter["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter["source"]["offset"] == 3
