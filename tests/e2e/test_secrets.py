"""Secrets stay secret (issue 15, item 4): a worker with distinctive Kafka (SASL_SSL), SMTP
and Postgres passwords, read from `*_FILE` settings, runs a lifecycle with a failed SMTP
login, a refused recipient and, afterwards, failed Kafka and Postgres logins. None of the
passwords shows up in any log line, HTTP answer (/metrics, /readyz), CLI output, event or
email; email addresses are masked in the logs and kept in events and emails."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from tests.e2e.test_startup_order import Spawned
from tests.support.contract import create_event, product_event
from tests.support.kafka_io import Upstream, cloudevent
from tests.support.servers import LocalKafka, local_kafka
from tests.support.smtp import SmtpServer, self_signed_certificate
from tests.support.util import eventually

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "campaign_worker.entrypoints.cli"]


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[LocalKafka]:
    with local_kafka(secure=True, users=("worker",)) as kafka:
        kafka.start()
        yield kafka


@pytest.fixture
async def secret_role(database_url: str) -> AsyncIterator[tuple[str, str]]:
    """A Postgres login with a distinctive password, for this test's database."""
    name, password = f"cw_secret_{uuid.uuid4().hex[:8]}", f"pg-pass-{uuid.uuid4().hex}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE ROLE \"{name}\" LOGIN SUPERUSER PASSWORD '{password}'")
    finally:
        await conn.close()
    yield name, password
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename=$1", name
        )
        await conn.execute(f'DROP OWNED BY "{name}"')
        await conn.execute(f'DROP ROLE "{name}"')
    finally:
        await conn.close()


async def _until(check: Callable[[], Awaitable[bool]], worker: Spawned) -> None:
    try:
        await eventually(check, timeout=60, interval=0.3)
    except AssertionError as error:
        raise AssertionError(f"{error}; the worker said:\n{worker.text[-6000:]}") from None


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _all_records(bootstrap: str, prefix: str) -> list[bytes]:
    """Every record (key, value, headers) of every topic of this test, read as super user."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        *names, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[bytes] = []
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=1000)
            records = [r for rs in batch.values() for r in rs]
            idle = 0 if records else idle + 1
            for r in records:
                found.append((r.key or b"") + b"|" + (r.value or b""))
                found.extend(v for _, v in r.headers)
    finally:
        await consumer.stop()
    return found


async def test_no_password_leaks_and_addresses_are_masked_in_logs(
    secure_kafka: LocalKafka,
    database_url: str,
    topic_prefix: str,
    secret_role: tuple[str, str],
    tmp_path: Path,
) -> None:
    secure = secure_kafka.secure
    assert secure is not None
    role, pg_password = secret_role
    kafka_password = secure.admin.password
    smtp_password, smtp_wrong = f"smtp-pass-{uuid.uuid4().hex}", f"smtp-bad-{uuid.uuid4().hex}"
    kafka_wrong, pg_wrong = f"kafka-bad-{uuid.uuid4().hex}", f"pg-bad-{uuid.uuid4().hex}"
    secrets = {
        "kafka": kafka_password,
        "postgres": pg_password,
        "smtp": smtp_password,
        "smtp (wrong)": smtp_wrong,
        "kafka (wrong)": kafka_wrong,
        "postgres (wrong)": pg_wrong,
    }

    def secret_file(name: str, value: str) -> str:
        path = tmp_path / name
        path.write_text(value + "\n")  # as `echo secret > file` writes it
        return str(path)

    cert, key = self_signed_certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    smtp = SmtpServer(tls_context=tls, credentials=("mailer", smtp_password))
    ada, bob = f"ada-{uuid.uuid4().hex[:6]}@example.com", f"bob-{uuid.uuid4().hex[:6]}@example.com"
    smtp.rcpt_reply[bob] = "550 5.1.1 no such user"
    smtp.up()

    db = urlsplit(database_url)
    env = {
        "DATABASE_URL": f"postgresql://{role}@{db.hostname}:{db.port}{db.path}",
        "DATABASE_PASSWORD_FILE": secret_file("pg", pg_password),
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": secure.admin.name,
        "KAFKA_SASL_PASSWORD_FILE": secret_file("kafka", kafka_password),
        "KAFKA_SSL_CAFILE": str(secure.pki.ca),
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "SMTP_USERNAME": "mailer",
        "SMTP_PASSWORD_FILE": secret_file("smtp-wrong", smtp_wrong),
        "SMTP_STARTTLS": "true",
        "SMTP_FROM": "Ad platform <ads@example.com>",
        "CAMPAIGN_WORKER_SMTP_CAFILE": str(cert),
        "CAMPAIGN_WORKER_SMTP_BACKOFF_INITIAL_S": "0.2",
        "CAMPAIGN_WORKER_SMTP_BACKOFF_MAX_S": "0.5",
        "CAMPAIGN_WORKER_SMTP_MAX_ATTEMPTS": "1000",
        "CAMPAIGN_WORKER_LOG_LEVEL": "DEBUG",
    }
    outputs: dict[str, str] = {}
    workers: list[Spawned] = []

    def spawn(**overrides: str) -> Spawned:
        merged = {**env, **overrides}
        worker = Spawned(merged.pop("DATABASE_URL"), secure.sasl_ssl, topic_prefix, **merged)
        workers.append(worker)
        return worker

    async def status(cid: str) -> str | None:
        conn = await asyncpg.connect(database_url)
        try:
            got = await conn.fetchval("SELECT status FROM campaigns WHERE id=$1", uuid.UUID(cid))
        finally:
            await conn.close()
        return None if got is None else str(got)

    up = Upstream(secure_kafka.bootstrap, topic_prefix)  # the internal listener, super user
    await up.start()
    try:
        # 1. the SMTP password is wrong: every login fails, the notifier keeps retrying
        first = spawn()
        await first.start("--no-migrate")
        await first.wait_ready()
        await up.send("campaign.catalog", product_event())

        async def product_stored() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return bool(await conn.fetchval("SELECT count(*) FROM ad_products"))
            finally:
                await conn.close()

        await _until(product_stored, first)
        ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
        for cid, address in ((ours, ada), (theirs, bob)):
            contact = {"name": "Someone", "email": address}
            await up.send("campaign.commands", create_event(cid, contact=contact))
            await up.send("campaign.commands", cloudevent("campaign.submit", cid, {}))

        async def submitted() -> bool:
            return await status(ours) == "SUBMITTED" and await status(theirs) == "SUBMITTED"

        # another topic, so no ordering with the commands: approve once both are submitted
        await _until(submitted, first)
        for cid in (ours, theirs):
            await up.send(
                "campaign.reviews",
                cloudevent("review.campaign_approved", cid, {}, actorrole="publisher"),
            )

        async def booked() -> bool:
            return await status(ours) == "BOOKED" and await status(theirs) == "BOOKED"

        await _until(booked, first)

        async def login_failed() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return bool(
                    await conn.fetchval(
                        "SELECT count(*) FROM notifications WHERE attempts >= 2"
                        " AND last_error IS NOT NULL"
                    )
                )
            finally:
                await conn.close()

        await _until(login_failed, first)
        outputs["/metrics (1)"] = str(await first.get("/metrics"))
        outputs["/readyz (1)"] = str(await first.get("/readyz"))
        cli_env = {**first.env}
        for args in (
            ("campaign", "show", ours),
            ("campaign", "show", ours, "--json"),
            ("dlq", "list"),
            ("lag", "--json"),
        ):
            code, text = await _cli(cli_env, *args)
            outputs[f"cli {' '.join(args)}"] = text
            assert code in (0, 1), text
        assert await first.stop() == 0

        # 2. the right SMTP password: the emails go out, the refused recipient fails
        second = spawn(SMTP_PASSWORD_FILE=secret_file("smtp", smtp_password))
        await second.start("--no-migrate")
        await second.wait_ready()

        async def mailed() -> bool:
            return bool(smtp.to(ada))

        await _until(mailed, second)
        await second.wait_log(r"notification \S+ \(\S+\) failed: recipient refused")
        pause = json.dumps(cloudevent("campaign.pause", ours, {}))
        code, text = await _cli(second.env, "publish", "campaign.commands", pause)
        outputs["cli publish"] = text
        assert code == 0, text

        async def paused() -> bool:
            return await status(ours) == "PAUSED"

        await _until(paused, second)
        outputs["/metrics (2)"] = str(await second.get("/metrics"))
        assert await second.stop() == 0

        # 3. a wrong Kafka password: one clear line per attempt, /readyz 503, no crash
        wrong_kafka = spawn(KAFKA_SASL_PASSWORD_FILE=secret_file("kafka-bad", kafka_wrong))
        await wrong_kafka.start("--no-migrate")
        await wrong_kafka.wait_log(r"waiting for Kafka at \S+ \(attempt 2\): .*SASL authentication")
        got = await wrong_kafka.readyz()
        assert got is not None and got[0] == 503
        assert "SASL authentication failed" in got[1]["checks"]["kafka"], got
        outputs["/readyz (wrong kafka)"] = json.dumps(got[1])
        code, text = await _cli(wrong_kafka.env, "publish", "campaign.commands", pause)
        outputs["cli publish (wrong kafka)"] = text
        assert code != 0
        assert await wrong_kafka.stop() == 0

        # 4. a wrong Postgres password
        wrong_pg = spawn(DATABASE_PASSWORD_FILE=secret_file("pg-bad", pg_wrong))
        await wrong_pg.start("--no-migrate")
        await wrong_pg.wait_log(r"waiting for Postgres at \S+ \(attempt 2\): .*password")
        got = await wrong_pg.readyz()
        assert got is not None and got[0] == 503
        outputs["/readyz (wrong postgres)"] = json.dumps(got[1])
        code, text = await _cli(wrong_pg.env, "campaign", "show", ours)
        outputs["cli campaign show (wrong postgres)"] = text
        assert code != 0
        assert await wrong_pg.stop() == 0
    finally:
        for worker in workers:
            worker.kill()
        await up.stop()
        smtp.down()

    logs = {f"worker {i} log": w.text for i, w in enumerate(workers, 1)}
    records = await _all_records(secure_kafka.bootstrap, topic_prefix)
    events = b"\n".join(records).decode(errors="replace")
    emails = b"\n".join(d.raw for d in smtp.delivered).decode(errors="replace")
    everything = {**logs, **outputs, "events": events, "emails": emails}
    for what, secret in secrets.items():
        leaks = [name for name, text in everything.items() if secret in text]
        assert not leaks, f"the {what} password shows in {leaks}"

    # the worker really said things worth checking
    all_logs = "\n".join(logs.values())
    assert "SASL authentication failed" in all_logs
    assert "password authentication failed" in all_logs
    assert "notification.requested" in events and "notification.failed" in events
    # addresses: masked in logs, kept in events and emails
    assert ada not in all_logs and bob not in all_logs
    assert f"{bob[0]}***@example.com" in all_logs  # the refusal is logged, masked
    assert bob in events and ada in events
    assert ada in emails
    assert any(d.login == "mailer" for d in smtp.delivered)
