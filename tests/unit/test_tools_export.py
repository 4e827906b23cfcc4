"""The export record, time ranges, and the replay feeder's ordering (no Kafka needed)."""

from __future__ import annotations

import base64

import orjson
import pytest

from stream_app.tools.ranges import (
    RangeError,
    TopicRange,
    parse_time,
    raw_key,
    raw_value,
    read_export,
    record_of,
)
from stream_app.tools.lockstep import assign_partitions, contract_name, input_messages


def test_record_keeps_json_values_parsed_and_other_bytes_as_base64():
    rec = record_of("decisions", 2, 41, 1_764_000_000_000, b"c7", b'{"a": [1, 2]}')
    assert rec == {"topic": "decisions", "partition": 2, "offset": 41,
                   "timestamp": 1_764_000_000_000, "key": "c7", "value": {"a": [1, 2]}}
    odd = record_of("outcomes", 0, 1, None, b"\xfe\xff", b"not json")
    assert "value" not in odd and base64.b64decode(odd["value_b64"]) == b"not json"
    assert "key" not in odd and raw_key(odd) == b"\xfe\xff"
    assert raw_value(odd) == b"not json"
    assert record_of("x", 0, 0, 0, None, None)["value"] is None


def test_record_survives_a_jsonl_round_trip(tmp_path):
    recs = [record_of("interactions", 0, i, 5, b"c1", orjson.dumps({"ts": i, "n": "é"}))
            for i in range(3)] + [record_of("interactions", 1, 0, 5, None, b"\x00\x01")]
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs) + b"\n")
    back = list(read_export(str(path)))
    assert back == recs
    assert [raw_value(r) for r in back[:3]] == [orjson.dumps({"ts": i, "n": "é"}) for i in range(3)]


@pytest.mark.parametrize("text, expected", [
    ("1764000000000", 1_764_000_000_000),
    ("2025-11-24T16:00:00Z", 1_764_000_000_000),            # 1764000000 s is 2025-11-24 16:00 UTC
    ("2025-11-24T17:00:00+01:00", 1_764_000_000_000),
    ("2025-11-24T16:00:00", 1_764_000_000_000),             # naive means UTC
    ("2025-11-24", 1_764_000_000_000 - 16 * 3_600_000),
])
def test_times_are_epoch_ms_or_iso(text, expected):
    assert parse_time(text) == expected


def test_bad_times_and_ranges_are_one_readable_error():
    with pytest.raises(RangeError, match="not a time: 'yesterday'"):
        parse_time("yesterday")
    with pytest.raises(RangeError, match="offsets or times, not both"):
        TopicRange(from_offset=1, to_ms=5)
    with pytest.raises(RangeError, match="ends before it starts"):
        TopicRange(from_ms=10, to_ms=5)


def test_read_export_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"topic": "outcomes", "value": {}}\n{oops\n')
    with pytest.raises(RangeError, match=r"bad.jsonl, line 2: not valid JSON"):
        list(read_export(str(path)))
    path.write_bytes(b'[1, 2]\n')
    with pytest.raises(RangeError, match="line 1: not an export record"):
        list(read_export(str(path)))
    with pytest.raises(RangeError, match="cannot read"):
        list(read_export(str(tmp_path / "missing.jsonl")))


def test_inputs_are_fed_in_event_time_order_with_a_fixed_tie_break():
    def rec(topic, offset, ts, partition=0):
        return record_of(topic, partition, offset, 999, b"c1", orjson.dumps(
            {"ts": ts, "request_id": f"r{offset}", "outcome_id": f"o{offset}"}))

    records = [rec("p-decision-requests", 0, 30), rec("p-decision-requests", 1, 10),
               rec("p-outcomes", 0, 10), rec("p-interactions", 0, 10), rec("p-decisions", 0, 1),
               record_of("p-interactions", 0, 1, 20, b"c1", b"not json")]
    msgs, skipped = input_messages(records)
    assert skipped == 1  # decisions are not an input
    assert [(m.topic, m.ts) for m in msgs] == [
        ("interactions", 10), ("outcomes", 10), ("decision-requests", 10),
        ("interactions", 20),  # no ts in the value: its Kafka timestamp
        ("decision-requests", 30)]
    assert msgs[1].ident == "o0" and msgs[2].ident == "r1" and msgs[0].ident is None
    assert contract_name("replay-x-decision-requests") == "decision-requests"
    assert contract_name("dead-letter") is None


def test_partitions_are_kept_when_they_fit_else_hashed_by_key():
    msgs, _ = input_messages([record_of("interactions", p, 0, 0, k, b'{"ts": 1}')
                              for p, k in ((0, b"a"), (3, b"b"), (3, b"a"))])
    assign_partitions(msgs, 4)
    assert [m.partition for m in msgs] == [0, 3, 3]
    assign_partitions(msgs, 2)  # partition 3 does not exist in a 2-partition sandbox
    by_key = {}
    for m in msgs:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_key.values())  # co-partitioned by key
