"""FastStream subscriber: take a batch of records, translate them, hand them to the service,
then commit the offsets. Nothing else happens here (no SQL, no publishing).

Ack policy is MANUAL and deliberate: the offsets are committed only after the database
transaction holding the inbox rows has committed. If the batch cannot be committed before
shutdown, every partition in it is rewound (nack) so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from aiokafka import ConsumerRecord
from faststream import Context
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy

from campaign_worker import topics
from campaign_worker.config import Settings
from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.inbound import Source
from campaign_worker.service.processor import Processor, Stopping

log = logging.getLogger(__name__)


def _lenient_headers(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    """FastStream decodes header values as UTF-8 and would crash on others before our code
    runs; such a record must reach the dead-letter path instead."""
    try:
        for _, value in record.headers:
            value.decode()
        return record
    except UnicodeDecodeError:
        return dataclasses.replace(
            record,
            headers=tuple((k, v.decode("utf-8", "replace").encode()) for k, v in record.headers),
        )


async def _parser(records: tuple[ConsumerRecord[Any, Any], ...], original: Any) -> Any:
    message = await original(tuple(_lenient_headers(r) for r in records))
    message.raw_message = records  # keep the original bytes for the dead-letter topic
    return message


async def _decoder(message: Any, original: Any) -> Any:
    return message.body  # raw bytes: translation is ours, not FastStream's


def register_subscriber(
    broker: KafkaBroker, settings: Settings, processor: Processor, stopping: asyncio.Event
) -> None:
    prefix = settings.topic_prefix

    def contract_topic(physical: str) -> str:
        return physical[len(prefix) :] if prefix and physical.startswith(prefix) else physical

    def source_of(r: ConsumerRecord[Any, Any]) -> Source:
        return Source(
            topic=contract_topic(r.topic),
            partition=r.partition,
            offset=r.offset,
            key=r.key,
            value=r.value or b"",
            headers=tuple((k, bytes(v)) for k, v in r.headers),
        )

    @broker.subscriber(
        *[settings.topic(t) for t in topics.INBOUND],
        batch=True,
        group_id=settings.group_id,
        auto_offset_reset="earliest",  # a new group must not skip commands sent before it
        ack_policy=AckPolicy.MANUAL,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        parser=_parser,
        decoder=_decoder,
        title="campaign-worker-inbound",
        description="Every inbound topic of the contract, consumed in batches.",
    )
    async def consume(body: list[bytes], msg: KafkaMessage = Context("message")) -> None:  # noqa: B008
        records: tuple[ConsumerRecord[Any, Any], ...] = msg.raw_message
        items = [translate(source_of(r), max_bytes=settings.max_message_bytes) for r in records]
        try:
            await processor.process_reliably(items, stopping)
        except Stopping:
            await msg.nack()
            log.info("shutdown during retries: %d records left for redelivery", len(records))
            return
        except BaseException:
            await msg.nack()
            raise
        await msg.ack()
