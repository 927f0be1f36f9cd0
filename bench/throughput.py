"""Throughput of the message path, as a ratio against a baseline measured in the same run.

The worker consumes N `campaign.create` commands (one per campaign) twice, on the same real
Kafka and Postgres (started like the test suite starts them): once with the production
batching (`CAMPAIGN_WORKER_BATCH_MAX_RECORDS`, default 500) and once as the baseline, one
record and one transaction per message (batch size 1). Machines are noisy, so what counts is
the ratio, not the absolute numbers; nothing here is a test assertion.

    make bench                      # N=5000
    .venv/bin/python bench/throughput.py --messages 20000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import Harness
from tests.support.contract import Driver, create_data, product_event
from tests.support.servers import kafka_server, postgres_server

from campaign_worker.adapters.db.migrate import upgrade
from campaign_worker.config import Settings


async def run_once(kafka: str, database_url: str, messages: int, batch: int) -> float:
    """Commands per second for one worker with the given batch size (fresh topics)."""
    harness = Harness(kafka, database_url, f"bench{uuid.uuid4().hex[:8]}.")
    await harness.up.start()
    try:
        await harness.start_worker(
            batch_max_records=batch, scheduler_enabled=False, notifier_enabled=False
        )
        await harness.up.send("campaign.catalog", product_event())
        await asyncio.sleep(2)
        drv = Driver(harness)
        ids = [str(uuid.uuid4()) for _ in range(messages)]
        data = create_data()
        futures = []
        for cid in ids:
            topic, event = drv.build("campaign.create", cid, data)
            futures.append(await harness.up.send_nowait(topic, event))
        await asyncio.gather(*futures)  # all in Kafka before the clock starts
        start = time.monotonic()
        wanted = set(ids)
        last = -1
        while True:
            rows = await harness.fetch(
                "SELECT count(*) AS n FROM campaigns WHERE id = ANY($1::uuid[])", list(wanted)
            )
            done = rows[0]["n"]
            if done != last:
                print(f"  batch={batch}: {done}/{messages}", file=sys.stderr)
                last = done
            if done >= messages:
                return messages / (time.monotonic() - start)
            await asyncio.sleep(0.2)
    finally:
        await harness.close()


async def main(messages: int, batch: int) -> None:
    with kafka_server() as kafka, postgres_server() as database_url:
        await upgrade(Settings(database_url=database_url).sqlalchemy_url)
        # the baseline first on a smaller sample: it is slow by design
        baseline_n = max(200, messages // 10)
        baseline = await run_once(kafka, database_url, baseline_n, 1)
        batched = await run_once(kafka, database_url, messages, batch)
    print(f"baseline (1 message per transaction): {baseline:8.0f} commands/s ({baseline_n})")
    print(f"batched  ({batch} per transaction):   {batched:8.0f} commands/s ({messages})")
    print(f"ratio batched/baseline: {batched / baseline:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.messages, args.batch))
