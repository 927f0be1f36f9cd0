"""The test servers are real: Kafka does transactions and idempotence, Postgres does SQL.

Also checks the selection order of tests/support/servers.py without starting anything, and
that the zero-install dev services (Tansu, SMTP sink) answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import smtplib
import tempfile
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from campaign_worker.dev import services as devservices
from tests.support import servers

# --------------------------------------------------------------------------------------
# Selection order: no server needed
# --------------------------------------------------------------------------------------


@pytest.fixture
def nothing_may_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a server was started although the environment named one")

    for name in ("_docker_available", "_local_kafka", "_local_postgres", "_kafka_container"):
        monkeypatch.setattr(servers, name, refuse)


@pytest.mark.usefixtures("nothing_may_start")
def test_kafka_from_environment_is_yielded_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-a:9092,kafka-b:9092")
    with servers.kafka_server() as bootstrap:
        assert bootstrap == "kafka-a:9092,kafka-b:9092"


@pytest.mark.usefixtures("nothing_may_start")
def test_postgres_from_environment_is_yielded_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://u:p@db.example:5433/campaigns"
    monkeypatch.setenv("DATABASE_URL", url)
    with servers.postgres_server() as yielded:
        assert yielded == url


def test_local_servers_are_used_when_docker_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setattr(servers, "_docker_available", lambda: False)

    @contextlib.contextmanager
    def fake_local() -> Iterator[str]:
        yield "local"

    monkeypatch.setattr(servers, "_local_kafka", fake_local)
    with servers.kafka_server() as bootstrap:
        assert bootstrap == "local"


def test_docker_probe_gives_up_quickly_without_a_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    started = time.monotonic()
    assert servers._docker_available() is False
    assert time.monotonic() - started < 5


def test_cluster_ids_are_kafka_shaped() -> None:
    ids = {servers._new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def _fake_tool(directory: Path, name: str, script: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return tool


@pytest.fixture
def local_kafka_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local-Kafka path with a private cache and temp dir, so failures can be staged."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv(servers.KAFKA_VERSION_ENV, raising=False)
    monkeypatch.setattr(servers, "_docker_available", lambda: False)
    monkeypatch.setenv(servers.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def test_local_kafka_names_the_failed_download(
    local_kafka_sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = local_kafka_sandbox / "bin"
    _fake_tool(bin_dir, "mvn", "echo '[ERROR] Could not resolve dependencies'\nexit 1\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    with pytest.raises(servers.ServerStartError) as failure:
        with servers.kafka_server():
            pass
    assert "step 'download the Kafka jars' failed" in str(failure.value)
    assert "Could not resolve dependencies" in str(failure.value)
    assert not (local_kafka_sandbox / "cache" / "kafka-4.1.1" / "COMPLETE").exists()


@pytest.mark.parametrize(
    ("java_script", "step", "output"),
    [
        ("echo 'Error: bad config'\nexit 1\n", "format the storage", "Error: bad config"),
        (
            'case "$*" in *StorageTool*) exit 0;; esac\necho "broker boom"\nexit 3\n',
            "start the broker",
            "broker boom",
        ),
    ],
)
def test_local_kafka_names_the_failed_step_and_cleans_up(
    local_kafka_sandbox: Path,
    monkeypatch: pytest.MonkeyPatch,
    java_script: str,
    step: str,
    output: str,
) -> None:
    libs = local_kafka_sandbox / "cache" / "kafka-4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs.parent / "COMPLETE").write_text("4.1.1\n")
    java_home = local_kafka_sandbox / "jdk"
    _fake_tool(java_home / "bin", "java", java_script)
    monkeypatch.setenv("JAVA_HOME", str(java_home))

    with pytest.raises(servers.ServerStartError) as failure:
        with servers.kafka_server():
            pass
    assert f"step '{step}' failed" in str(failure.value)
    assert output in str(failure.value)
    assert list((local_kafka_sandbox / "tmp").iterdir()) == []


# --------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_kafka() -> Iterator[str]:
    with servers.kafka_server() as bootstrap:
        yield bootstrap


async def _new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"test-servers-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def _read_all(bootstrap: str, topic: str, isolation_level: str) -> tuple[list[bytes], int]:
    """Every visible value of partition 0, and its end offset as the consumer sees it."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                values += [record.value for record in batch.get(tp, []) if record.value]
        return values, end
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_kafka_commits_and_aborts_transactions(module_kafka: str) -> None:
    topic = await _new_topic(module_kafka)
    producer = AIOKafkaProducer(
        bootstrap_servers=module_kafka, transactional_id=f"tx-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for value in (b"a", b"b", b"c"):
                await producer.send_and_wait(topic, value, partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", partition=0)
        await producer.abort_transaction()
    finally:
        await producer.stop()

    committed, end = await _read_all(module_kafka, topic, "read_committed")
    # 3 records + commit marker + 1 aborted record + abort marker: only real Kafka counts so.
    assert committed == [b"a", b"b", b"c"]
    assert end == 6
    uncommitted, _ = await _read_all(module_kafka, topic, "read_uncommitted")
    assert uncommitted == [b"a", b"b", b"c", b"aborted"]


@pytest.mark.integration
async def test_kafka_takes_idempotent_producer_and_reports_end_offsets(
    module_kafka: str,
) -> None:
    topic = await _new_topic(module_kafka, partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=module_kafka, enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    try:
        # Sent together, these land in one batch: the end offset must still count records.
        sent = [await producer.send(topic, f"m{i}".encode(), partition=0) for i in range(5)]
        await asyncio.gather(*sent)
        await producer.send_and_wait(topic, b"other", partition=1)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=module_kafka)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        assert await consumer.end_offsets(partitions) == dict(
            zip(partitions, [5, 1, 0], strict=True)
        )
    finally:
        await consumer.stop()
    values, _ = await _read_all(module_kafka, topic, "read_uncommitted")
    assert values == [b"m0", b"m1", b"m2", b"m3", b"m4"]


@pytest.mark.integration
async def test_kafka_consumer_group_commits_offsets(module_kafka: str) -> None:
    topic = await _new_topic(module_kafka)
    producer = AIOKafkaProducer(bootstrap_servers=module_kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", partition=0)
    finally:
        await producer.stop()

    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=module_kafka,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            record = await consumer.getone()
        assert record.value == b"hello"
        await consumer.commit()
        assert await consumer.committed(TopicPartition(topic, 0)) == 1
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_postgres() -> Iterator[str]:
    with servers.postgres_server() as url:
        yield url


@pytest.mark.integration
async def test_postgres_runs_sql(module_postgres: str) -> None:
    assert module_postgres.startswith("postgresql://")
    table = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(module_postgres)
    try:
        await conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)")
        await conn.executemany(f"INSERT INTO {table} (name) VALUES ($1)", [("a",), ("b",)])
        rows = await conn.fetch(f"SELECT name FROM {table} ORDER BY id")
        assert [row["name"] for row in rows] == ["a", "b"]
        async with conn.transaction():
            locked = await conn.fetch(f"SELECT id FROM {table} FOR UPDATE SKIP LOCKED")
        assert len(locked) == 2
        await conn.execute(f"DROP TABLE {table}")
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------
# Zero-install dev services (the `campaign-worker dev` stand-ins)
# --------------------------------------------------------------------------------------


@pytest.fixture
def dev_data_dir() -> Iterator[Path]:
    # Not tmp_path: as root, Postgres runs as `nobody`, which cannot enter pytest's 0700 base.
    path = Path(tempfile.mkdtemp(prefix="campaign-worker-devpg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _sql(url: str, statement: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


@pytest.mark.integration
async def test_embedded_postgres_keeps_data_across_restarts(dev_data_dir: Path) -> None:
    first = await asyncio.to_thread(devservices.start_embedded_postgres, dev_data_dir)
    try:
        assert first.url.startswith("postgresql://postgres:")
        assert first.url.endswith("/campaign_worker")
        await _sql(first.url, "CREATE TABLE kept (note text)")
        await _sql(first.url, "INSERT INTO kept VALUES ('still here')")
    finally:
        first.stop()
        first.stop()  # idempotent

    second = await asyncio.to_thread(devservices.start_embedded_postgres, dev_data_dir)
    try:
        assert [r["note"] for r in await _sql(second.url, "SELECT note FROM kept")] == [
            "still here"
        ]
    finally:
        second.stop()


@pytest.mark.integration
async def test_tansu_takes_plain_produce_and_consume(tmp_path: Path) -> None:
    handle = await asyncio.to_thread(devservices.start_tansu, tmp_path)
    try:
        bootstrap = handle.bootstrap_servers
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for value in (b"one", b"two"):
                await producer.send_and_wait("tansu-smoke", value, partition=0)
        finally:
            await producer.stop()
        values, _ = await _read_all(bootstrap, "tansu-smoke", "read_uncommitted")
        assert values == [b"one", b"two"]
    finally:
        handle.stop()
        handle.stop()  # idempotent


@pytest.mark.integration
def test_smtp_sink_keeps_each_mail_as_a_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="campaign_worker.dev.services")
    handle = devservices.start_smtp_sink(tmp_path / "mail")
    try:
        message = EmailMessage()
        message["From"] = "worker@example.com"
        message["To"] = "advertiser@example.com"
        message["Subject"] = "Campaign approved"
        message.set_content("Your campaign is live.")
        with smtplib.SMTP(handle.host, handle.port, timeout=10) as client:
            client.send_message(message)
    finally:
        handle.stop()
        handle.stop()  # idempotent

    [mail] = list(handle.maildir.glob("*.eml"))
    assert mail.name.endswith("-1.eml")
    assert b"Your campaign is live." in mail.read_bytes()
    assert f"mail to advertiser@example.com: Campaign approved -> {mail}" in caplog.messages
