"""The benchmark's relay writes the worker's fan-out for each input record, and the report shows
the traffic of a run per topic and per request."""

import orjson
import pytest

from stream_app.bench.relay import RELAY_TOPIC, Fanout, Relay
from stream_app.bench.report import _traffic_lines
from stream_app.settings import Settings


class FakeOutput:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    def send(self, topic, key, value, partition=None) -> None:
        self.sent.append((topic, key, value, partition))


@pytest.fixture
def relay():
    settings = Settings.from_env({"STREAM_APP_TOPIC_PREFIX": "t-"})
    out = FakeOutput()
    return Relay(settings, Fanout(per_request=3, per_interaction=1, per_outcome=2,
                                  record_bytes=10, decision_bytes=400), out), out


def test_request_gets_a_decision_and_its_side_records(relay):
    r, out = relay
    value = orjson.dumps({"request_id": "m.1.5", "customer_id": "c0000001", "ts": 7})
    r.handle("t-decision-requests", 2, b"c0000001", value)
    decision = out.sent[0]
    assert decision[0] == "t-decisions" and decision[1] == b"c0000001"
    d = orjson.loads(decision[2])
    assert (d["request_id"], d["decision_id"], d["customer_id"], d["ts"], d["action"]) == \
        ("m.1.5", "d-m.1.5", "c0000001", 7, "offer")
    assert 380 <= len(decision[2]) <= 440  # padded to about decision_bytes
    side = out.sent[1:]
    assert [s[0] for s in side] == ["t-" + RELAY_TOPIC] * 3
    assert [s[1] for s in side] == [b"c0000001:0", b"c0000001:1", b"c0000001:2"]
    assert all(s[2] == b"x" * 10 and s[3] == 2 for s in side)  # the source partition
    assert r.handled == 1


def test_interactions_and_outcomes_get_their_fanout(relay):
    r, out = relay
    value = orjson.dumps({"customer_id": "c1"})
    r.handle("t-interactions", 0, b"c1", value)
    r.handle("t-outcomes", 0, b"c1", value)
    assert [s[1] for s in out.sent] == [b"c1:0", b"c1:0", b"c1:1"]


def test_records_not_the_generators_are_counted_not_relayed(relay):
    r, out = relay
    for value in (b"not json", orjson.dumps({"no": "customer"}), None):
        r.handle("t-decision-requests", 0, b"k", value)
    assert out.sent == [] and r.rejected == 3 and r.handled == 0


def test_fanout_rejects_negative_counts():
    with pytest.raises(ValueError):
        Fanout(per_request=-1)


def test_traffic_table_per_topic_and_per_request():
    tr = {"requests": 100, "records_per_request": {"decisions": 1.0, "x-changelog": 2.5},
          "total_records_per_request": 3.5,
          "topics": {"decisions": {"records": 100, "disk_bytes": 50_000},
                     "x-changelog": {"records": 250}}}
    lines = _traffic_lines(tr)
    assert lines[5].startswith("| x-changelog | 250 | 2.50 |")  # most records first
    assert lines[6].startswith("| decisions | 100 | 1.00 | 50,000 | 500")
    assert lines[-1] == "| all | 350 | 3.5 | | |"
    assert _traffic_lines(None) == [] and _traffic_lines({"requests": 0}) == []
