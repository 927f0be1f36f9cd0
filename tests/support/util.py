"""Waiting, polling and peeking helpers shared by the e2e tests."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.support.contract import PRODUCT, product_event


async def seed_product(h: Any, product_id: str = PRODUCT, **overrides: Any) -> None:
    """Publish a catalog entry and wait until the worker has stored it."""
    await h.up.send("campaign.catalog", product_event(product_id, **overrides))

    async def stored() -> bool:
        return bool(await h.fetch("SELECT 1 FROM ad_products WHERE id=$1", product_id))

    await eventually(stored)


async def committed_offsets(h: Any, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=h.kafka, group_id=f"cw-{h.prefix}", enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(f"{h.prefix}{topic}") or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(f"{h.prefix}{topic}") or set()
        return {p: await consumer.committed(TopicPartition(f"{h.prefix}{topic}", p)) for p in parts}
    finally:
        await consumer.stop()


async def eventually(check: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
