"""`make bench`: what users feel, end to end, against a naive worker, in one run.

On the real Apache Kafka and Postgres the tests use (tests/support/servers.py; or
KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set), the worker runs as its own process
(`campaign-worker run`), each scenario on a fresh database and fresh topics:

* create  N `campaign.create` commands;
* mix     the realistic mix (bench/helpers.py `mix_plan`): create, submit, approve, pause,
          resume, delivery, one sixth each, manual billing, sequences valid in any
          interleaving of topics (the campaigns approved, paused and reported on are set up
          as SUBMITTED / BOOKED rows cloned from ones the worker itself wrote);
* naive   the same mix on bench/naive_worker.py (one message, one ORM session and
          transaction), for the ratio;
* latency the worker running and caught up, a paced producer offering the mix at fixed
          rates; p50/p99 from produce to the outcome event's arrival;
* due     N BOOKED campaigns with one start instant inserted straight into Postgres; the
          worker starts after the instant; until all are LIVE and their events published.

For create/mix/naive every command is in Kafka before the worker starts; the clock starts at
the first outcome event on campaign.events and stops when every command's outcome (counted
once by CloudEvent `causationid`) is there AND the outbox is empty. Worker CPU is the
process's own utime+stime (/proc/PID/stat) between those two instants; peak RSS is VmHWM.
Rate and CPU per command count the commands timed: those whose outcome arrived after the
poll that brought the first one (that batch was done before the clock started).
Nothing here is a test; a failure (worker died, timeout, refused commands) exits non-zero.

    make bench                                   # full run (10-20 minutes on 2 cores)
    make bench BENCH_ARGS=--quick                # small sizes, 2-3 minutes
    .venv/bin/python bench/throughput.py --only mix --profile bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from tests.support.servers import kafka_server, postgres_server  # noqa: E402

from bench import helpers as h  # noqa: E402
from campaign_worker import topics  # noqa: E402
from campaign_worker.adapters.db.migrate import upgrade  # noqa: E402
from campaign_worker.adapters.kafka_client import ensure_topics  # noqa: E402
from campaign_worker.config import Settings  # noqa: E402
from campaign_worker.dev.services import free_port  # noqa: E402

SCENARIOS = ("create", "mix", "naive", "latency", "due")


class BenchFailure(Exception):
    """The bench could not measure: a process died, a deadline passed, commands refused."""


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


class Proc:
    """A worker process (the real one or the naive one) with its log in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = logdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    async def start(self) -> None:
        with self.log_path.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def check(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise BenchFailure(
                f"{self.name} exited with {self.proc.returncode}; log {self.log_path}:\n"
                + self.tail()
            )

    def cpu(self) -> float:
        self.check()
        return h.process_cpu_seconds(self.pid)

    def peak_rss_mib(self) -> float:
        self.check()
        return h.process_peak_rss_mib(self.pid)

    async def stop(self, grace: float = 40) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            say(f"  {self.name} did not stop within {grace:.0f}s: killing it")
            self.proc.kill()
            await self.proc.wait()


class ProcGroup:
    """Several worker processes of one consumer group, measured as one: CPU is their sum,
    peak RSS the largest, and any of them dying fails the run."""

    def __init__(self, procs: list[Proc]) -> None:
        self.procs = procs
        self.name = f"{len(procs)} x {procs[0].name}"
        self.log_path = procs[0].log_path
        self.started_at = 0.0

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.procs))
        self.started_at = min(p.started_at for p in self.procs)

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    def tail(self, n: int = 3000) -> str:
        return "\n".join(f"[{p.log_path}]\n{p.tail(n // len(self.procs))}" for p in self.procs)

    def check(self) -> None:
        for p in self.procs:
            p.check()

    def cpu(self) -> float:
        return sum(p.cpu() for p in self.procs)

    def peak_rss_mib(self) -> float:
        return max(p.peak_rss_mib() for p in self.procs)

    async def stop(self, grace: float = 40) -> None:
        await asyncio.gather(*(p.stop(grace) for p in self.procs))


async def processed_by(proc: Proc) -> float:
    """The commands a worker processed, from its /metrics (campaign_worker_messages_total)."""
    port = int(proc.env["CAMPAIGN_WORKER_HTTP_PORT"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        text = (await reader.read()).decode(errors="replace")
    finally:
        writer.close()
    return h.metric_sum(text, "campaign_worker_messages_total")


# --------------------------------------------------------------------------------------
# What the worker publishes
# --------------------------------------------------------------------------------------


class Collector:
    """Reads campaign.events from the beginning and notes when each awaited outcome arrives.

    mode "cause": an outcome is any event but `campaign.serving_changed` (a side effect),
    keyed by its `causationid` (a command id), so the relay's re-publications count once.
    mode "live": a `campaign.status_changed` to LIVE, keyed by its subject (campaign id).
    """

    def __init__(self, kafka: str, prefix: str) -> None:
        self.consumer = AIOKafkaConsumer(
            f"{prefix}{topics.EVENTS}",
            bootstrap_servers=kafka,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            metadata_max_age_ms=1000,
        )
        self.mode = "cause"
        self.pending: set[str] = set()
        self.arrived: dict[str, float] = {}
        self.first_at: float | None = None
        self.first_seen = asyncio.Event()
        self.on_first: Callable[[], None] | None = None
        self.types: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.events = 0
        self.first_poll = 0  # outcomes that arrived in the same poll as the first one
        self._task: asyncio.Task[None] | None = None

    def expect(
        self, keys: Iterable[str], mode: str = "cause", on_first: Callable[[], None] | None = None
    ) -> None:
        self.mode = mode
        self.pending = set(keys)
        self.first_at = None
        self.first_seen.clear()
        self.first_poll = 0
        self.on_first = on_first
        self.types.clear()
        self.rejected.clear()

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    async def _pump(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=20000)
            now = time.monotonic()
            waiting, pending = self.first_at is None, len(self.pending)
            for records in batch.values():
                for r in records:
                    self._see(r.value, now)
            if waiting and self.first_at is not None:
                self.first_poll = pending - len(self.pending)

    def _see(self, value: bytes, now: float) -> None:
        self.events += 1
        event = json.loads(value)
        type_ = event.get("type")
        if self.mode == "cause":
            if type_ == "campaign.serving_changed":
                return
            key = event.get("causationid")
        else:
            if type_ != "campaign.status_changed" or (event.get("data") or {}).get("to") != "LIVE":
                return
            key = event.get("subject")
        if key not in self.pending:
            return
        self.pending.discard(key)
        self.arrived[key] = now
        self.types[type_] += 1
        if type_ == "command.rejected":
            self.rejected[(event.get("data") or {}).get("code", "?")] += 1
        if self.first_at is None:
            self.first_at = now
            self.first_seen.set()
            if self.on_first is not None:
                self.on_first()


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of a worker over a set of commands.

    The clock starts when the first outcome arrives; what arrived in that same poll was
    done (and its CPU spent) before the clock started, so rate and CPU per command count
    the commands whose outcome arrived after it (`timed`)."""

    label: str
    commands: int
    seconds: float
    cpu_s: float
    rss_mib: float
    types: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    first_poll: int = 0

    @property
    def timed(self) -> int:
        after = self.commands - self.first_poll
        return after if after > 0 else self.commands

    @property
    def rate(self) -> float:
        return self.timed / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.timed * 1e6

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "commands": self.commands,
            "timed_commands": self.timed,
            "seconds": round(self.seconds, 3),
            "per_s": round(self.rate, 1),
            "cpu_us_per_cmd": round(self.cpu_us, 1),
            "worker_cpu_share": round(self.cpu_share, 3),
            "peak_rss_mib": round(self.rss_mib, 1),
            "outcomes": self.types,
            "rejected": self.rejected,
            **self.extra,
        }


@dataclass
class LatencyStep:
    offered: int
    sent: int
    achieved: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    catch_up_s: float
    cpu_us: float
    cpu_share: float

    def as_json(self) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in vars(self).items()}


# --------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------


class Bench:
    def __init__(self, kafka: str, postgres_url: str, args: argparse.Namespace) -> None:
        self.kafka = kafka
        self.postgres_url = postgres_url
        self.args = args
        self.logdir = Path(tempfile.mkdtemp(prefix="campaign-worker-bench-"))
        self.template_db = ""
        self.tmpl_submitted = ""
        self.tmpl_booked = ""
        self.databases: list[str] = []
        self.problems: list[str] = []

    # ------------------------------------------------------------------ plumbing

    def url_of(self, name: str) -> str:
        base, _, _ = self.postgres_url.rpartition("/")
        return f"{base}/{name}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.postgres_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def new_database(self, label: str) -> str:
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        template = f' TEMPLATE "{self.template_db}"' if self.template_db else ""
        await self.admin(f'CREATE DATABASE "{name}"{template}')
        self.databases.append(name)
        return self.url_of(name)

    async def drop_databases(self) -> None:
        for name in self.databases:
            with contextlib.suppress(Exception):
                await self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.databases.clear()

    def settings(self, prefix: str) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.kafka,
            topic_prefix=prefix,
            topic_partitions=self.args.partitions,
        )

    async def topics_for(self, label: str) -> str:
        """Fresh topics with the worker's partition count, created before anything is
        produced (auto-creation would give the broker's default count), and led."""
        prefix = f"bench{uuid.uuid4().hex[:8]}.{label}."
        settings = self.settings(prefix)
        names = [settings.topic(t) for t in topics.INBOUND + topics.OUTBOUND]
        await ensure_topics(settings, names)
        await self.wait_for_leaders(names)
        return prefix

    async def wait_for_leaders(self, names: list[str], within: float = 60) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            deadline = time.monotonic() + within
            while True:
                described = await admin.describe_topics(names)
                led = len(described) == len(names) and all(
                    t["error_code"] == 0
                    and len(t["partitions"]) == self.args.partitions
                    and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                )
                if led:
                    return
                if time.monotonic() > deadline:
                    raise BenchFailure(f"topics without a leader after {within:.0f}s: {described}")
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    def worker(
        self,
        kind: str,
        db_url: str,
        prefix: str,
        *,
        scheduler: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> Proc:
        env = dict(
            os.environ,
            DATABASE_URL=db_url,
            KAFKA_BOOTSTRAP_SERVERS=self.kafka,
            CAMPAIGN_WORKER_TOPIC_PREFIX=prefix,
            CAMPAIGN_WORKER_GROUP_ID=f"cw-{prefix}",
            CAMPAIGN_WORKER_HTTP_PORT=str(free_port()),
            CAMPAIGN_WORKER_HTTP_HOST="127.0.0.1",
            CAMPAIGN_WORKER_TOPIC_PARTITIONS=str(self.args.partitions),
            CAMPAIGN_WORKER_NOTIFIER="false",
            CAMPAIGN_WORKER_SCHEDULER="true" if scheduler else "false",
        )
        env.update(self.args.worker_env or {})
        env.update(extra_env or {})
        if kind == "naive":
            argv = [sys.executable, str(REPO / "bench" / "naive_worker.py")]
        else:
            argv = [str(Path(sys.executable).with_name("campaign-worker")), "run", "--no-migrate"]
        return Proc(kind, argv, env, self.logdir)

    async def produce(self, prefix: str, commands: Sequence[h.Command]) -> None:
        """Every command in Kafka, acknowledged, in order per campaign."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka, acks="all", linger_ms=10, max_batch_size=512 * 1024
        )
        await producer.start()
        try:
            futures = []
            for n, c in enumerate(commands):
                futures.append(await producer.send(prefix + c.topic, c.value, key=c.key))
                if n % 20000 == 19999:
                    await asyncio.gather(*futures)
                    futures.clear()
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def wait_done(
        self, label: str, collector: Collector, proc: Proc, db: asyncpg.Connection, total: int
    ) -> float:
        """The instant every awaited outcome had arrived and the outbox was empty."""
        stall = self.args.stall_timeout
        last_count, last_change = -1, time.monotonic()
        last_say = time.monotonic()
        while True:
            proc.check()
            now = time.monotonic()
            done = total - len(collector.pending)
            if not collector.pending and not await db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM outbox)"
            ):
                return now
            if done != last_count:
                last_count, last_change = done, now
            elif now - last_change > stall:
                raise BenchFailure(
                    f"{label}: no progress for {stall:.0f}s: {done}/{total} outcomes"
                    + (", the outbox not empty" if not collector.pending else "")
                    + f"; worker log {proc.log_path}:\n{proc.tail()}"
                )
            if now - last_say >= 5:
                first = collector.first_at
                rate = f", {done / (now - first):.0f}/s" if first and now > first else ""
                say(f"  {label}: {done}/{total} outcomes{rate}")
                last_say = now
            await asyncio.sleep(0.05)

    def check_refusals(self, label: str, collector: Collector) -> None:
        if collector.rejected:
            problem = f"{label}: commands refused: {dict(collector.rejected)}"
            self.problems.append(problem)
            say(f"  WARNING {problem}")

    # ------------------------------------------------------------------ setup rows

    async def build_template(self) -> None:
        """A migrated database holding the catalog product and two campaigns the real worker
        took to SUBMITTED and BOOKED; every scenario's database is a copy of it, and the
        campaigns a scenario needs in those states are clones of these two."""
        name = f"bench_template_{uuid.uuid4().hex[:8]}"
        await self.admin(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        url = self.url_of(name)
        await upgrade(Settings(database_url=url).sqlalchemy_url)
        prefix = await self.topics_for("template")
        collector = Collector(self.kafka, prefix)
        await collector.start()
        proc = self.worker("worker", url, prefix)
        db = await asyncpg.connect(url)
        try:
            await proc.start()
            await self.produce(prefix, [h.product_command()])
            deadline = time.monotonic() + 120
            while not await db.fetchval("SELECT count(*) FROM ad_products"):
                proc.check()
                if time.monotonic() > deadline:
                    raise BenchFailure("template: the catalog product was not stored in 120s")
                await asyncio.sleep(0.1)
            sub, book = str(uuid.uuid4()), str(uuid.uuid4())
            data = h.create_data()
            for step in (
                [h.command("campaign.create", sub, data), h.command("campaign.create", book, data)],
                [h.command("campaign.submit", sub), h.command("campaign.submit", book)],
                [h.command("review.campaign_approved", book)],
            ):
                collector.expect([c.id for c in step])
                await self.produce(prefix, step)
                await self.wait_done("template", collector, proc, db, len(step))
                if collector.rejected:
                    raise BenchFailure(f"template: refused {dict(collector.rejected)}")
            await proc.stop()
            rows = await db.fetch("SELECT id, status FROM campaigns")
            states = {str(r["id"]): r["status"] for r in rows}
            if states != {sub: "SUBMITTED", book: "BOOKED"}:
                raise BenchFailure(f"template: unexpected campaign states {states}")
            await db.execute("DELETE FROM outbox")
        finally:
            await db.close()
            await proc.stop()
            await collector.stop()
        self.template_db, self.tmpl_submitted, self.tmpl_booked = name, sub, book

    async def clone(
        self,
        db: asyncpg.Connection,
        template_id: str,
        new_ids: Sequence[str],
        overrides: dict[str, str] | None = None,
    ) -> None:
        """Copy every row the worker keeps for the template campaign to each new id, with
        one INSERT ... SELECT over unnest($1::uuid[]) per table and chunk: campaigns (by
        `id`) and every table with a `campaign_id` (history, accounts, holds, ...), except
        rows that belong to messages rather than to the campaign (notifications, outbox,
        inbox, dead letters, statements). Identity columns are left to their defaults and
        the template id inside JSON documents is replaced with the new id."""
        overrides = overrides or {}
        columns: dict[str, list[asyncpg.Record]] = {}
        for r in await db.fetch(
            "SELECT table_name, column_name, data_type, is_identity, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY table_name, ordinal_position"
        ):
            columns.setdefault(r["table_name"], []).append(r)
        skip = {"notifications", "outbox", "inbox", "dead_letters", "statements"}
        statements = []
        for table, cols in sorted(columns.items()):
            names = {c["column_name"] for c in cols}
            key = "id" if table == "campaigns" else "campaign_id" if "campaign_id" in names else ""
            if not key or table in skip or table.startswith("alembic"):
                continue
            targets, exprs = [], []
            for c in cols:
                col = c["column_name"]
                default = str(c["column_default"] or "")
                if c["is_identity"] == "YES" or default.startswith("nextval"):
                    continue
                targets.append(f'"{col}"')
                if col == key:
                    exprs.append("n.new_id")
                elif table == "campaigns" and col in overrides:
                    exprs.append(overrides[col])
                elif c["data_type"] == "jsonb":
                    exprs.append(f'replace(src."{col}"::text, $3, n.new_id::text)::jsonb')
                else:
                    exprs.append(f'src."{col}"')
            sql = (
                f'INSERT INTO "{table}" ({", ".join(targets)}) SELECT {", ".join(exprs)}'
                f' FROM "{table}" AS src CROSS JOIN unnest($1::uuid[]) AS n(new_id)'
                f' WHERE src."{key}" = $2::uuid'
            )
            statements.append((sql, "$3" in sql))
        ids = [uuid.UUID(i) for i in new_ids]
        template = uuid.UUID(template_id)
        for start in range(0, len(ids), 10000):
            chunk = ids[start : start + 10000]
            async with db.transaction():
                for sql, with_text in statements:
                    args = (chunk, template, template_id) if with_text else (chunk, template)
                    await db.execute(sql, *args)

    async def set_up(self, db: asyncpg.Connection, plan: h.MixPlan) -> None:
        if plan.submitted:
            await self.clone(db, self.tmpl_submitted, plan.submitted)
        if plan.booked:
            await self.clone(db, self.tmpl_booked, plan.booked)
        await db.execute("ANALYZE")

    # ------------------------------------------------------------------ scenarios

    async def throughput(
        self,
        label: str,
        kind: str,
        plan: h.MixPlan,
        *,
        extra_env: dict[str, str] | None = None,
        workers: int = 1,
    ) -> Run:
        """All commands in Kafka first, then the worker (its environment plus `extra_env`;
        `workers` processes in one group); timed from first outcome to done."""
        say(f"{label}: {len(plan.commands)} commands on the {kind} worker")
        url = await self.new_database(label)
        prefix = await self.topics_for(label)
        db = await asyncpg.connect(url)
        collector = Collector(self.kafka, prefix)
        proc: Any = self.worker(kind, url, prefix, extra_env=extra_env)
        if workers > 1:
            proc = ProcGroup(
                [proc]
                + [self.worker(kind, url, prefix, extra_env=extra_env) for _ in range(1, workers)]
            )
        profiler: asyncio.Task[Path | None] | None = None
        try:
            await self.set_up(db, plan)
            await collector.start()
            await self.produce(prefix, plan.commands)
            mark: dict[str, float] = {}

            def first() -> None:
                mark["t0"], mark["cpu0"] = time.monotonic(), proc.cpu()

            collector.expect(plan.ids(), on_first=first)
            await proc.start()
            if self.args.profile and label in ("mix", "naive"):
                profiler = asyncio.create_task(self.profile(label, collector, proc))
            t1 = await self.wait_done(label, collector, proc, db, len(plan.commands))
            cpu1, rss = proc.cpu(), proc.peak_rss_mib()
            shares: list[float] = []
            if isinstance(proc, ProcGroup):  # how evenly the group's partitions spread
                counts = [await processed_by(p) for p in proc.procs]
                shares = [c / (sum(counts) or 1) for c in counts]
            if profiler is not None:
                await self.stop_profile(label, profiler)
            self.check_refusals(label, collector)
            expected = Counter(h.OUTCOME_OF[c.type] for c in plan.commands)
            if not collector.rejected and collector.types != expected:
                problem = f"{label}: outcomes {dict(collector.types)}, expected {dict(expected)}"
                self.problems.append(problem)
                say(f"  WARNING {problem}")
            run = Run(
                label,
                len(plan.commands),
                t1 - mark["t0"],
                cpu1 - mark["cpu0"],
                rss,
                dict(collector.types),
                dict(collector.rejected),
                {
                    "startup_to_first_outcome_s": round(mark["t0"] - proc.started_at, 2),
                    "load_average_1m": load_average(),
                },
                first_poll=collector.first_poll,
            )
            if shares:
                run.extra["processed_share_per_worker"] = [round(x, 3) for x in shares]
                spread = ", ".join(f"{x:.0%}" for x in shares)
                say(f"  {label}: share of commands per worker {spread}")
            say(
                f"  {label}: {run.rate:.0f}/s, {run.cpu_us:.0f} us CPU per command, "
                f"worker at {run.cpu_share:.0%} of a core, peak RSS {rss:.0f} MiB"
            )
            return run
        finally:
            if profiler is not None and not profiler.done():
                profiler.cancel()
            await proc.stop()
            await collector.stop()
            await db.close()

    async def latency(self, rates: Sequence[int], seconds: float) -> list[LatencyStep]:
        """One worker, running and caught up; the mix offered at each rate for `seconds`."""
        warm_units = 10
        sizes = [h.units_for(r * seconds) for r in rates]
        plan = h.mix_plan(warm_units + sum(sizes))
        say(f"latency: offered {', '.join(map(str, rates))} commands/s, {seconds:.0f}s each")
        url = await self.new_database("latency")
        prefix = await self.topics_for("latency")
        db = await asyncpg.connect(url)
        collector = Collector(self.kafka, prefix)
        proc = self.worker("worker", url, prefix)
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all", linger_ms=0)
        steps: list[LatencyStep] = []
        try:
            await self.set_up(db, plan)
            await collector.start()
            await producer.start()
            await proc.start()
            cursor = warm_units * len(h.MIX_TYPES)
            warm = plan.commands[:cursor]
            collector.expect([c.id for c in warm])
            await self.produce(prefix, warm)
            await self.wait_done("latency warm-up", collector, proc, db, len(warm))
            for rate, units in zip(rates, sizes, strict=True):
                cmds = plan.commands[cursor : cursor + units * len(h.MIX_TYPES)]
                cursor += len(cmds)
                steps.append(await self.offer(producer, prefix, collector, proc, db, rate, cmds))
                self.check_refusals(f"latency@{rate}", collector)
                s = steps[-1]
                say(
                    f"  latency@{rate}/s: p50 {s.p50_ms:.0f} ms, p99 {s.p99_ms:.0f} ms, "
                    f"{s.cpu_us:.0f} us CPU per command"
                )
            return steps
        finally:
            await proc.stop()
            await producer.stop()
            await collector.stop()
            await db.close()

    async def offer(
        self,
        producer: AIOKafkaProducer,
        prefix: str,
        collector: Collector,
        proc: Proc,
        db: asyncpg.Connection,
        rate: int,
        cmds: Sequence[h.Command],
    ) -> LatencyStep:
        collector.expect([c.id for c in cmds])
        sent_at: dict[str, float] = {}
        cpu0 = proc.cpu()
        start = time.monotonic()
        futures = []
        i = 0
        while i < len(cmds):
            now = time.monotonic()
            due = min(len(cmds), int((now - start) * rate) + 1)
            while i < due:
                c = cmds[i]
                sent_at[c.id] = time.monotonic()
                futures.append(await producer.send(prefix + c.topic, c.value, key=c.key))
                i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        offered_end = time.monotonic()
        await asyncio.gather(*futures)
        done = await self.wait_done(f"latency@{rate}", collector, proc, db, len(cmds))
        cpu1 = proc.cpu()
        lat = [(collector.arrived[c.id] - sent_at[c.id]) * 1000 for c in cmds]
        return LatencyStep(
            offered=rate,
            sent=len(cmds),
            achieved=len(cmds) / (offered_end - start),
            p50_ms=h.percentile(lat, 50),
            p99_ms=h.percentile(lat, 99),
            max_ms=max(lat),
            catch_up_s=done - offered_end,
            cpu_us=(cpu1 - cpu0) / len(cmds) * 1e6,
            cpu_share=(cpu1 - cpu0) / (done - start),
        )

    async def due(self, n: int) -> Run:
        """N BOOKED campaigns due at one instant, inserted in bulk; the worker starts after
        the instant; done when all are LIVE, their status events out and the outbox empty."""
        say(f"due: {n} BOOKED campaigns starting at the same instant")
        url = await self.new_database("due")
        prefix = await self.topics_for("due")
        db = await asyncpg.connect(url)
        collector = Collector(self.kafka, prefix)
        proc = self.worker("worker", url, prefix, scheduler=True)
        try:
            instant = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
            ids = [str(uuid.uuid4()) for _ in range(n)]
            t_insert = time.monotonic()
            await self.clone(
                db,
                self.tmpl_booked,
                ids,
                {
                    "start_at": f"'{instant.isoformat()}'::timestamptz",
                    "end_at": f"'{(instant + timedelta(days=30)).isoformat()}'::timestamptz",
                },
            )
            await db.execute("ANALYZE")
            say(f"  due: inserted {n} campaigns in {time.monotonic() - t_insert:.1f}s")
            await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds() + 0.5))
            await collector.start()
            mark: dict[str, float] = {}

            def first() -> None:
                mark["t0"], mark["cpu0"] = time.monotonic(), proc.cpu()

            collector.expect(ids, mode="live", on_first=first)
            await proc.start()
            t1 = await self.wait_done("due", collector, proc, db, n)
            cpu1, rss = proc.cpu(), proc.peak_rss_mib()
            live = await db.fetchval(
                "SELECT count(*) FROM campaigns WHERE status = 'LIVE' AND id = ANY($1::uuid[])",
                [uuid.UUID(i) for i in ids],
            )
            if live != n:
                raise BenchFailure(f"due: {live} of {n} campaigns LIVE after their events")
            run = Run(
                "due",
                n,
                t1 - mark["t0"],
                cpu1 - mark["cpu0"],
                rss,
                extra={
                    "from_worker_start_s": round(t1 - proc.started_at, 2),
                    "startup_to_first_outcome_s": round(mark["t0"] - proc.started_at, 2),
                    "load_average_1m": load_average(),
                },
                first_poll=collector.first_poll,
            )
            say(
                f"  due: all {n} LIVE {run.seconds:.1f}s after the first "
                f"({run.extra['from_worker_start_s']}s after the worker started), "
                f"{run.rate:.0f} transitions/s, {run.cpu_us:.0f} us CPU each"
            )
            return run
        finally:
            await proc.stop()
            await collector.stop()
            await db.close()

    # ------------------------------------------------------------------ profile

    async def profile(self, label: str, collector: Collector, proc: Proc) -> Path | None:
        """py-spy over the worker from its first outcome until done (raw collapsed stacks)."""
        spy = py_spy()
        if spy is None:
            say("  profile: py-spy is not installed (pip install -e '.[bench]'); skipped")
            return None
        await collector.first_seen.wait()
        out = self.profile_path(label)
        spy_proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "100", "--gil",
            "--full-filenames",
            "--output", str(out), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            await asyncio.Event().wait()  # until cancelled by stop_profile
        finally:
            spy_proc.send_signal(signal.SIGINT)
            _, err = await spy_proc.communicate()
            if not out.exists():
                say(f"  profile: py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        return out

    def profile_path(self, label: str) -> Path:
        out_dir = Path(self.args.profile)
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir / f"profile-{label}.txt"

    async def stop_profile(self, label: str, task: asyncio.Task[Path | None]) -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        say(summarise_profile(self.profile_path(label)))


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def report(
    runs: dict[str, Run], steps: list[LatencyStep], due: Run | None, n_due: int
) -> tuple[str, dict[str, Any]]:
    lines = []
    rows = []
    for r in runs.values():
        rows.append(
            [
                r.label,
                r.commands,
                r.timed,
                f"{r.seconds:.1f}",
                f"{r.rate:.0f}",
                f"{r.cpu_us:.0f}",
                f"{r.cpu_share:.0%}",
                f"{r.rss_mib:.0f}",
                sum(r.rejected.values()),
                r.extra.get("load_average_1m", "-"),
            ]
        )
    if due is not None:
        rows.append(
            [
                "due (scheduler)",
                due.commands,
                due.timed,
                f"{due.seconds:.1f}",
                f"{due.rate:.0f}",
                f"{due.cpu_us:.0f}",
                f"{due.cpu_share:.0%}",
                f"{due.rss_mib:.0f}",
                0,
                due.extra.get("load_average_1m", "-"),
            ]
        )
    if rows:
        lines.append(
            h.table(
                [
                    "scenario",
                    "commands",
                    "timed",
                    "seconds",
                    "per s",
                    "us CPU/cmd",
                    "worker CPU",
                    "peak RSS MiB",
                    "refused",
                    "load 1m",
                ],
                rows,
            )
        )
    if steps:
        lines.append("")
        lines.append(
            h.table(
                [
                    "offered/s",
                    "sent",
                    "achieved/s",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "catch-up s",
                    "us CPU/cmd",
                    "worker CPU",
                ],
                [
                    [
                        s.offered,
                        s.sent,
                        f"{s.achieved:.0f}",
                        f"{s.p50_ms:.0f}",
                        f"{s.p99_ms:.0f}",
                        f"{s.max_ms:.0f}",
                        f"{s.catch_up_s:.1f}",
                        f"{s.cpu_us:.0f}",
                        f"{s.cpu_share:.0%}",
                    ]
                    for s in steps
                ],
            )
        )
    fig: dict[str, float | None] = {}
    if "mix" in runs:
        fig["mix_per_s"] = runs["mix"].rate
        fig["mix_cpu_us_per_cmd"] = runs["mix"].cpu_us
    if "create" in runs:
        fig["create_per_s"] = runs["create"].rate
        fig["create_cpu_us_per_cmd"] = runs["create"].cpu_us
    if "naive" in runs:
        fig["naive_per_s"] = runs["naive"].rate
        fig["naive_cpu_us_per_cmd"] = runs["naive"].cpu_us
    if "mix" in runs and "naive" in runs:
        fig["ratio"] = runs["mix"].rate / runs["naive"].rate
    if "mix" in runs and h.MIX_WORKERS in runs:
        fig.update(
            h.workers_figures(
                (runs["mix"].rate, runs["mix"].cpu_us),
                (runs[h.MIX_WORKERS].rate, runs[h.MIX_WORKERS].cpu_us),
                runs[h.MIX_WORKERS].extra.get("processed_share_per_worker", []),
            )
        )
    if "mix" in runs and h.MIX_NO_STATE in runs:
        fig.update(
            h.state_figures(
                (runs["mix"].rate, runs["mix"].cpu_us),
                (runs[h.MIX_NO_STATE].rate, runs[h.MIX_NO_STATE].cpu_us),
            )
        )
    for s in steps:
        fig[f"p50_at_{s.offered}_ms"] = s.p50_ms
        fig[f"p99_at_{s.offered}_ms"] = s.p99_ms
    if due is not None:
        fig["due_s"] = due.seconds
        fig["due_from_worker_start_s"] = due.extra["from_worker_start_s"]
        fig["due_per_s"] = due.rate
    worker_rss = [r.rss_mib for k, r in runs.items() if k != "naive"]
    if due is not None:
        worker_rss.append(due.rss_mib)
    if worker_rss:
        fig["rss_mb"] = max(worker_rss)
    lines.append("")
    for key, value in fig.items():
        lines.append(f"{key}: {value:.1f}" if value is not None else f"{key}: -")
    label = "due100k" if n_due == 100_000 else f"due{n_due}"
    last = h.summary_line(fig)
    if label != "due100k":
        last = last.replace("due100k", label)  # a smaller burst says so
    lines.append(last)
    document = {
        "figures": {k: round(v, 2) if v is not None else None for k, v in fig.items()},
        "runs": {k: r.as_json() for k, r in runs.items()},
        "latency": [s.as_json() for s in steps],
        "due": due.as_json() if due else None,
    }
    return "\n".join(lines), document


def load_average() -> float | None:
    """The machine's 1-minute load average: the bench shares the cores with whatever else
    runs, and this says how much did."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, KeyError, ValueError):
        mem = h.parse_proc_status_kib(Path("/proc/meminfo").read_text(), "MemTotal")
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem / 1024 / 1024, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1m": load_average(),
    }


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if os.path.exists(found) else None


def summarise_profile(path: Path) -> str:
    from bench.profile_top import summarise

    if not path.exists():
        return f"profile: {path} was not written"
    return summarise(path.read_text())


def write_json(path: str, document: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2) + "\n")


async def main(args: argparse.Namespace) -> int:
    only = set(args.only or SCENARIOS)
    started = time.monotonic()
    runs: dict[str, Run] = {}
    steps: list[LatencyStep] = []
    due_run: Run | None = None
    failure: str | None = None
    with kafka_server() as kafka, postgres_server() as postgres_url:
        bench = Bench(kafka, postgres_url, args)
        try:
            say("setting up: a template database with campaigns the worker itself wrote")
            await bench.build_template()
            if "create" in only:
                runs["create"] = await bench.throughput(
                    "create", "worker", h.creates_plan(args.messages)
                )
            if "mix" in only:
                runs["mix"] = await bench.throughput(
                    "mix", "worker", h.mix_plan(h.units_for(args.messages))
                )
                if args.workers > 1:  # the same mix, N processes in one group
                    runs[h.MIX_WORKERS] = await bench.throughput(
                        h.MIX_WORKERS,
                        "worker",
                        h.mix_plan(h.units_for(args.messages)),
                        workers=args.workers,
                    )
                if args.state_compare:  # the same mix, the worker without campaign.state
                    runs[h.MIX_NO_STATE] = await bench.throughput(
                        h.MIX_NO_STATE,
                        "worker",
                        h.mix_plan(h.units_for(args.messages)),
                        extra_env={h.PUBLISH_STATE_ENV: "false"},
                    )
            if "naive" in only:
                runs["naive"] = await bench.throughput(
                    "naive", "naive", h.mix_plan(h.units_for(args.naive_messages))
                )
            if "latency" in only:
                steps = await bench.latency(args.rates, args.latency_seconds)
            if "due" in only:
                due_run = await bench.due(args.due)
        except BenchFailure as error:
            failure = str(error)
        finally:
            await bench.drop_databases()
            if failure is None:
                shutil.rmtree(bench.logdir, ignore_errors=True)
            else:
                say(f"worker logs kept in {bench.logdir}")
    text, document = report(runs, steps, due_run, args.due)
    document["machine"] = machine()
    document["args"] = {k: v for k, v in vars(args).items() if k != "json"}
    document["problems"] = bench.problems + ([failure] if failure else [])
    document["wall_s"] = round(time.monotonic() - started, 1)
    m = document["machine"]
    print(
        f"machine: {m['nproc']} cores, {m['cpu']}, {m['memory_gib']} GiB; {m['date']}; "
        f"load average {m['load_average_1m']} at the end"
    )
    print(text)
    if args.json:
        write_json(args.json, document)
    if failure:
        print(f"bench: FAILED: {failure}", file=sys.stderr)
        return 1
    if bench.problems:
        print(f"bench: FAILED: {'; '.join(bench.problems)}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, help="commands of create and of mix (20000)")
    parser.add_argument("--naive-messages", type=int, help="commands of naive (3000)")
    parser.add_argument("--due", type=int, help="campaigns of the scheduler burst (100000)")
    parser.add_argument(
        "--rates",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 200, 400, 1000],
        help="offered loads of the latency series, commands/s (100,200,400,1000)",
    )
    parser.add_argument("--latency-seconds", type=float, help="duration of each load (10)")
    parser.add_argument("--quick", action="store_true", help="small sizes: about 2-3 minutes")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run this scenario (repeatable)"
    )
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(
        "--worker-env",
        action="append",
        type=lambda s: tuple(s.split("=", 1)),
        metavar="NAME=VALUE",
        help="an environment variable for every worker this run starts (repeatable), "
        "e.g. to compare a setting",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run the mix on this many worker processes in one group (CPU summed; "
        "speedup against one, and each one's share of the commands)",
    )
    parser.add_argument(
        "--state-compare",
        action="store_true",
        help="run the mix a second time with CAMPAIGN_WORKER_PUBLISH_STATE=false and print "
        "what the campaign.state record costs (state_record_cpu_us_per_cmd)",
    )
    parser.add_argument("--partitions", type=int, default=6, help="partitions per topic (6)")
    parser.add_argument(
        "--stall-timeout", type=float, default=120, help="fail after this long without progress"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record the worker during mix (and naive) into DIR/profile-LABEL.txt",
    )
    args = parser.parse_args(argv)
    args.worker_env = dict(args.worker_env or ())
    quick = args.quick
    defaults = {
        "messages": 3000 if quick else 20000,
        "naive_messages": 600 if quick else 3000,
        "due": 5000 if quick else 100_000,
        "latency_seconds": 3.0 if quick else 10.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    # Right after topics are created the broker answers NotLeader for a while although the
    # metadata names a leader; the clients retry. A real Kafka failure shows as a stall.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sys.exit(asyncio.run(main(parse_args())))
