"""Operator-side helpers for e2e tests: run `campaign-worker` commands as a subprocess with the
harness's environment, read /metrics, hold a consumer in the worker's group."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from tests.support.util import eventually, http_get

CLI = [sys.executable, "-m", "campaign_worker.entrypoints.cli"]
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def metric_names(expr: str) -> set[str]:
    """The worker's metric names a PromQL expression uses (label matchers ignored)."""
    without_matchers = re.sub(r"\{[^}]*\}", "", expr)
    return set(re.findall(r"\bcampaign_worker_[a-z0-9_]+\b", without_matchers))


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def cli_env(h: Any, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=h.database_url,
        KAFKA_BOOTSTRAP_SERVERS=h.kafka,
        CAMPAIGN_WORKER_TOPIC_PREFIX=h.prefix,
        CAMPAIGN_WORKER_GROUP_ID=f"cw-{h.prefix}",
        **extra,
    )


async def run_cli(h: Any, *args: str, timeout: float = 60, **env: str) -> CliResult:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=cli_env(h, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


def metric_samples(text: str, name: str) -> list[Any]:
    """Samples of one metric family (name without _total) from Prometheus text."""
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return list(family.samples)
    return []


async def scrape(port: int) -> str:
    status, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200, body
    return body


async def member_of_group(h: Any, topic: str) -> AIOKafkaConsumer:
    """A consumer that joins the worker's group on one topic and waits for its assignment;
    it commits nothing by itself."""
    consumer = AIOKafkaConsumer(
        f"{h.prefix}{topic}",
        bootstrap_servers=h.kafka,
        group_id=f"cw-{h.prefix}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()

    async def assigned() -> bool:
        await consumer.getmany(timeout_ms=100)
        return bool(consumer.assignment())

    try:
        await eventually(assigned, timeout=30)
    except BaseException:
        await consumer.stop()
        raise
    return consumer
