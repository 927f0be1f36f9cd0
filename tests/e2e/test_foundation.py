"""The worker as a black box on real Kafka and Postgres: intake, idempotency, dead letters,
offset commits after the database commit, health and metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Harness
from tests.support.contract import create_event
from tests.support.kafka_io import cloudevent
from tests.support.util import committed_offsets, eventually, http_get, seed_product

pytestmark = pytest.mark.e2e


async def test_command_is_consumed_inbox_written_and_offset_committed(harness: Harness) -> None:
    await harness.start_worker()
    await seed_product(harness)
    cid = str(uuid.uuid4())
    event = create_event(cid)
    meta = await harness.up.send("campaign.commands", event)

    [changed] = await harness.down.wait_for(
        lambda r: r.type == "campaign.status_changed" and r.event["subject"] == cid
    )
    assert changed.data["to"] == "DRAFT" and changed.data["version"] == 1
    assert changed.event["causationid"] == event["id"]
    assert changed.key == cid.encode()

    rows = await harness.fetch(
        'SELECT topic, partition, "offset" FROM inbox WHERE message_id=$1', event["id"]
    )
    assert [(r["topic"], r["partition"], r["offset"]) for r in rows] == [
        ("campaign.commands", meta.partition, meta.offset)
    ]

    async def committed() -> bool:
        offsets = await committed_offsets(harness, "campaign.commands")
        return offsets.get(meta.partition) == meta.offset + 1

    await eventually(committed)


async def test_non_json_record_is_dead_lettered_and_next_record_still_processed(
    harness: Harness,
) -> None:
    await harness.start_worker()
    cid = str(uuid.uuid4())
    bad = await harness.up.send_raw(
        "campaign.commands", b"\x00not json{", key=cid, headers=[("trace", b"\xff\xfe binary")]
    )
    await seed_product(harness)
    good = create_event(cid)
    await harness.up.send("campaign.commands", good)

    [dead] = await harness.down.wait_for(lambda r: r.topic == "campaign.dlq")
    assert dead.key == cid.encode()
    assert base64.b64decode(dead.data["original"]) == b"\x00not json{"
    assert dead.data["error"]["code"] == "not_json"
    assert dead.data["source"] == {
        "topic": f"{harness.prefix}campaign.commands",
        "partition": bad.partition,
        "offset": bad.offset,
    }
    assert {"key": "trace", "value": base64.b64encode(b"\xff\xfe binary").decode()} in dead.data[
        "headers"
    ]
    assert ("dlq-original-trace", b"\xff\xfe binary") in dead.headers

    await harness.down.wait_for(
        lambda r: r.type == "campaign.status_changed" and r.event["subject"] == cid
    )
    stored = await harness.fetch("SELECT error_code FROM dead_letters")
    assert [r["error_code"] for r in stored] == ["not_json"]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"[1, 2, 3]", "not_cloudevent"),
        (json.dumps({"specversion": "1.0", "id": "x"}).encode(), "not_cloudevent"),
        (json.dumps(cloudevent("campaign.explode", str(uuid.uuid4()))).encode(), "unknown_type"),
        (
            json.dumps(
                cloudevent("campaign.extend_end", str(uuid.uuid4()), {"end_at": "soon"})
            ).encode(),
            "invalid_data",
        ),
        (json.dumps(cloudevent("campaign.submit", "not-a-uuid")).encode(), "invalid_data"),
        (
            json.dumps(cloudevent("review.campaign_approved", str(uuid.uuid4()))).encode(),
            "wrong_topic",
        ),
        (b"{" + b" " * 5000 + b"}", "too_large"),
    ],
)
async def test_undecodable_messages_are_dead_lettered_with_a_reason(
    harness: Harness, value: bytes, code: str
) -> None:
    await harness.start_worker(max_message_bytes=4096)
    await harness.up.send_raw("campaign.commands", value, key="k")
    [dead] = await harness.down.wait_for(lambda r: r.topic == "campaign.dlq")
    assert dead.data["error"]["code"] == code
    assert base64.b64decode(dead.data["original"]) == value
    assert dead.data["error"]["message"]


async def test_same_message_id_delivered_twice_changes_nothing(harness: Harness) -> None:
    await harness.start_worker()
    await seed_product(harness)
    cid = str(uuid.uuid4())
    event = create_event(cid)
    await harness.up.send("campaign.commands", event)
    await harness.up.send("campaign.commands", event)  # redelivery: same id
    marker = create_event(str(uuid.uuid4()))
    await harness.up.send("campaign.commands", marker)  # processed after both
    await harness.down.wait_for(
        lambda r: r.type == "campaign.status_changed" and r.event["subject"] == marker["subject"]
    )
    await asyncio.sleep(0.5)
    assert len(harness.down.of_type("campaign.status_changed", cid)) == 1
    assert not harness.down.of_type("command.rejected", cid)
    rows = await harness.fetch("SELECT version FROM campaigns WHERE id=$1", uuid.UUID(cid))
    assert [r["version"] for r in rows] == [1]
    assert len(await harness.fetch("SELECT 1 FROM inbox WHERE message_id=$1", event["id"])) == 1


async def test_offset_is_committed_only_after_the_database_commit(harness: Harness) -> None:
    """The database refuses the transaction holding one message for a while: the message is
    processed again later, not lost, and its offset is not committed before that."""
    cid = str(uuid.uuid4())
    event = create_event(cid)
    conn = await harness.db()
    try:
        await conn.execute(
            """
            CREATE TABLE fail_once (message_id text primary key);
            INSERT INTO fail_once VALUES ($1);
            CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $f$
            BEGIN
              IF EXISTS (SELECT 1 FROM fail_once WHERE message_id = NEW.message_id) THEN
                RAISE EXCEPTION 'injected failure for %', NEW.message_id;
              END IF;
              RETURN NEW;
            END $f$;
            CREATE TRIGGER fail_once BEFORE INSERT ON inbox
              FOR EACH ROW EXECUTE FUNCTION fail_once();
            """.replace("$1", f"'{event['id']}'")
        )
    finally:
        await conn.close()
    # Fails until the test removes the row: a database refusing this one message.
    worker = await harness.start_worker(processing_max_attempts=1000)
    await seed_product(harness)
    meta = await harness.up.send("campaign.commands", event)

    async def failed_once() -> bool:
        return worker.metrics.batch_failures.labels("error")._value.get() >= 1

    await eventually(failed_once)
    offsets = await committed_offsets(harness, "campaign.commands")
    assert (offsets.get(meta.partition) or 0) <= meta.offset, "committed before the DB commit"
    conn = await harness.db()
    try:
        await conn.execute("DELETE FROM fail_once")
    finally:
        await conn.close()

    await harness.down.wait_for(
        lambda r: r.type == "campaign.status_changed" and r.event["subject"] == cid, timeout=30
    )
    rows = await harness.fetch("SELECT status FROM campaigns WHERE id=$1", uuid.UUID(cid))
    assert [r["status"] for r in rows] == ["DRAFT"]

    async def committed() -> bool:
        return (await committed_offsets(harness, "campaign.commands")).get(
            meta.partition
        ) == meta.offset + 1

    await eventually(committed)


async def test_metrics_parse_as_prometheus_text_and_readiness_follows_postgres(
    harness: Harness,
) -> None:
    worker = await harness.start_worker()
    await seed_product(harness)
    await harness.up.send_raw("campaign.commands", b"garbage", key="k")
    await harness.down.wait_for(lambda r: r.topic == "campaign.dlq")
    port = worker.http.port

    status, body = await asyncio.to_thread(http_get, port, "/healthz")
    assert status == 200
    status, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    dead = families["campaign_worker_dead_letters"]
    assert any(
        s.labels == {"topic": "campaign.commands", "reason": "not_json"} and s.value == 1
        for s in dead.samples
    )
    assert "campaign_worker_messages" in families
    assert any(name.startswith("faststream_") for name in families), sorted(families)

    status, body = await asyncio.to_thread(http_get, port, "/readyz")
    assert status == 200, body

    db_name = harness.database_url.rsplit("/", 1)[1]
    admin_url = harness.database_url.rsplit("/", 1)[0] + "/postgres"
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=$1", db_name
        )
        await worker.engine.dispose()
        status, body = await asyncio.to_thread(http_get, port, "/readyz")
        assert status == 503, body
        assert json.loads(body)["checks"]["kafka"] == "ok"
        assert json.loads(body)["checks"]["database"] != "ok"
    finally:
        await admin.execute(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true')
        await admin.close()
    status, body = await asyncio.to_thread(http_get, port, "/readyz")
    assert status == 200, body
