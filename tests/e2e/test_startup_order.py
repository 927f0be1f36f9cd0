"""Start in any order (issue 15, item 1): a worker started before Kafka or Postgres waits for
them, retrying with backoff and one log line per attempt, answers /healthz 200 and /readyz
503 naming the missing dependency meanwhile, consumes once both answer, and still stops on
SIGTERM while it waits."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from campaign_worker.dev import services as devservices
from tests.support.contract import create_event, product_event
from tests.support.kafka_io import Upstream
from tests.support.servers import local_kafka
from tests.support.util import eventually, http_get

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "campaign_worker.entrypoints.cli"]


class Spawned:
    """`campaign-worker run` with a given environment; its whole output is kept."""

    def __init__(self, database_url: str, kafka: str, prefix: str, **env: str) -> None:
        self.port = devservices.free_port()
        self.prefix = prefix
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "CAMPAIGN_WORKER_TOPIC_PREFIX": prefix,
            "CAMPAIGN_WORKER_GROUP_ID": f"cw-{prefix}",
            "CAMPAIGN_WORKER_HTTP_PORT": str(self.port),
            "CAMPAIGN_WORKER_HTTP_HOST": "127.0.0.1",
            "CAMPAIGN_WORKER_TOPIC_PARTITIONS": "3",
            "CAMPAIGN_WORKER_RELAY_POLL_INTERVAL_S": "0.05",
            "CAMPAIGN_WORKER_STARTUP_BACKOFF_MAX_S": "2",
            "CAMPAIGN_WORKER_LAG_INTERVAL_S": "1",
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.output = bytearray()
        self._drain: asyncio.Task[None] | None = None

    async def start(self, *args: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *CLI,
            "run",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._drain = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.output.extend(chunk)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def alive(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.text[-4000:]}")

    async def get(self, path: str) -> tuple[int, str] | None:
        try:
            return await asyncio.to_thread(http_get, self.port, path)
        except OSError:
            return None

    async def readyz(self) -> tuple[int, dict[str, Any]] | None:
        got = await self.get("/readyz")
        return None if got is None else (got[0], json.loads(got[1]))

    async def wait_ready(self, timeout: float = 90) -> None:
        async def ready() -> bool:
            self.alive()
            got = await self.readyz()
            return got is not None and got[0] == 200

        try:
            await eventually(ready, timeout=timeout, interval=0.3)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.text[-4000:]}") from None

    async def wait_log(self, pattern: str, timeout: float = 30, count: int = 1) -> list[str]:
        async def seen() -> list[str]:
            self.alive()
            found = re.findall(pattern, self.text)
            return found if len(found) >= count else []

        try:
            found: list[str] = await eventually(seen, timeout=timeout, interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}: no {pattern!r} in\n{self.text[-4000:]}") from None
        return found

    async def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                raise AssertionError(
                    f"no exit {timeout}s after SIGTERM:\n{self.text[-4000:]}"
                ) from None
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)
        assert self.proc.returncode is not None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


async def _processes_a_command(kafka: str, database_url: str, prefix: str) -> None:
    """A product then a create sent through `kafka`: the campaign lands in Postgres."""
    up = Upstream(kafka, prefix)
    await up.start()
    try:
        await up.send("campaign.catalog", product_event())

        async def product_stored() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return bool(await conn.fetchval("SELECT count(*) FROM ad_products"))
            finally:
                await conn.close()

        await eventually(product_stored, timeout=60, interval=0.3)
        cid = str(uuid.uuid4())
        await up.send("campaign.commands", create_event(cid))
    finally:
        await up.stop()

    async def stored() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM campaigns WHERE id=$1", uuid.UUID(cid)))
        finally:
            await conn.close()

    await eventually(stored, timeout=60, interval=0.3)


async def test_worker_started_before_kafka_waits_then_consumes(
    database_url: str, topic_prefix: str
) -> None:
    with local_kafka() as kafka:
        worker = Spawned(database_url, kafka.bootstrap, topic_prefix)
        await worker.start("--no-migrate")
        try:
            # alive and saying what it waits for, and where
            await eventually(lambda: worker.get("/healthz"), timeout=30)
            status, _ = await worker.get("/healthz") or (0, "")
            assert status == 200
            lines = await worker.wait_log(
                rf"waiting for Kafka at {re.escape(kafka.bootstrap)} \(attempt (\d+)\)", count=2
            )
            assert lines[:2] == ["1", "2"]
            got = await worker.readyz()
            assert got is not None and got[0] == 503, got
            assert got[1]["checks"]["database"] == "ok"
            assert (
                "Kafka" in got[1]["checks"]["kafka"]
                and kafka.bootstrap in got[1]["checks"]["kafka"]
            )
            assert got[1]["checks"]["consumers"] == "starting"

            await asyncio.sleep(10)  # Kafka comes 10 s after the worker
            worker.alive()
            await asyncio.to_thread(kafka.start)
            await worker.wait_ready(timeout=120)
            await worker.wait_log(r"Kafka at \S+ answers \(after \d+ attempts\)")
            await _processes_a_command(kafka.bootstrap, database_url, topic_prefix)
            assert await worker.stop() == 0
        finally:
            worker.kill()
    # one line per attempt, never a traceback while waiting
    waiting = worker.text.partition("answers (after")[0]
    assert "Traceback" not in waiting, waiting[-4000:]


async def test_worker_started_before_postgres_waits_then_consumes(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    # not pytest's tmp_path: as root, Postgres runs as `nobody`, who cannot enter it
    data_dir = Path(tempfile.mkdtemp(prefix="cw-late-pg-"))
    port = devservices.free_port()
    try:
        # initialise once to learn the generated password, then stop: the URL is now known
        handle = await asyncio.to_thread(devservices.start_embedded_postgres, data_dir, port)
        url = handle.url
        await asyncio.to_thread(handle.stop)
        worker = Spawned(url, kafka_bootstrap, topic_prefix)
        await worker.start()  # with the migration: it has to wait for Postgres too
        try:
            address = f"127.0.0.1:{port}/{devservices.DATABASE_NAME}"
            lines = await worker.wait_log(
                rf"waiting for Postgres at {re.escape(address)} \(attempt (\d+)\)", count=2
            )
            assert lines[:2] == ["1", "2"]
            status, _ = await worker.get("/healthz") or (0, "")
            assert status == 200
            got = await worker.readyz()
            assert got is not None and got[0] == 503
            assert "Postgres" in got[1]["checks"]["database"]
            assert handle.url.split("@")[0].split(":")[-1] not in worker.text  # no password

            await asyncio.sleep(10)
            worker.alive()
            handle = await asyncio.to_thread(devservices.start_embedded_postgres, data_dir, port)
            await worker.wait_ready(timeout=120)
            await _processes_a_command(kafka_bootstrap, url, topic_prefix)
            assert await worker.stop() == 0
        finally:
            worker.kill()
            await asyncio.to_thread(handle.stop)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    waiting = worker.text.partition("answers (after")[0]
    assert "Traceback" not in waiting, waiting[-4000:]


async def test_sigterm_ends_the_wait(database_url: str, topic_prefix: str) -> None:
    nobody = f"127.0.0.1:{devservices.free_port()}"  # nothing listens there
    worker = Spawned(database_url, nobody, topic_prefix)
    await worker.start("--no-migrate")
    try:
        await worker.wait_log(r"waiting for Kafka at \S+ \(attempt 2\)")
        started = time.monotonic()
        assert await worker.stop(timeout=15) == 0
        assert time.monotonic() - started < 15
    finally:
        worker.kill()
    assert "campaign-worker stopped" in worker.text
