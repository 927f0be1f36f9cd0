"""Kafka over TLS with SASL, mutual TLS and ACLs (issue 15, items 2 and 6's ACL part).

An Apache Kafka whose client listeners are SASL_SSL (SCRAM-SHA-512 and PLAIN) and SSL with
required client certificates, certificates from a CA the test makes, SCRAM users created
when the storage is formatted, the StandardAuthorizer on, and deploy/kafka-acls.sh applied
as it is. The worker (consumers and relay), `campaign-worker publish` and `campaign-worker
lag` run through it; the broker refuses a producer without write rights on
campaign.payments, campaign.reviews or campaign.commands; `dlq replay` is published with the
worker's own right to write the inbound topics (why it has it); a wrong password or an
untrusted certificate is a clear log line per attempt and /readyz 503, never a crash."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from tests.e2e.test_startup_order import Spawned
from tests.support.contract import create_event, product_event
from tests.support.kafka_io import cloudevent
from tests.support.servers import LocalKafka, kafka_acls_command, local_kafka
from tests.support.util import eventually

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "campaign_worker.entrypoints.cli"]
ACLS = Path(__file__).parents[2] / "deploy" / "kafka-acls.sh"


@dataclass
class Secured:
    kafka: LocalKafka
    prefix: str
    workdir: Path

    @property
    def s(self) -> Any:
        assert self.kafka.secure is not None
        return self.kafka.secure

    def password(self, user: str) -> str:
        return str(self.s.users[user].password)

    def sasl_env(self, user: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.s.sasl_ssl,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": self.password(user),
            "KAFKA_SSL_CAFILE": str(self.s.pki.ca),
        }

    def producer(self, user: str, mechanism: str = "PLAIN") -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.s.sasl_ssl,
            security_protocol="SASL_SSL",
            ssl_context=ssl.create_default_context(cafile=str(self.s.pki.ca)),
            sasl_mechanism=mechanism,
            sasl_plain_username=user,
            sasl_plain_password=self.password(user),
            acks="all",
        )


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    users = ("worker", "platform", "moderation", "payments", "outsider")
    workdir = Path(tempfile.mkdtemp(prefix="cw-kafka-acl-"))
    with local_kafka(secure=True, users=users) as kafka:
        kafka.start()
        assert kafka.secure is not None
        admin = kafka.secure.admin
        config = workdir / "admin.properties"
        config.write_text(
            "security.protocol=SASL_SSL\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            f'required username="{admin.name}" password="{admin.password}";\n'
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={kafka.secure.pki.ca}\n"
        )
        prefix = f"s{uuid.uuid4().hex[:8]}."
        applied = subprocess.run(
            ["sh", str(ACLS)],
            env={
                **os.environ,
                "KAFKA_ACLS": kafka_acls_command(workdir),
                "BOOTSTRAP": kafka.secure.sasl_ssl,
                "COMMAND_CONFIG": str(config),
                "PREFIX": prefix,
                "WORKER_GROUP": f"cw-{prefix}",
                "WORKER": "User:worker",
                "PLATFORM": "User:platform",
                "MODERATION": "User:moderation",
                "PAYMENTS": "User:payments",
            },
            capture_output=True,
            timeout=600,
            check=False,
        )
        assert applied.returncode == 0, applied.stdout.decode() + applied.stderr.decode()
        yield Secured(kafka, prefix, workdir)


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _events_of(kafka: LocalKafka, topic: str, subject: str) -> list[dict[str, Any]]:
    """What the relay published for `subject`, read as the broker's super user."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=2000)
        events = [json.loads(r.value) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return [e for e in events if e.get("subject") == subject]


async def _run_lifecycle_through(
    secured: Secured, worker: Spawned, database_url: str, *, product: bool
) -> str:
    """The upstream platform publishes through the SASL listener with the CLI; the worker
    applies it and its relay publishes the outcome."""
    publisher = {**os.environ, **secured.sasl_env("platform", "PLAIN")}
    publisher["CAMPAIGN_WORKER_TOPIC_PREFIX"] = secured.prefix
    if product:
        code, out = await _cli(
            publisher, "publish", "campaign.catalog", json.dumps(product_event())
        )
        assert code == 0, out

        async def stored() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return bool(await conn.fetchval("SELECT count(*) FROM ad_products"))
            finally:
                await conn.close()

        await eventually(stored, timeout=60, interval=0.3)
    cid = str(uuid.uuid4())
    code, out = await _cli(publisher, "publish", "campaign.commands", json.dumps(create_event(cid)))
    assert code == 0 and "published" in out, out

    async def announced() -> list[dict[str, Any]]:
        worker.alive()
        events = await _events_of(secured.kafka, f"{secured.prefix}campaign.events", cid)
        return [e for e in events if e["type"] == "campaign.status_changed"]

    try:
        await eventually(announced, timeout=60, interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{worker.text[-5000:]}") from None
    return cid


async def test_scram_sha_512_worker_cli_and_relay(
    secured: Secured, database_url: str, tmp_path: Path
) -> None:
    env = secured.sasl_env("worker")
    worker = Spawned(database_url, env.pop("KAFKA_BOOTSTRAP_SERVERS"), secured.prefix, **env)
    await worker.start("--no-migrate")
    try:
        await worker.wait_ready()
        await _run_lifecycle_through(secured, worker, database_url, product=True)
        # the operator's lag command, as the worker's principal (group Describe)
        code, out = await _cli(worker.env, "lag", "--json", "--samples", "1")
        assert code == 0, out
        report = json.loads(out)
        assert f"{secured.prefix}campaign.commands" in json.dumps(report), out
        assert await worker.stop() == 0
    finally:
        worker.kill()


async def test_plain_worker(secured: Secured, database_url: str) -> None:
    env = secured.sasl_env("worker", "PLAIN")
    worker = Spawned(database_url, env.pop("KAFKA_BOOTSTRAP_SERVERS"), secured.prefix, **env)
    await worker.start("--no-migrate")
    try:
        await worker.wait_ready()
        await _run_lifecycle_through(secured, worker, database_url, product=True)
        assert await worker.stop() == 0
    finally:
        worker.kill()


async def test_mutual_tls_worker(secured: Secured, database_url: str) -> None:
    cert, key = secured.s.pki.issue("worker-client", "worker")  # principal User:worker
    worker = Spawned(
        database_url,
        secured.s.ssl,
        secured.prefix,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(secured.s.pki.ca),
        KAFKA_SSL_CERTFILE=str(cert),
        KAFKA_SSL_KEYFILE=str(key),
    )
    await worker.start("--no-migrate")
    try:
        await worker.wait_ready()
        await _run_lifecycle_through(secured, worker, database_url, product=True)
        assert await worker.stop() == 0
    finally:
        worker.kill()


async def test_the_broker_enforces_who_writes_which_topic(secured: Secured) -> None:
    payments = f"{secured.prefix}campaign.payments"
    commands = f"{secured.prefix}campaign.commands"
    charge = json.dumps(
        cloudevent("payment.charge_succeeded", str(uuid.uuid4()), {}, actorrole="system")
    ).encode()

    async def send(user: str, topic: str) -> None:
        producer = secured.producer(user)
        await producer.start()
        try:
            await producer.send_and_wait(topic, charge, key=b"k")
        finally:
            await producer.stop()

    reviews = f"{secured.prefix}campaign.reviews"
    # the platform may write commands but not payments (a forged charge confirmation)
    await send("platform", commands)
    with pytest.raises(TopicAuthorizationFailedError):
        await send("platform", payments)
    with pytest.raises(TopicAuthorizationFailedError):
        await send("outsider", commands)
    await send("payments", payments)  # the payment service may
    with pytest.raises(TopicAuthorizationFailedError):
        await send("moderation", payments)
    # only moderation approves: the platform cannot write reviews, moderation no commands
    await send("moderation", reviews)
    with pytest.raises(TopicAuthorizationFailedError):
        await send("platform", reviews)
    with pytest.raises(TopicAuthorizationFailedError):
        await send("moderation", commands)

    # the worker's principal has what it needs and no more: no topics outside its prefix
    admin = AIOKafkaAdminClient(
        bootstrap_servers=secured.s.sasl_ssl,
        security_protocol="SASL_SSL",
        ssl_context=ssl.create_default_context(cafile=str(secured.s.pki.ca)),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="worker",
        sasl_plain_password=secured.password("worker"),
    )
    await admin.start()
    try:
        result = await admin.create_topics([NewTopic("elsewhere.topic", 1, 1)])
        errors = [code for _, code, *_ in result.topic_errors if code != 0]
        assert errors, "the worker could create a topic outside its prefix"
    except KafkaError:
        pass  # refused as an exception: just as good
    finally:
        await admin.close()


async def _records_of(kafka: LocalKafka, topic: str, value: bytes) -> int:
    """How many records of `topic` hold exactly `value`, read as the broker's super user."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=2000)
        return sum(1 for rs in batch.values() for r in rs if r.value == value)
    finally:
        await consumer.stop()


async def test_dlq_replay_is_published_with_the_workers_own_write_right(
    secured: Secured, database_url: str
) -> None:
    """Why the worker's principal may write the inbound topics: a replay is an outbox row
    (written with the dead letter's `replayed_at`, in one transaction), and the relay, as the
    worker, publishes it to the topic the record came from. The broker lets it through, and
    the worker reads it back like any record (dead-lettered again here: it is still bad)."""
    env = secured.sasl_env("worker")
    worker = Spawned(database_url, env.pop("KAFKA_BOOTSTRAP_SERVERS"), secured.prefix, **env)
    await worker.start("--no-migrate")
    try:
        await worker.wait_ready()
        bad = f"not json {uuid.uuid4()}".encode()
        producer = secured.producer("platform")
        await producer.start()
        try:
            await producer.send_and_wait(f"{secured.prefix}campaign.commands", bad, key=b"k")
        finally:
            await producer.stop()

        async def dead_letters() -> list[int]:
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch("SELECT id FROM dead_letters WHERE value = $1", bad)
                return [r["id"] for r in rows]
            finally:
                await conn.close()

        [first] = await eventually(dead_letters, timeout=60, interval=0.3)
        code, out = await _cli(worker.env, "dlq", "replay", str(first))
        assert code == 0 and "queued" in out, out

        async def replayed() -> bool:
            worker.alive()
            topic = f"{secured.prefix}campaign.commands"
            return (
                await _records_of(secured.kafka, topic, bad) == 2 and len(await dead_letters()) == 2
            )

        await eventually(replayed, timeout=60, interval=0.5)
        assert "TopicAuthorizationFailed" not in worker.text, worker.text[-3000:]
        assert await worker.stop() == 0
    finally:
        worker.kill()


async def test_untrusted_broker_certificate_and_wrong_password_are_named(
    secured: Secured, database_url: str
) -> None:
    cases = [
        (
            {"KAFKA_SSL_CAFILE": str(secured.s.pki.other_ca)},
            secured.s.sasl_ssl,
            "TLS certificate not trusted",
        ),
        ({"KAFKA_SASL_PASSWORD": "not-the-password"}, secured.s.sasl_ssl, "SASL authentication"),
    ]
    foreign_cert, foreign_key = secured.s.pki.issue("stranger", "worker", ca="other-ca")
    cases.append(
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SASL_MECHANISM": "",
                "KAFKA_SSL_CERTFILE": str(foreign_cert),
                "KAFKA_SSL_KEYFILE": str(foreign_key),
            },
            secured.s.ssl,
            "does not accept this client certificate",
        )
    )
    for overrides, bootstrap, reason in cases:
        env = {**secured.sasl_env("worker"), **overrides}
        env.pop("KAFKA_BOOTSTRAP_SERVERS")
        worker = Spawned(database_url, bootstrap, secured.prefix, **env)
        await worker.start("--no-migrate")
        try:
            await worker.wait_log(rf"waiting for Kafka at \S+ \(attempt 2\): .*{reason}")
            got = await worker.readyz()
            assert got is not None and got[0] == 503
            assert reason in got[1]["checks"]["kafka"], got
            assert await worker.stop() == 0
        finally:
            worker.kill()
        assert "Traceback" not in worker.text, worker.text[-3000:]
        lines = [line for line in worker.text.splitlines() if "attempt 1)" in line]
        assert len(lines) == 1, lines  # one line per attempt
