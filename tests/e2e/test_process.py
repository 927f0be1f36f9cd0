"""The worker as operators and other teams' rigs start it: `campaign-worker run` with the
contract's environment, and `campaign-worker dev` (README command 1) on embedded services."""

from __future__ import annotations

import asyncio
import email
import email.policy
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from campaign_worker.dev.services import free_port
from tests.conftest import Harness
from tests.support.contract import create_event, product_event
from tests.support.kafka_io import cloudevent
from tests.support.util import eventually, http_get

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "campaign_worker.entrypoints.cli"]


async def _wait_ready(port: int, proc: asyncio.subprocess.Process, timeout: float = 60) -> None:
    async def ready() -> bool:
        if proc.returncode is not None:
            raise AssertionError(f"worker exited early with {proc.returncode}")
        try:
            status, _ = await asyncio.to_thread(http_get, port, "/readyz")
        except OSError:
            return False
        return status == 200

    await eventually(ready, timeout=timeout, interval=0.2)


async def test_run_consumes_and_stops_gracefully_on_sigterm(harness: Harness) -> None:
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=harness.database_url,
        KAFKA_BOOTSTRAP_SERVERS=harness.kafka,
        CAMPAIGN_WORKER_TOPIC_PREFIX=harness.prefix,
        CAMPAIGN_WORKER_GROUP_ID=f"cw-{harness.prefix}",
        CAMPAIGN_WORKER_HTTP_PORT=str(port),
        CAMPAIGN_WORKER_TOPIC_PARTITIONS="3",
    )
    proc = await asyncio.create_subprocess_exec(
        *CLI, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await _wait_ready(port, proc)
        await harness.down.start()
        harness._down_started = True
        await harness.up.send("campaign.catalog", product_event())
        await asyncio.sleep(0.5)
        cid = str(uuid.uuid4())
        await harness.up.send("campaign.commands", create_event(cid))
        await harness.down.wait_for(
            lambda r: r.type == "campaign.status_changed" and r.event["subject"] == cid
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0
        assert time.monotonic() - started < 30
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert "stop signal received" in output and "campaign-worker stopped" in output, output[-2000:]


async def test_dev_mode_runs_on_embedded_services() -> None:
    """README command 1: no services installed. A record produced by another client is
    consumed (inbox row, committed offset); a non-JSON record is dead-lettered and the valid
    record after it is still processed."""
    # not pytest's tmp_path: as root, Postgres runs as `nobody`, who cannot enter it
    data_dir = Path(tempfile.mkdtemp(prefix="cw-dev-"))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_HOST")
    }
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "dev",
        "--data-dir",
        str(data_dir),
        "--http-port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    try:

        async def read_banner() -> None:
            while True:
                line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
                if not line:
                    raise AssertionError("dev mode exited:\n" + "".join(banner[-40:]))
                banner.append(line)
                if "Stop with Ctrl-C" in line:
                    return

        await asyncio.wait_for(read_banner(), 120)
        text = "".join(banner)
        bootstrap = re.search(r"kafka\s+: (\S+) \(Tansu", text)
        db = re.search(r"postgres : (\S+) \(embedded", text)
        assert bootstrap and db, text
        assert "emails saved in" in text
        drain = asyncio.create_task(proc.stdout.read())  # keep the pipe from filling

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap.group(1))
        await producer.start()
        cid = str(uuid.uuid4())
        try:
            await producer.send_and_wait(
                "campaign.catalog", json.dumps(product_event()).encode(), key=b"prod-banner"
            )
            await asyncio.sleep(1)
            bad = await producer.send_and_wait("campaign.commands", b"not json", key=cid.encode())
            good_event = create_event(cid)
            good = await producer.send_and_wait(
                "campaign.commands", json.dumps(good_event).encode(), key=cid.encode()
            )
        finally:
            await producer.stop()

        async def inbox_row() -> Any:
            conn = await asyncpg.connect(db.group(1))
            try:
                return await conn.fetchrow(
                    'SELECT "offset" FROM inbox WHERE message_id=$1', good_event["id"]
                )
            finally:
                await conn.close()

        row = await eventually(inbox_row, timeout=30)
        assert row["offset"] == good.offset

        consumer = AIOKafkaConsumer(
            "campaign.dlq",
            "campaign.events",
            bootstrap_servers=bootstrap.group(1),
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        seen: list[dict[str, Any]] = []
        try:

            async def both() -> bool:
                batch = await consumer.getmany(timeout_ms=500)
                seen.extend(json.loads(r.value) for rs in batch.values() for r in rs)
                types = {e["type"] for e in seen}
                return {"dlq.dead_lettered", "campaign.status_changed"} <= types

            await eventually(both, timeout=30)
        finally:
            await consumer.stop()
        dead = next(e for e in seen if e["type"] == "dlq.dead_lettered")
        assert dead["data"]["source"]["offset"] == bad.offset
        assert dead["data"]["error"]["code"] == "not_json"

        async def committed() -> bool:
            c = AIOKafkaConsumer(
                bootstrap_servers=bootstrap.group(1),
                group_id="campaign-worker",
                enable_auto_commit=False,
            )
            await c.start()
            try:
                return (
                    await c.committed(TopicPartition("campaign.commands", good.partition))
                    == good.offset + 1
                )
            finally:
                await c.stop()

        await eventually(committed, timeout=30)

        # the emails the worker sends land, one .eml each, where the banner says
        maildir = re.search(r"emails saved in (\S+)\)", text)
        assert maildir, text
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap.group(1))
        await producer.start()
        try:
            for type_, topic, role, status in (
                ("campaign.submit", "campaign.commands", "advertiser", "SUBMITTED"),
                ("review.campaign_approved", "campaign.reviews", "publisher", "BOOKED"),
            ):
                command = cloudevent(type_, cid, {}, actorrole=role)
                await producer.send_and_wait(topic, json.dumps(command).encode(), key=cid.encode())

                async def reached(status: str = status) -> bool:
                    conn = await asyncpg.connect(db.group(1))
                    try:
                        got = await conn.fetchval(
                            "SELECT status FROM campaigns WHERE id=$1", uuid.UUID(cid)
                        )
                    finally:
                        await conn.close()
                    return bool(got == status)

                await eventually(reached, timeout=30)
        finally:
            await producer.stop()

        def emls() -> list[bytes]:
            return [p.read_bytes() for p in sorted(Path(maildir.group(1)).glob("*.eml"))]

        async def mailed() -> list[bytes]:
            return await asyncio.to_thread(emls)

        [raw] = await eventually(mailed, timeout=30)
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        assert mail["Subject"] == 'Your campaign "Winter sale" was approved'
        assert mail["To"] == "ada@example.com"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
