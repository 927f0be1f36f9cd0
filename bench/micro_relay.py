"""What the outbox relay costs per record (not a test).

Fills the outbox with `--records` rows (keys spread over `--campaigns` campaign ids, values
of about 800 bytes, like the worker's events), then lets one `OutboxRelay` publish them with
`publish_once` until the outbox is empty, on a real Kafka and Postgres (started like the test
suite starts them, or `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL`). Prints the wall time and
the CPU time of this process per record (the relay's own cost: reading rows, the Kafka
client, the delete; the servers' work is not in it).

    .venv/bin/python bench/micro_relay.py [--records 20000] [--campaigns 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.servers import kafka_server, postgres_server

from campaign_worker import topics
from campaign_worker.adapters.db.migrate import upgrade
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.adapters.kafka_client import ensure_topics
from campaign_worker.adapters.metrics import Metrics
from campaign_worker.adapters.outbox import OutboxRelay
from campaign_worker.config import Settings
from campaign_worker.service.envelope import OutboxMessage


def message(campaign: uuid.UUID, n: int) -> OutboxMessage:
    value = (
        b'{"specversion":"1.0","id":"%s","source":"/campaign-worker",'
        b'"type":"campaign.status_changed","time":"2026-12-01T00:00:00Z",'
        b'"datacontenttype":"application/json","data":{"campaign_id":"%s","n":%d,'
        b'"padding":"%s"}}' % (str(uuid.uuid4()).encode(), str(campaign).encode(), n, b"x" * 600)
    )
    return OutboxMessage(topic=topics.EVENTS, key=str(campaign).encode(), value=value)


async def fill(engine: object, records: int, campaigns: int) -> None:
    ids = [uuid.uuid4() for _ in range(campaigns)]
    batch = 1000
    for start in range(0, records, batch):
        async with SqlUnitOfWork(engine) as uow:  # type: ignore[arg-type]
            await uow.add_outbox(
                [message(ids[n % campaigns], n) for n in range(start, min(records, start + batch))]
            )
            await uow.commit()


async def main(records: int, campaigns: int, batch_size: int, max_batch_bytes: int) -> None:
    with kafka_server() as kafka, postgres_server() as url:
        name = f"bench_relay_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        settings = Settings(
            database_url=url.rpartition("/")[0] + "/" + name,
            kafka_bootstrap_servers=kafka,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        )
        await upgrade(settings.sqlalchemy_url)
        await ensure_topics(settings, [settings.topic(t) for t in topics.OUTBOUND])
        engine = create_async_engine(settings.sqlalchemy_url, pool_size=2)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=max_batch_bytes,
        )
        await producer.start()
        try:
            relay = OutboxRelay(
                engine,
                producer,
                physical_topic=settings.topic,
                metrics=Metrics(),
                batch_size=batch_size,
            )
            await fill(engine, 2000, campaigns)  # warm-up: connections, metadata, caches
            while await relay.publish_once():
                pass
            await fill(engine, records, campaigns)
            wall, cpu = time.perf_counter(), time.process_time()
            published = 0
            while n := await relay.publish_once():
                published += n
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await producer.stop()
            await engine.dispose()
            admin = await asyncpg.connect(url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(
        f"relay: {published} records in {wall:.2f} s ({published / wall:,.0f}/s), "
        f"cpu {cpu * 1e6 / published:.1f} us/record, wall {wall * 1e6 / published:.1f} us/record"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--campaigns", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1000, help="outbox rows per round")
    parser.add_argument(
        "--max-batch-bytes", type=int, default=16384, help="the producer's max_batch_size"
    )
    args = parser.parse_args()
    asyncio.run(main(args.records, args.campaigns, args.batch_size, args.max_batch_bytes))
