"""Erasure of a customer (``partition/erasure.py``) through ``PartitionSession`` on a ``DictStore``:
every table row, timer, open offer and de-duplication window of the customer goes, the compacted
outputs get tombstones, one audit record says what was removed; nobody else is touched; and the
pseudonymised outputs (``stream_app/pseudonym.py``)."""

from __future__ import annotations

import jsonschema
import orjson
import pytest

from stream_app.cli import main as cli_main
from stream_app.core.catalogue import parse_config
from stream_app.core.decision import Decider, decision_id_for
from stream_app.core.delta import outcome_rows
from stream_app.fleet.budgets import ALL_TIME
from stream_app.kafka.topics import CONTRACT as TOPICS
from stream_app.partition import SOURCES, TABLES, DictStore, InputRecord, PartitionSession
from stream_app.partition.clock import EventTimeRule
from stream_app.partition.erasure import ERASED_OUTPUTS, ERASURE, RETAINED
from stream_app.pseudonym import Pseudonyms
from stream_app.schemas import Contract
from stream_app.settings import Settings
from stream_app.simulator import default_engine_config
from stream_app.worker import app as worker_app

CONTRACT = Contract.load()
T0 = 1_764_000_000_000
WINDOW_MS = 3_600_000  # default_engine_config's attribution window
EXPERIMENT = {"id": "exp", "use_case": "default",
              "arms": [{"name": "a", "treatment": {}}, {"name": "b", "treatment": {}}]}


@pytest.fixture(scope="module")
def decider() -> Decider:
    return Decider(parse_config({**default_engine_config(), "experiments": [EXPERIMENT]}), seed=5)


def session_on(store: DictStore, decider: Decider | None, **kwargs) -> PartitionSession:
    return PartitionSession(0, store, lambda: decider, seed=5, **kwargs)


def rec(message: dict, key: str | None = None, raw: bytes | None = None) -> InputRecord:
    return InputRecord((key or message["customer_id"]).encode(),
                       raw if raw is not None else orjson.dumps(message), 3, None, "topic-in")


def erasure(cid: str, request_id: str = "er-1", **extra) -> dict:
    return {"request_id": request_id, "customer_id": cid, "ts": T0 + 50_000, **extra}


def history(session: PartitionSession, cid: str) -> list[dict]:
    """Three requests (two left open), an outcome to the first, two interactions."""
    decisions = []
    for i in range(3):
        out = session.process("decision-requests", [rec({
            "request_id": f"{cid}-r{i}", "customer_id": cid, "ts": T0 + i * 1000,
            "channel": "app", "use_case": "default"})])
        decisions.extend(out.decisions)
    offered = [d for d in decisions if d["action"] == "offer"]
    assert len(offered) == 3
    session.process("outcomes", [rec({
        "outcome_id": f"{cid}-o0", "decision_id": offered[0]["decision_id"], "customer_id": cid,
        "ts": T0 + 5000, "type": "clicked", "value": 3.0})])
    for i in range(2):
        session.process("interactions", [rec({
            "event_id": f"{cid}-e{i}", "customer_id": cid, "ts": T0 + 6000 + i,
            "type": "transaction", "channel": "app", "amount": 20.0, "category": "groceries"})])
    return offered


def audit_of(out) -> dict:
    [audit] = [orjson.loads(v) for t, _, v in out.records if t == "erasure-audit"]
    jsonschema.validate(audit, CONTRACT.schemas["erasure-audit"])  # an independent validator
    return audit


def open_offers(session: PartitionSession) -> int:
    return sum(n for (_, day), n in session.view.budget.open.items() if day == ALL_TIME)


def test_erasure_removes_every_row_timer_and_open_offer_of_the_customer_and_no_one_else(decider):
    store = DictStore()
    session = session_on(store, decider)
    history(session, "c1")
    history(session, "c2")
    assert all(store.get(t, b"c1") is not None for t in TABLES)  # a row in every table
    kept = {t: store.get(t, b"c2") for t in TABLES}
    timers, offers = len(session.clock.timers), open_offers(session)

    out = session.process(ERASURE, [rec(erasure("c1", reason="ticket 7"))])

    assert all(store.get(t, b"c1") is None for t in TABLES)
    assert {t: store.get(t, b"c2") for t in TABLES} == kept
    # the tombstones first (one per compacted output keyed by customer id), then the audit
    assert [(t, k, v) for t, k, v in out.records[:-1]] == [("customer-scores", b"c1", None)]
    assert out.records[-1][:2] == ("erasure-audit", b"c1") and out.dead_letters == 0
    audit = audit_of(out)
    assert audit["found"] and audit["customer_id"] == "c1" and not audit["pseudonymised"]
    assert audit["request_id"] == "er-1" and audit["reason"] == "ticket 7"
    assert audit["requested_at"] == T0 + 50_000 and audit["erased_at"] > 0
    removed = audit["removed"]
    assert (removed["customers"], removed["enrolments"]) == (1, 1)
    assert (removed["open_decisions"], removed["settled_decisions"]) == (2, 1)
    assert removed["open_enrolments"] == 1 and removed["remembered_ids"] == 3  # 2 events, 1 outcome
    assert audit["tombstones"] == ["customers-changelog", "enrolments-changelog",
                                   "customer-scores"]
    assert set(audit["retained_until_expiry"]) == {
        "interactions", "decision-requests", "outcomes", "decisions", "delta-metrics",
        "dead-letter", "erasure-requests"}
    # its timers are gone (three decisions, one enrolment, at least, and its silence, which
    # is kept apart: partition/silence.py), the others' are not
    assert audit["timers_cancelled"] >= 5
    assert len(session.clock.timers) == timers - (audit["timers_cancelled"] - 1)
    assert open_offers(session) == offers - 2  # its open offers no longer hold a budget
    # a session rebuilt from the store (a restart) finds nothing of c1 either: every window
    # closes and only the other customer's open decisions settle, nobody writes c1 again
    out = session_on(store, decider).tick(T0 + 10 * WINDOW_MS)
    rows = [r for t, _, v in out.records if t == "delta-metrics"
            for r in outcome_rows(orjson.loads(v))]
    assert {r["customer_id"] for r in rows} == {"c2"} and len(rows) == 2
    assert all(store.get(t, b"c1") is None for t in TABLES)
    # and in the live session, every timer left is another customer's
    fired = session.clock.advance(T0 + 100 * WINDOW_MS)
    assert len(fired) >= 4 and {customer for customer, _ in fired} == {"c2"}
    assert [customer for _, customer in session.clock.silences.fire(2**62)] == ["c2"]


def test_a_redelivered_erasure_removes_nothing_more_and_is_audited_again(decider):
    store = DictStore()
    session = session_on(store, decider)
    history(session, "c1")
    first = session.process(ERASURE, [rec(erasure("c1"))])
    tables = {t: dict(rows) for t, rows in store.tables.items()}
    timers = len(session.clock.timers)
    again = session.process(ERASURE, [rec(erasure("c1"))])
    assert {t: dict(rows) for t, rows in store.tables.items()} == tables
    assert len(session.clock.timers) == timers
    assert [r[:2] for r in again.records] == [r[:2] for r in first.records]
    audit = audit_of(again)
    assert not audit["found"] and audit["timers_cancelled"] == 0
    assert set(audit["removed"].values()) == {0}


def test_an_unknown_customer_is_audited_as_found_nothing_even_without_a_config():
    out = session_on(DictStore(), None).process(ERASURE, [rec(erasure("nobody"))])
    assert out.dead_letters == 0
    audit = audit_of(out)
    assert not audit["found"] and audit["customer_id"] == "nobody"
    assert ("customer-scores", b"nobody", None) in out.records


@pytest.mark.parametrize("key, raw, reason", [
    ("c1", b"{not json", "not JSON"),
    ("c1", orjson.dumps({"customer_id": "c1", "ts": T0}), "schema violation"),
    ("c1", orjson.dumps({**erasure("c1"), "scope": "all"}), "schema violation"),
    ("someone-else", orjson.dumps(erasure("c1")), "message key must be the customer_id"),
    ("c1", orjson.dumps({**erasure("c1"), "ts": 4_000_000_000_000}), "timestamp in the future"),
])
def test_a_malformed_erasure_request_is_dead_lettered_with_its_reason(decider, key, raw, reason):
    store = DictStore()
    session = session_on(store, decider, event_time=EventTimeRule(max_future_ms=60_000))
    history(session, "c1")
    before = {t: dict(rows) for t, rows in store.tables.items()}
    out = session.process(ERASURE, [InputRecord(key.encode(), raw, 9, None, "erasure-requests")])
    assert out.dead_letters == 1 and reason in out.dead_letter_reasons[0]
    [(topic, _, letter)] = out.records
    assert topic == "dead-letter" and orjson.loads(letter)["source"]["offset"] == 9
    assert {t: dict(rows) for t, rows in store.tables.items()} == before  # nothing erased


def test_records_after_an_erasure_start_a_fresh_customer(decider):
    store = DictStore()
    session = session_on(store, decider)
    offered = history(session, "c1")
    session.process(ERASURE, [rec(erasure("c1"))])
    # the erased de-duplication windows: a redelivered interaction is new again
    out = session.process("interactions", [rec({
        "event_id": "c1-e0", "customer_id": "c1", "ts": T0 + 60_000, "type": "login"})])
    assert out.duplicates == 0
    # the erased decisions: an outcome to one is unknown, a redelivered request is decided anew
    out = session.process("outcomes", [rec({
        "outcome_id": "c1-o9", "decision_id": offered[1]["decision_id"], "customer_id": "c1",
        "ts": T0 + 61_000, "type": "clicked"})])
    assert out.dead_letters == 1 and "unknown decision_id" in out.dead_letter_reasons[0]
    out = session.process("decision-requests", [rec({
        "request_id": "c1-r0", "customer_id": "c1", "ts": T0 + 62_000, "channel": "app",
        "use_case": "default"})])
    assert out.duplicates == 0 and out.decisions[0]["decision_id"] == decision_id_for("c1-r0")


def test_pseudonymised_outputs_carry_the_keyed_hash_and_decisions_the_real_id(decider):
    pseudonym = Pseudonyms(b"k-test")
    name = pseudonym("c1")
    session = session_on(DictStore(), decider, pseudonyms=pseudonym)
    out = session.process("decision-requests", [rec({
        "request_id": "r0", "customer_id": "c1", "ts": T0, "channel": "app",
        "use_case": "default"})])
    decision = out.decisions[0]
    assert decision["customer_id"] == "c1"  # the channel that delivers it needs the real id
    out = session.process("outcomes", [rec({
        "outcome_id": "o0", "decision_id": decision["decision_id"], "customer_id": "c1",
        "ts": T0 + 1000, "type": "clicked"})])
    rows = [r for t, _, v in out.records if t == "delta-metrics"
            for r in outcome_rows(orjson.loads(v))]
    assert [r["customer_id"] for r in rows] == [name]
    out = session.process("interactions", [rec({
        "event_id": "e0", "customer_id": "c1", "ts": T0 + 2000, "type": "login"})])
    [(key, scores)] = [(k, orjson.loads(v)) for t, k, v in out.records if t == "customer-scores"]
    assert key == name.encode() and scores["customer_id"] == name
    jsonschema.validate(scores, CONTRACT.schemas["customer-scores"])
    out = session.process(ERASURE, [rec(erasure("c1"))])
    assert ("customer-scores", name.encode(), None) in out.records  # the key it was written with
    audit = audit_of(out)
    assert audit["customer_id"] == name and audit["pseudonymised"] and audit["found"]
    assert b'"c1"' not in out.records[-1][2]  # the real id is nowhere in the audit


def test_the_pseudonymisation_key_comes_from_the_environment_or_a_file(tmp_path):
    assert Settings.from_env({}).pseudonymise_key is None
    key_file = tmp_path / "key"
    key_file.write_bytes(b"s3cret\n")
    settings = Settings.from_env({"STREAM_APP_PSEUDONYMISE_KEY_FILE": str(key_file)})
    assert settings.pseudonymise_key == b"s3cret" and "s3cret" not in repr(settings)
    assert Settings.from_env({"STREAM_APP_PSEUDONYMISE_KEY": "k"}).pseudonymise_key == b"k"
    for env, message in [({"STREAM_APP_PSEUDONYMISE_KEY": ""}, "is empty"),
                         ({"STREAM_APP_PSEUDONYMISE_KEY": "k",
                           "STREAM_APP_PSEUDONYMISE_KEY_FILE": str(key_file)}, "not both"),
                         ({"STREAM_APP_PSEUDONYMISE_KEY_FILE": str(tmp_path / "no")}, "no")]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)


def test_the_worker_reads_erasure_requests_and_the_contract_names_what_erasure_reaches():
    assert ERASURE in SOURCES and set(SOURCES) <= set(worker_app.AGENT_NAMES)
    keyed = [s for s in TOPICS if s.co_partitioned]  # by customer id
    assert ERASED_OUTPUTS == tuple(s.name for s in keyed if s.compacted)
    assert set(RETAINED) == {s.name for s in keyed if not s.compacted} - {"erasure-audit"}


def test_the_erase_command_refuses_a_bad_request_in_one_line(capsys):
    assert cli_main(["erase", "x" * 200]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "customer_id must be shorter" in err
