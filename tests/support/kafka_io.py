"""Test-side Kafka clients: send CloudEvents the way an upstream platform would, and read what
the worker publishes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord


def cloudevent(
    type_: str,
    subject: str | None,
    data: dict[str, Any] | None = None,
    *,
    actorrole: str = "advertiser",
    actorid: str | None = "adv-1",
    id_: str | None = None,
    correlationid: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": id_ or str(uuid.uuid4()),
        "source": "/tests",
        "type": type_,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "actorrole": actorrole,
        "data": data if data is not None else {},
    }
    if subject is not None:
        event["subject"] = subject
    if actorid is not None:
        event["actorid"] = actorid
    if correlationid is not None:
        event["correlationid"] = correlationid
    return event


class Upstream:
    """A producer speaking the contract, with the topic prefix of the worker under test."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.prefix = prefix
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, topic: str, event: dict[str, Any], key: str | None = None) -> Any:
        raw = json.dumps(event).encode()
        return await self.send_raw(topic, raw, key=key if key is not None else event.get("subject"))

    async def send_nowait(self, topic: str, event: dict[str, Any]) -> Any:
        """Queue a send and return its delivery future: successive calls keep their order."""
        key = event.get("subject")
        return await self.producer.send(
            f"{self.prefix}{topic}",
            json.dumps(event).encode(),
            key=key.encode() if isinstance(key, str) else None,
            headers=[("content-type", b"application/cloudevents+json")],
        )

    async def send_raw(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        k = key.encode() if isinstance(key, str) else key
        return await self.producer.send_and_wait(
            f"{self.prefix}{topic}",
            value,
            key=k,
            headers=headers or [("content-type", b"application/cloudevents+json")],
        )


@dataclass
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: list[tuple[str, bytes]]
    event: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.event.get("type"))

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.event.get("data") or {})


@dataclass
class Downstream:
    """Reads every outbound topic from the beginning into memory, in the background."""

    bootstrap: str
    prefix: str
    topics: tuple[str, ...] = (
        "campaign.events",
        "campaign.notifications",
        "campaign.settlements",
        "campaign.dlq",
    )
    received: list[Received] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            *[f"{self.prefix}{t}" for t in self.topics],
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            metadata_max_age_ms=1000,
        )
        await self.consumer.start()
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    async def _pump(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            records: list[ConsumerRecord[Any, Any]] = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            async with self._changed:
                for r in records:
                    self.received.append(
                        Received(
                            topic=r.topic[len(self.prefix) :],
                            partition=r.partition,
                            offset=r.offset,
                            key=r.key,
                            headers=list(r.headers),
                            event=json.loads(r.value),
                        )
                    )
                self._changed.notify_all()

    def matching(self, predicate: Callable[[Received], bool]) -> list[Received]:
        return [r for r in self.received if predicate(r)]

    async def wait_for(
        self, predicate: Callable[[Received], bool], count: int = 1, timeout: float = 30
    ) -> list[Received]:
        async def enough() -> list[Received]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.matching(predicate)) >= count)
                return self.matching(predicate)

        try:
            return await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            got = self.matching(predicate)
            raise AssertionError(
                f"waited {timeout}s for {count} matching messages, got {len(got)}; "
                f"all received types: {[r.type for r in self.received][-30:]}"
            ) from None

    def of_type(self, type_: str, subject: str | None = None) -> list[Received]:
        return self.matching(
            lambda r: r.type == type_ and (subject is None or r.event.get("subject") == subject)
        )
