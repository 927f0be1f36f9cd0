"""An ad server's serving set, built from the compacted `campaign.state` topic.

Reads the topic from the beginning on every start (no consumer group: the topic itself is
the state), keeps the latest state of every campaign, and knows at any moment which
campaigns may be delivered and with which creatives on which ad unit. Records whose version
is not higher than the one held are dropped (a relay may publish a record again after a
crash; `state republish` re-sends current versions).

    pip install aiokafka
    python serving_set.py localhost:9092 [topic prefix]
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServingSet:
    """campaign id -> its latest state; `serving` holds the ones the ad server may deliver."""

    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    serving: dict[str, dict[str, list[str]]] = field(
        default_factory=dict
    )  # id -> unit -> creatives

    def apply(self, value: bytes | None) -> bool:
        """Take one record's value; False when it was older than what is held."""
        if value is None:  # a tombstone: nothing the worker writes today, but be ready
            return False
        state = json.loads(value)["data"]
        cid = state["campaign_id"]
        held = self.states.get(cid)
        if held is not None and state["version"] <= held["version"]:
            return False
        self.states[cid] = state
        units: dict[str, list[str]] = {}
        for creative in state["creatives"]:
            if creative["status"] == "APPROVED":
                units.setdefault(creative["ad_unit_id"], []).append(creative["creative_id"])
        if state["serving"] and units:
            self.serving[cid] = units
        else:
            self.serving.pop(cid, None)
        return True


async def follow(bootstrap: str, prefix: str = "") -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        f"{prefix}campaign.state",
        bootstrap_servers=bootstrap,
        group_id=None,  # every start reads the whole topic
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    serving_set = ServingSet()
    await consumer.start()
    try:
        async for record in consumer:
            if serving_set.apply(record.value):
                print(f"{len(serving_set.serving)} campaigns serving", flush=True)
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(follow(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
