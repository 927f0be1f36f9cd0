"""The Burrow-style lag status rules (adapters/lag.py), table-driven over sample windows, and
their export as Prometheus metrics.

Changed on purpose with the time-based STALL and the one-sample STOP: a partition whose
group has no member while messages wait is STOP at once (it was OK until the window was full,
and STALL when the member left midway); STALL needs the committed offset to stand still for
`stall_after_s` (here 20 s, the span of a 3-sample window), not merely a full window.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from campaign_worker.adapters.lag import (
    GroupLag,
    LagTracker,
    PartitionSample,
    Status,
    evaluate,
    export,
    worst,
)
from campaign_worker.adapters.metrics import Metrics

Row = tuple[int | None, int, int]  # committed, end, members


def window(*rows: Row, start: int = 0, error_at: int | None = None) -> list[PartitionSample]:
    samples = []
    for i, (committed, end, members) in enumerate(rows):
        first = max(committed if committed is not None else 0, start)
        samples.append(
            PartitionSample(
                topic="t.campaign.commands",
                partition=0,
                at=1000.0 + 10 * i,
                committed=committed,
                log_start=start,
                end=end,
                lag=max(0, end - first),
                lag_seconds=0.0 if end <= first else 5.0 + 10 * i,
                members=members,
                error="boom" if i == error_at else None,
            )
        )
    return samples


CASES = [
    # name, rows, window size, expected
    ("idle partition", [(5, 5, 1)] * 3, 3, Status.OK),
    ("empty topic never committed", [(None, 0, 0)] * 3, 3, Status.OK),
    ("caught up now", [(1, 9, 1), (5, 9, 1), (9, 9, 1)], 3, Status.OK),
    ("consuming, lag shrinking", [(1, 9, 1), (4, 10, 1), (8, 11, 1)], 3, Status.OK),
    ("never committed, nobody there", [(None, 500, 0)] * 3, 3, Status.STOP),
    ("committed, nobody there", [(7, 20, 0), (7, 25, 0), (7, 30, 0)], 3, Status.STOP),
    ("never committed, member stuck", [(None, 500, 1)] * 3, 3, Status.STALL),
    ("offset frozen with a member", [(7, 20, 1), (7, 25, 1), (7, 30, 2)], 3, Status.STALL),
    ("frozen, member left midway", [(7, 20, 1), (7, 25, 0), (7, 30, 0)], 3, Status.STOP),
    ("frozen for less than stall_after", [(7, 20, 1), (7, 25, 1)], 3, Status.OK),
    ("nobody there, window not full", [(None, 500, 0)] * 2, 3, Status.STOP),
    ("one sample, nobody there", [(None, 500, 0)], 1, Status.STOP),
    ("one sample, a member there", [(None, 500, 1)], 1, Status.OK),
    ("nobody there since it committed", [(5, 20, 1), (9, 20, 0)], 2, Status.STOP),
    ("draining in bursts", [(10, 100, 1), (10, 100, 1), (40, 100, 1)], 3, Status.OK),
    ("burst then still for less", [(10, 100, 1), (40, 100, 1), (40, 100, 1)], 3, Status.OK),
    ("was caught up inside the window", [(7, 7, 1), (7, 9, 1), (7, 12, 1)], 3, Status.OK),
    ("nobody there, caught up earlier", [(7, 7, 0), (7, 9, 0), (7, 12, 0)], 3, Status.STOP),
    ("rewound", [(50, 60, 1), (20, 61, 1), (25, 62, 1)], 3, Status.REWIND),
    ("rewind before the window fills", [(50, 60, 1), (20, 61, 1)], 3, Status.REWIND),
    ("falling behind", [(10, 20, 1), (12, 30, 1), (14, 45, 1)], 3, Status.WARN),
    ("lag flat while moving", [(10, 20, 1), (12, 30, 1), (14, 30, 1)], 3, Status.OK),
    ("falling behind, window not full", [(10, 20, 1), (12, 30, 1)], 3, Status.OK),
]


@pytest.mark.parametrize(
    ("rows", "size", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_partition_status(rows: list[Row], size: int, expected: Status) -> None:
    assert evaluate(window(*rows), size, stall_after_s=20) is expected


def test_retention_moved_the_log_start_past_the_committed_offset() -> None:
    [s] = window((3, 10, 1), start=8)
    assert s.lag == 2  # records below the log start can no longer be consumed


def test_error_in_latest_sample_is_err_and_earlier_errors_are_ignored() -> None:
    assert evaluate(window((1, 5, 1), (1, 5, 1), error_at=1), 2) is Status.ERR
    # the failed sample does not count towards the time the offset stood still
    frozen = window((1, 5, 1), (1, 5, 1), (1, 5, 1), error_at=0)
    assert evaluate(frozen, 2, stall_after_s=10) is Status.STALL
    assert evaluate(frozen, 2, stall_after_s=11) is Status.OK


def test_severity_order_and_group_status_is_the_worst() -> None:
    order = [Status.OK, Status.WARN, Status.REWIND, Status.STALL, Status.STOP, Status.ERR]
    assert [s.severity for s in order] == list(range(6))
    assert worst([Status.OK, Status.STALL, Status.WARN]) is Status.STALL
    assert worst([]) is Status.OK


def _sample(
    partition: int,
    committed: int | None,
    end: int,
    members: int = 1,
    at: float = 1.0,
    owner: str | None = None,
) -> PartitionSample:
    return PartitionSample(
        topic="t.campaign.commands",
        partition=partition,
        at=at,
        committed=committed,
        log_start=0,
        end=end,
        lag=end - (committed or 0),
        lag_seconds=None if end - (committed or 0) else 0.0,
        members=members,
        owner=owner,
    )


def test_tracker_keeps_a_window_per_partition_and_forgets_vanished_ones() -> None:
    tracker = LagTracker(window=2, stall_after_s=5)
    tracker.update("g", [_sample(0, 5, 9, at=1), _sample(1, 3, 3, at=1)])
    report = tracker.update("g", [_sample(0, 5, 9, at=6), _sample(1, 3, 3, at=6)])
    assert [(p.sample.partition, p.status) for p in report.partitions] == [
        (0, Status.STALL),
        (1, Status.OK),
    ]
    assert report.status is Status.STALL and report.total_lag == 4 and report.samples == 2
    assert report.observed_s == 5 and report.partitions[0].unmoved_s == 5
    report = tracker.update("g", [_sample(1, 3, 3, at=7)])
    assert [p.sample.partition for p in report.partitions] == [1]
    assert report.status is Status.OK
    # a partition that comes back starts afresh; once its offset moves it is OK again
    assert tracker.update("g", [_sample(0, 5, 9, at=8)]).status is Status.OK
    assert tracker.update("g", [_sample(0, 5, 9, at=13)]).status is Status.STALL
    assert tracker.update("g", [_sample(0, 7, 9, at=14)]).status is Status.OK


def test_standing_still_is_measured_beyond_the_window() -> None:
    tracker = LagTracker(window=2, stall_after_s=30)
    statuses = [tracker.update("g", [_sample(0, 5, 9, at=t)]).status for t in range(0, 40, 10)]
    assert statuses == [Status.OK, Status.OK, Status.OK, Status.STALL]


def test_a_steady_drain_with_commits_in_bursts_never_stalls() -> None:
    # the worker commits this partition every 14 s while it works through other fetches;
    # the CLI's default look samples every 2 s: no sample may say STALL
    tracker = LagTracker(window=3, stall_after_s=30)
    committed, statuses = 0, []
    for t in range(0, 300, 2):
        if t % 14 == 0:
            committed += 100
        report = tracker.update("g", [_sample(0, committed, 5000, at=float(t))])
        statuses.append(report.status)
    assert set(statuses) == {Status.OK}


def test_suspects_are_the_partitions_that_never_moved_while_watched() -> None:
    tracker = LagTracker(window=3, stall_after_s=30)

    def sample(at: float, moved: int) -> list[PartitionSample]:
        return [
            _sample(0, 5, 9, at=at, owner="m1"),
            _sample(1, moved, 9, at=at, owner="m2"),
            _sample(2, 4, 4, at=at, owner="m2"),
        ]

    tracker.update("g", sample(0, 5))
    report = tracker.update("g", sample(4, 6))
    assert [p.sample.partition for p in tracker.suspects(report)] == [0]
    report = tracker.update("g", sample(30, 6))
    assert report.partitions[0].status is Status.STALL and not tracker.suspects(report)
    assert report.partitions[0].owner_unmoved_s == 30


def test_a_partition_waiting_while_its_owner_commits_others_is_not_stall() -> None:
    # one member drains partition 1; partition 0 waits its turn: progress, not a stall,
    # unless it waits STARVED_FACTOR times stall_after_s
    tracker = LagTracker(window=3, stall_after_s=30)
    statuses = {}
    for t in range(0, 130, 10):
        report = tracker.update(
            "g", [_sample(0, 5, 90, at=t, owner="m1"), _sample(1, t, 900, at=t, owner="m1")]
        )
        statuses[t] = report.partitions[0].status
        assert report.partitions[1].status is Status.OK
    assert {statuses[t] for t in range(0, 120, 10)} == {Status.OK}
    assert statuses[120] is Status.STALL  # starved: 4 x 30 s without its turn
    assert not tracker.suspects(report)


def test_with_owners_unknown_the_group_as_a_whole_counts() -> None:
    tracker = LagTracker(window=2, stall_after_s=10)
    for t, moved in ((0, 1), (5, 2), (10, 2), (15, 2)):
        report = tracker.update("g", [_sample(0, 5, 9, at=t), _sample(1, moved, 9, at=t)])
    assert [p.status for p in report.partitions] == [Status.STALL, Status.STALL]
    assert [p.owner_unmoved_s for p in report.partitions] == [10, 10]


def test_export_sets_partition_and_group_gauges() -> None:
    metrics = Metrics()
    tracker = LagTracker(window=2)
    tracker.update("g", [_sample(0, None, 500, members=0), _sample(1, 4, 4, members=0)])
    report: GroupLag = tracker.update(
        "g", [_sample(0, None, 500, members=0), _sample(1, 4, 4, members=0)]
    )
    export(metrics, report, lambda t: t.removeprefix("t."))
    families = {
        f.name: f
        for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
    }
    lag = {
        s.labels["partition"]: s.value
        for s in families["campaign_worker_consumer_lag_messages"].samples
    }
    assert lag == {"0": 500, "1": 0}
    seconds = {
        s.labels["partition"]: s.value
        for s in families["campaign_worker_consumer_lag_seconds"].samples
    }
    assert math.isnan(seconds["0"]) and seconds["1"] == 0
    committed = families["campaign_worker_consumer_committed_offset"].samples
    assert [(s.labels["partition"], s.value) for s in committed] == [("1", 4)]
    status = {
        (s.labels["partition"], s.labels["status"]): s.value
        for s in families["campaign_worker_consumer_partition_status"].samples
    }
    assert status[("0", "STOP")] == 1 and status[("0", "OK")] == 0 and status[("1", "OK")] == 1
    assert all(
        s.labels["topic"] == "campaign.commands"
        for s in families["campaign_worker_consumer_partition_status"].samples
    )
    group = {
        s.labels["status"]: s.value
        for s in families["campaign_worker_consumer_group_status"].samples
    }
    assert group["STOP"] == 1 and sum(group.values()) == 1
    [code] = families["campaign_worker_consumer_group_status_code"].samples
    assert code.value == Status.STOP.severity and code.labels == {"group": "g"}
