"""Consumer lag of a consumer group, measured by the worker itself (and by `campaign-worker lag`).

What Burrow, kafka-lag-exporter and the KEDA Kafka scaler give, without running them: the
worker knows its group and its inbound topics, so it measures them.

Each sample reads, for every partition of every inbound topic:

* the group's committed offset (OffsetFetch); `None` when the group never committed there;
* the log start and end offset (ListOffsets, end = high watermark);
* **offset lag** = end - max(committed, log start). A group that never committed starts at
  the log start (the worker's consumers use `auto_offset_reset=earliest`), and records
  deleted by retention can no longer be consumed, so neither counts;
* **lag seconds** = now - timestamp of the record AT that offset: the age of the oldest
  message not yet consumed. That one record is fetched with a separate group-less consumer
  (and cached while the committed offset stays put); it is never interpolated from
  production rates. 0 when the lag is 0; unknown (`None`, NaN in metrics) when no record
  could be read there (for example only transaction markers remain). The timestamp is the
  producer's CreateTime unless the topic uses LogAppendTime;
* the number of members in the group (DescribeGroups).

Status, Burrow's rules adapted to sampled offsets. Kafka's OffsetFetch does not say when a
commit happened, only its offset, so the tracker remembers since when each partition's
committed offset has stood still (`unmoved_s`); group membership tells a stuck consumer from
an absent one. The **evaluation window** is the last N samples of a partition
(`CAMPAIGN_WORKER_LAG_WINDOW`, default 6, at one sample per `CAMPAIGN_WORKER_LAG_INTERVAL_S`,
default 10 s; the CLI: `--samples` at `--interval`). First match wins:

1. ERR    the partition could not be measured in the latest sample (topic missing, error).
2. OK     the latest lag is 0: caught up, or an idle partition.
3. STOP   messages wait and the group has no member in the latest sample: nobody consumes
          (the worker is down, or its consumer died). One sample is enough.
4. OK     the lag was 0 at some sample of the window (it caught up recently).
5. REWIND the committed offset went backwards between two samples of the window.
6. STALL  messages wait, the group has members, the committed offset has not moved (or was
          never set) for `stall_after_s` (`CAMPAIGN_WORKER_LAG_STALL_AFTER_S`, default 30 s),
          and neither has any other partition of the member that owns it: a consumer is
          there but stuck (poison message, database down) or stopped committing. A working
          worker goes through its partitions' fetches one after the other, so one partition
          may wait its turn for a long time while the member commits others: that is
          progress, not a stall, unless the partition waits `STARVED_FACTOR` times as long.
          A shorter look cannot tell stuck from busy; the CLI keeps sampling a partition
          that looks stuck until it (or its owner) moves or `stall_after_s` has passed.
7. WARN   *full window* (N >= 2 samples), the committed offset moves but the lag grew at
          every step: falling behind.
8. OK     otherwise.

The group's status is its worst partition status, by severity
OK < WARN < REWIND < STALL < STOP < ERR, and ERR when a whole sample failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

if TYPE_CHECKING:
    from campaign_worker.adapters.metrics import Metrics
    from campaign_worker.config import Settings

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0
DEFAULT_WINDOW = 6
DEFAULT_STALL_AFTER_S = 30.0
STARVED_FACTOR = 4
"""A partition whose owner commits elsewhere is STALL only after this many `stall_after_s`."""


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"
    ERR = "ERR"

    @property
    def severity(self) -> int:
        return list(Status).index(self)


@dataclass(frozen=True)
class PartitionSample:
    """One partition as seen at one instant."""

    topic: str  # physical topic name
    partition: int  # -1 for a topic that could not be described at all
    at: float  # unix seconds
    committed: int | None
    log_start: int
    end: int
    lag: int
    lag_seconds: float | None
    members: int
    error: str | None = None
    owner: str | None = None  # member id that holds the partition, when the group says


def unmoved_for(window: Sequence[PartitionSample]) -> float:
    """Seconds the committed offset has stood still at its latest value, within the window."""
    valid = [s for s in window if s.error is None]
    if not valid:
        return 0.0
    latest = valid[-1]
    since = latest.at
    for s in reversed(valid):
        if s.committed != latest.committed:
            break
        since = s.at
    return latest.at - since


def evaluate(
    window: Sequence[PartitionSample],
    size: int,
    *,
    stall_after_s: float = DEFAULT_STALL_AFTER_S,
    unmoved_s: float | None = None,
    owner_unmoved_s: float | None = None,
) -> Status:
    """The status of one partition from its samples, oldest first (rules in the module doc).

    `unmoved_s`: how long the committed offset has stood still (the tracker knows it beyond
    the window); measured inside the window when not given. `owner_unmoved_s`: how long the
    member holding the partition has committed nothing anywhere (None: not known, taken as
    `unmoved_s`)."""
    if not window:
        return Status.ERR
    latest = window[-1]
    if latest.error is not None:
        return Status.ERR
    if latest.lag == 0:
        return Status.OK
    if latest.members == 0:
        return Status.STOP
    valid = [s for s in window if s.error is None]
    if any(s.lag == 0 for s in valid):
        return Status.OK
    known = [s.committed if s.committed is not None else -1 for s in valid]
    if any(b < a for a, b in pairwise(known)):
        return Status.REWIND
    still = unmoved_for(valid) if unmoved_s is None else unmoved_s
    owner_still = still if owner_unmoved_s is None else min(still, owner_unmoved_s)
    if still >= stall_after_s and (
        owner_still >= stall_after_s or still >= STARVED_FACTOR * stall_after_s
    ):
        return Status.STALL
    full = size >= 2 and len(valid) >= size
    lags = [s.lag for s in valid]
    moved = len(set(known)) > 1
    if full and moved and all(b > a for a, b in pairwise(lags)):
        return Status.WARN
    return Status.OK


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class PartitionLag:
    sample: PartitionSample
    status: Status
    unmoved_s: float = 0.0  # how long the committed offset has stood still, as observed
    owner_unmoved_s: float = 0.0  # how long its owner (or the group) committed nothing at all

    def to_json(self) -> dict[str, Any]:
        data = asdict(self.sample)
        data["status"] = self.status.value
        data["unmoved_s"] = round(self.unmoved_s, 3)
        data["owner_unmoved_s"] = round(self.owner_unmoved_s, 3)
        if data["lag_seconds"] is not None:
            data["lag_seconds"] = round(data["lag_seconds"], 3)
        return data


@dataclass(frozen=True)
class GroupLag:
    """One evaluated sample of a group: every partition with its status, and the group's."""

    group: str
    at: float
    members: int
    partitions: tuple[PartitionLag, ...]
    status: Status
    window: int
    samples: int  # how many samples the longest partition window holds
    observed_s: float = 0.0  # from the first sample this tracker took to this one
    stall_after_s: float = DEFAULT_STALL_AFTER_S

    @property
    def total_lag(self) -> int:
        return sum(p.sample.lag for p in self.partitions)

    @property
    def max_lag_seconds(self) -> float:
        return max((p.sample.lag_seconds or 0.0 for p in self.partitions), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "at": self.at,
            "status": self.status.value,
            "members": self.members,
            "window": self.window,
            "samples": self.samples,
            "observed_s": round(self.observed_s, 3),
            "stall_after_s": self.stall_after_s,
            "total_lag": self.total_lag,
            "max_lag_seconds": round(self.max_lag_seconds, 3),
            "partitions": [p.to_json() for p in self.partitions],
        }


@dataclass
class LagTracker:
    """Keeps the evaluation window of each partition, and since when its committed offset
    stands still, and evaluates new samples (pure)."""

    window: int = DEFAULT_WINDOW
    stall_after_s: float = DEFAULT_STALL_AFTER_S
    _windows: dict[tuple[str, int], deque[PartitionSample]] = field(default_factory=dict)
    _still_since: dict[tuple[str, int], tuple[int | None, float]] = field(default_factory=dict)
    _owner_moved_at: dict[str | None, float] = field(default_factory=dict)
    _first_at: float | None = None

    def update(self, group: str, samples: Sequence[PartitionSample]) -> GroupLag:
        current = {(s.topic, s.partition) for s in samples}
        for gone in set(self._windows) - current:
            del self._windows[gone]
            self._still_since.pop(gone, None)
        ordered = sorted(samples, key=lambda s: (s.topic, s.partition))
        for s in ordered:  # first: which owners committed anything since the last sample
            if s.error is not None:
                continue
            key = (s.topic, s.partition)
            known = self._still_since.get(key)
            for owner in {s.owner, None}:  # None: the group as a whole
                self._owner_moved_at.setdefault(owner, s.at)
                if known is not None and known[0] != s.committed:
                    self._owner_moved_at[owner] = s.at
            if known is None or known[0] != s.committed:
                self._still_since[key] = (s.committed, s.at)
        evaluated = []
        for s in ordered:
            key = (s.topic, s.partition)
            w = self._windows.setdefault(key, deque(maxlen=self.window))
            w.append(s)
            since = self._still_since.get(key, (None, s.at))[1]
            unmoved = max(0.0, s.at - since)
            owner_unmoved = max(0.0, s.at - self._owner_moved_at.get(s.owner, s.at))
            status = evaluate(
                list(w),
                self.window,
                stall_after_s=self.stall_after_s,
                unmoved_s=unmoved,
                owner_unmoved_s=owner_unmoved,
            )
            evaluated.append(PartitionLag(s, status, unmoved, owner_unmoved))
        at = max((s.at for s in samples), default=time.time())
        if self._first_at is None:
            self._first_at = at
        return GroupLag(
            group=group,
            at=at,
            members=next((s.members for s in samples if s.error is None), 0),
            partitions=tuple(evaluated),
            status=worst(p.status for p in evaluated),
            window=self.window,
            samples=max((len(w) for w in self._windows.values()), default=0),
            observed_s=at - self._first_at,
            stall_after_s=self.stall_after_s,
        )

    def suspects(self, report: GroupLag) -> list[PartitionLag]:
        """Partitions that may be stuck but have not stood still long enough to say STALL:
        messages wait, members are there, and neither the partition nor its owner committed
        anything while we looked."""
        return [
            p
            for p in report.partitions
            if p.status is Status.OK
            and p.sample.error is None
            and p.sample.lag > 0
            and p.sample.members > 0
            and min(p.unmoved_s, p.owner_unmoved_s) >= report.observed_s
            and p.unmoved_s < self.stall_after_s
        ]


class LagReader:
    """Reads one sample of a group's offsets and lag over some topics (the I/O half)."""

    def __init__(
        self,
        kafka: dict[str, Any],
        group: str,
        topics: Sequence[str],
        *,
        fetch_timeout_s: float = 3.0,
        retries: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = kafka
        self._group = group
        self._topics = list(topics)
        self._fetch_timeout_s = fetch_timeout_s
        self._retries = retries
        self._clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._timestamps: dict[tuple[TopicPartition, int], float] = {}
        self._started = False

    async def start(self) -> None:
        # Both kept before starting, so that stop() closes whatever a failed or cancelled
        # start left open.
        self._admin = AIOKafkaAdminClient(**self._kafka, client_id="campaign-worker-lag")
        self._consumer = AIOKafkaConsumer(
            **self._kafka,
            group_id=None,  # never joins, never commits: it only peeks at one record
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="campaign-worker-lag",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=64 * 1024,  # the first batch is returned whatever its size
        )
        try:
            await self._admin.start()
            await self._consumer.start()
        except BaseException:
            await self.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        self._started = False
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    @property
    def started(self) -> bool:
        return self._started

    async def sample(self) -> list[PartitionSample]:
        """One sample; retriable broker errors (a coordinator moving) are retried briefly."""
        for attempt in range(1, self._retries + 1):
            try:
                return await self._sample()
            except KafkaError as error:
                if not error.retriable or attempt == self._retries:
                    raise
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    async def _sample(self) -> list[PartitionSample]:
        admin, consumer = self._admin, self._consumer
        if not self._started or admin is None or consumer is None:
            raise RuntimeError("LagReader.sample() before start()")
        # All topics: naming missing ones in a metadata request may auto-create them.
        described = {t["topic"]: t for t in await admin.describe_topics()}
        samples: list[PartitionSample] = []
        tps: list[TopicPartition] = []
        now = self._clock()
        for topic in self._topics:
            info = described.get(topic)
            if info is None or info["error_code"] or not info["partitions"]:
                samples.append(_failed(topic, -1, now, "topic does not exist"))
                continue
            tps += [TopicPartition(topic, p["partition"]) for p in info["partitions"]]
        if not tps:
            return samples
        members, owners = await self._members(admin)
        offsets = await admin.list_consumer_group_offsets(self._group, partitions=tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        positions: dict[TopicPartition, tuple[int | None, int]] = {}
        for tp in tps:
            meta = offsets.get(tp)
            committed = meta.offset if meta is not None and meta.offset >= 0 else None
            first_unconsumed = max(committed if committed is not None else 0, starts[tp])
            positions[tp] = (committed, first_unconsumed)
        wanted = {tp: first for tp, (_, first) in positions.items() if ends[tp] > first}
        stamps = await self._record_timestamps(wanted)
        now = self._clock()
        for tp in sorted(tps):
            committed, first = positions[tp]
            lag = max(0, ends[tp] - first)
            stamp = stamps.get(tp)
            seconds = 0.0 if lag == 0 else (max(0.0, now - stamp) if stamp is not None else None)
            samples.append(
                PartitionSample(
                    topic=tp.topic,
                    partition=tp.partition,
                    at=now,
                    committed=committed,
                    log_start=starts[tp],
                    end=ends[tp],
                    lag=lag,
                    lag_seconds=seconds,
                    members=members,
                    owner=owners.get(tp),
                )
            )
        return samples

    async def _members(self, admin: AIOKafkaAdminClient) -> tuple[int, dict[TopicPartition, str]]:
        """How many members the group has, and which member holds which partition (from the
        assignments the group coordinator hands out; empty when it does not say)."""
        from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

        for response in await admin.describe_consumer_groups([self._group]):
            for g in response.to_object()["groups"]:
                if g["group"] != self._group:
                    continue
                owners: dict[TopicPartition, str] = {}
                for member in g["members"]:
                    raw = member.get("member_assignment") or b""
                    try:
                        assignment = ConsumerProtocolMemberAssignment.decode(raw)
                    except Exception:  # another protocol, or nothing assigned yet
                        continue
                    for tp in assignment.partitions():
                        owners[tp] = member["member_id"]
                return len(g["members"]), owners
        return 0, {}

    async def _record_timestamps(
        self, wanted: dict[TopicPartition, int]
    ) -> dict[TopicPartition, float]:
        """Timestamp (unix seconds) of the record at each wanted offset, read once and cached
        while that offset stays the first unconsumed one."""
        consumer = self._consumer
        assert consumer is not None
        keys = set(wanted.items())
        self._timestamps = {k: v for k, v in self._timestamps.items() if k in keys}
        found = {
            tp: self._timestamps[(tp, off)]
            for tp, off in wanted.items()
            if (tp, off) in self._timestamps
        }
        todo = {tp: off for tp, off in wanted.items() if tp not in found}
        if not todo:
            return found
        consumer.assign(list(todo))
        for tp, off in todo.items():
            consumer.seek(tp, off)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._fetch_timeout_s
        try:
            while todo and loop.time() < deadline:
                batch = await consumer.getmany(*todo, timeout_ms=200)
                for tp, records in batch.items():
                    if records and tp in todo:
                        stamp = records[0].timestamp / 1000
                        self._timestamps[(tp, todo.pop(tp))] = stamp
                        found[tp] = stamp
        finally:
            consumer.unsubscribe()  # stop the background fetcher until the next sample
        if todo:
            log.debug("no record read at %s within %.1fs", todo, self._fetch_timeout_s)
        return found


def _failed(topic: str, partition: int, at: float, error: str) -> PartitionSample:
    return PartitionSample(
        topic=topic,
        partition=partition,
        at=at,
        committed=None,
        log_start=0,
        end=0,
        lag=0,
        lag_seconds=None,
        members=0,
        error=error,
    )


async def measure(
    kafka: dict[str, Any],
    group: str,
    topics: Sequence[str],
    *,
    samples: int = 3,
    interval_s: float = 2.0,
    stall_after_s: float = DEFAULT_STALL_AFTER_S,
) -> GroupLag:
    """`samples` samples `interval_s` apart, evaluated over a window of all of them (the CLI).

    When a partition then looks stuck (messages wait, members are there, its offset never
    moved) but has not stood still for `stall_after_s`, sampling goes on until it moves or
    that much time has passed: a short look must not call a busy worker STALL."""
    reader = LagReader(kafka, group, topics)
    count = max(1, samples)
    longest = count + math.ceil(stall_after_s / max(interval_s, 0.1)) + 1
    tracker = LagTracker(window=count, stall_after_s=stall_after_s)
    await reader.start()
    try:
        report: GroupLag | None = None
        for i in range(longest):
            if i:
                await asyncio.sleep(interval_s)
            report = tracker.update(group, await reader.sample())
            if i + 1 >= count and not tracker.suspects(report):
                break
        assert report is not None
        return report
    finally:
        await reader.stop()


def export(metrics: Metrics, report: GroupLag, contract_topic: Callable[[str], str]) -> None:
    """Publish a report as Prometheus gauges (topic labels use contract names)."""
    for p in report.partitions:
        s = p.sample
        if s.partition < 0:
            continue
        labels = (contract_topic(s.topic), str(s.partition))
        if s.error is None:
            metrics.consumer_lag.labels(*labels).set(s.lag)
            metrics.consumer_lag_seconds.labels(*labels).set(
                s.lag_seconds if s.lag_seconds is not None else math.nan
            )
            metrics.consumer_end_offset.labels(*labels).set(s.end)
            if s.committed is not None:
                metrics.consumer_committed_offset.labels(*labels).set(s.committed)
        for status in Status:
            metrics.consumer_partition_status.labels(*labels, status.value).set(
                1 if status is p.status else 0
            )
    export_group_status(metrics, report.group, report.status)
    metrics.consumer_group_members.labels(report.group).set(report.members)


def export_group_status(metrics: Metrics, group: str, status: Status) -> None:
    for s in Status:
        metrics.consumer_group_status.labels(group, s.value).set(1 if s is status else 0)
    metrics.consumer_group_status_code.labels(group).set(status.severity)


class LagProbe:
    """Samples the worker's own group every interval and exports the result as metrics."""

    def __init__(
        self,
        kafka: dict[str, Any],
        group: str,
        topics: Sequence[str],
        metrics: Metrics,
        *,
        contract_topic: Callable[[str], str] = lambda t: t,
        interval_s: float = DEFAULT_INTERVAL_S,
        window: int = DEFAULT_WINDOW,
        stall_after_s: float = DEFAULT_STALL_AFTER_S,
    ) -> None:
        self._reader = LagReader(kafka, group, topics)
        self._tracker = LagTracker(window=window, stall_after_s=stall_after_s)
        self._group = group
        self._metrics = metrics
        self._contract_topic = contract_topic
        self._interval_s = interval_s
        self.latest: GroupLag | None = None

    async def run(self) -> None:
        """Sample forever (a task of the worker, cancelled when it stops)."""
        try:
            while True:
                await self.sample_once()
                await asyncio.sleep(self._interval_s)
        finally:
            await self.close()

    async def close(self) -> None:
        await self._reader.stop()

    async def sample_once(self) -> GroupLag | None:
        """One round; a failure is reported as group status ERR and retried next round."""
        try:
            if not self._reader.started:
                await self._reader.start()
            report = self._tracker.update(self._group, await self._reader.sample())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._metrics.lag_probe_runs.labels("error").inc()
            export_group_status(self._metrics, self._group, Status.ERR)
            log.warning("consumer lag sample failed: %r", error)
            return None
        self._metrics.lag_probe_runs.labels("ok").inc()
        export(self._metrics, report, self._contract_topic)
        self.latest = report
        return report


def worker_probe(settings: Settings, metrics: Metrics) -> LagProbe:
    """The probe a worker runs over its own group and inbound topics."""
    from campaign_worker import topics
    from campaign_worker.adapters.kafka_client import client_kwargs

    prefix = settings.topic_prefix
    return LagProbe(
        client_kwargs(settings),
        settings.group_id,
        [settings.topic(t) for t in topics.INBOUND],
        metrics,
        contract_topic=lambda t: t[len(prefix) :] if prefix and t.startswith(prefix) else t,
        interval_s=settings.lag_interval_s,
        window=settings.lag_window,
        stall_after_s=settings.lag_stall_after_s,
    )
