"""Where the consumer reads from after Faust dropped fetched records (worker/seeking.py), with
stand-ins for Faust's consumer and table recovery."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import NamedTuple

from stream_app.worker.seeking import seek_back


class TP(NamedTuple):
    topic: str
    partition: int


class Consumer:
    """Faust's consumer surface: perform_seek (to the committed offsets), assignment, seek."""

    def __init__(self, assigned: set[TP], committed: dict[TP, int]) -> None:
        self.assigned, self._committed_offset = assigned, committed
        self.positions: dict[TP, int] = {}

    async def perform_seek(self) -> None:
        self.positions.update(self._committed_offset)

    def assignment(self) -> set[TP]:
        return self.assigned

    async def seek(self, tp: TP, offset: int) -> None:
        self.positions[tp] = offset


class Recovery:
    def __init__(self) -> None:
        self.in_recovery = False
        self.active_tps: set[TP] = set()
        self.standby_tps: set[TP] = set()
        self.active_offsets: Counter[TP] = Counter()
        self.standby_offsets: Counter[TP] = Counter()


class Tables:
    def __init__(self, recovery: Recovery) -> None:
        self.recovery = recovery


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict]] = []

    def info(self, event: str, **fields) -> None:
        self.records.append((event, fields))


REQ0, REQ1 = TP("requests", 0), TP("requests", 1)
OUT1 = TP("outcomes", 1)
MODELS0, MODELS1, ARMS1 = TP("models-changelog", 0), TP("models-changelog", 1), TP("arms-changelog", 1)


def _run(consumer: Consumer, recovery: Recovery) -> Log:
    log = Log()
    asyncio.run(seek_back(consumer, {"requests", "outcomes"}, Tables(recovery), log)())
    return log


def test_committed_inputs_go_back_to_their_commit_and_never_committed_ones_to_the_start() -> None:
    consumer = Consumer({REQ0, REQ1, OUT1}, {REQ0: 40})
    consumer.positions = {REQ0: 55, REQ1: 12, OUT1: 7}  # past records Faust dropped
    log = _run(consumer, Recovery())
    assert consumer.positions == {REQ0: 40, REQ1: 0, OUT1: 0}
    assert log.records == [("seek_to_start", {"partitions": ["outcomes[1]", "requests[1]"]})]


def test_changelogs_being_recovered_go_back_to_the_last_offset_applied() -> None:
    # the failure seen in test_rebalance: the records of models-changelog[1] were fetched while
    # the flow was stopped and dropped; nothing sought the partition back, recovery waited
    consumer = Consumer({REQ1, MODELS1, ARMS1, MODELS0}, {REQ1: 3})
    consumer.positions = {MODELS1: 2, ARMS1: 30, MODELS0: 9}
    recovery = Recovery()
    recovery.in_recovery = True
    recovery.active_tps = {MODELS1, ARMS1}
    recovery.active_offsets.update({MODELS1: -1, ARMS1: 17})  # -1: nothing applied yet
    recovery.standby_tps = {MODELS0}
    recovery.standby_offsets.update({MODELS0: 4})
    log = _run(consumer, recovery)
    assert consumer.positions == {REQ1: 3, MODELS1: 0, ARMS1: 17, MODELS0: 4}
    assert log.records == [("changelog_seek_back", {"partitions": {
        "arms-changelog[1]": 17, "models-changelog[0]": 4, "models-changelog[1]": 0}})]


def test_after_recovery_only_standbys_are_sought_and_only_assigned_partitions() -> None:
    consumer = Consumer({MODELS0, MODELS1}, {})
    consumer.positions = {MODELS0: 9, MODELS1: 5}
    recovery = Recovery()
    recovery.active_tps = {MODELS1}  # recovered: Faust pauses it and reads no more of it
    recovery.active_offsets.update({MODELS1: 2})
    recovery.standby_tps = {MODELS0, TP("models-changelog", 2)}  # the second not assigned (yet)
    recovery.standby_offsets.update({MODELS0: 9})
    log = _run(consumer, recovery)
    assert consumer.positions == {MODELS0: 9, MODELS1: 5}
    assert log.records == [("changelog_seek_back", {"partitions": {"models-changelog[0]": 9}})]
