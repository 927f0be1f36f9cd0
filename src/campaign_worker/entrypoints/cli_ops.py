"""Shared CLI plumbing (one error style, settings, reaching the services) and the operator
commands: `campaign-worker lag`, `events tail`, `dlq list|show|replay`, `schemas`.

Registered on the main parser by `cli.build_parser()` through `register(sub)`. Each reads
the same environment as the worker (Settings), plus the file `campaign-worker dev` writes
with the addresses of its services; flags override both.

Every mistake a person can make ends as a `CliError`: `main()` prints it as one line,
`campaign-worker: error: ...`, and exits non-zero (2: the command or its input, 1: not found
or not OK, 3: a service cannot be reached); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from campaign_worker import topics
from campaign_worker.config import Settings

T = TypeVar("T")

EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEV_ENV_FILE = "dev.env"
"""Written by `campaign-worker dev` into its data dir: the addresses of the dev services."""


class CliError(Exception):
    """A mistake in the command, its input or the environment: one line, a non-zero exit."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- settings


def default_dev_dir() -> str:
    """Where `campaign-worker dev` keeps its data (CAMPAIGN_WORKER_DEV_DIR overrides it).

    Postgres refuses to run as root, so the dev services run it as `nobody`, who cannot
    enter root's home: as root the dev data lives under /var/tmp instead."""
    if explicit := os.environ.get("CAMPAIGN_WORKER_DEV_DIR"):
        return explicit
    if os.geteuid() == 0:
        return "/var/tmp/campaign-worker/dev"
    return os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "campaign-worker", "dev")


def dev_env_path() -> Path:
    return Path(default_dev_dir()).expanduser() / DEV_ENV_FILE


def read_dev_env() -> dict[str, str]:
    """The settings `campaign-worker dev` left for other terminals (empty without a dev run)."""
    path = dev_env_path()
    try:
        text = path.read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def write_dev_env(data_dir: Path, values: dict[str, str]) -> Path:
    path = data_dir / DEV_ENV_FILE
    lines = ["# written by `campaign-worker dev`; read by the CLI when the variable is unset"]
    lines += [f"{name}={value}" for name, value in values.items()]
    partial = path.with_suffix(".part")
    partial.write_text("\n".join(lines) + "\n")
    partial.chmod(0o600)  # the database URL holds a password
    partial.rename(path)
    return path


def setting_source(env_name: str) -> str:
    """Where a setting came from, for error messages."""
    if env_name in os.environ:
        return env_name
    if env_name in read_dev_env():
        return f"{env_name} from {dev_env_path()}"
    return f"{env_name} is unset, this is its default; is `make run` running?"


def load_settings(*, dev: bool = True, **overrides: Any) -> Settings:
    """Settings from the environment, then (`dev`, for client commands) the dev services'
    file; an invalid value is one line naming the variable."""
    from pydantic import ValidationError

    found = read_dev_env() if dev else {}
    found = {k: v for k, v in found.items() if k not in os.environ}
    try:
        return Settings(**{**_dev_values(found), **overrides})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = _env_name(field)
        raise CliError(f"invalid setting {name}: {first['msg']}") from error


def _dev_values(dev: dict[str, str]) -> dict[str, Any]:
    by_env = {_env_name(f): f for f in Settings.model_fields}
    return {by_env[k]: v for k, v in dev.items() if k in by_env}


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    choices = getattr(alias, "choices", None)
    return str(choices[0]) if choices else field.upper()


def database_address(url: str) -> str:
    """host:port/db of a DSN, without user or password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path or ''}"


# --------------------------------------------------------------------------- services


def _reason(error: BaseException) -> str:
    from aiokafka.errors import KafkaConnectionError

    orig = getattr(error, "orig", None)  # SQLAlchemy wraps the driver's error
    error = orig if isinstance(orig, BaseException) else error
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, KafkaConnectionError):
        return "no broker answered (refused, unknown host or timed out)"
    text = str(error).strip().splitlines()
    line = re.sub(r"^\[Errno -?\d+\] ", "", text[0]) if text else type(error).__name__
    return line


@contextmanager
def reaching_database(settings: Settings) -> Iterator[None]:
    """Turn a database that cannot be reached (or has no schema) into one clear line."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InterfaceError

    where = database_address(settings.database_url)
    try:
        yield
    except (DBAPIError, InterfaceError, asyncpg.PostgresError, OSError, TimeoutError) as error:
        orig = getattr(error, "orig", error)
        if isinstance(orig, asyncpg.UndefinedTableError) or "UndefinedTable" in repr(orig):
            raise CliError(
                f"the database at {where} has no campaign-worker tables: "
                "run `campaign-worker migrate` (or start the worker)",
                EXIT_UNREACHABLE,
            ) from error
        raise CliError(
            f"cannot reach Postgres at {where} ({setting_source('DATABASE_URL')}): "
            f"{_reason(error)}",
            EXIT_UNREACHABLE,
        ) from error


@contextmanager
def reaching_kafka(settings: Settings) -> Iterator[None]:
    """Turn a broker that cannot be reached into one clear line."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    try:
        yield
    except (KafkaConnectionError, OSError, TimeoutError) as error:
        raise CliError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} "
            f"({setting_source('KAFKA_BOOTSTRAP_SERVERS')}): {_reason(error)}",
            EXIT_UNREACHABLE,
        ) from error
    except KafkaError as error:
        raise CliError(
            f"Kafka at {settings.kafka_bootstrap_servers} refused: {_reason(error)}",
            EXIT_UNREACHABLE,
        ) from error


def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> T:
        engine = create_async_engine(
            settings.sqlalchemy_url,
            pool_size=1,
            max_overflow=0,
            connect_args={"timeout": 10, **settings.postgres_connect_args},
        )
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with reaching_database(settings):
        return asyncio.run(run())


# ------------------------------------------------------------------------------------ lag


def cmd_lag(args: argparse.Namespace) -> int:
    """Offsets, lag, lag seconds and status of a group, per partition, on any cluster."""
    from campaign_worker.adapters.kafka_client import client_kwargs
    from campaign_worker.adapters.lag import Status, measure

    overrides: dict[str, Any] = {}
    if args.bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = args.bootstrap_servers
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    settings = load_settings(**overrides)
    group = args.group or settings.group_id
    names = args.topic or [settings.topic(t) for t in topics.INBOUND]
    stall_after = args.stall_after if args.stall_after is not None else settings.lag_stall_after_s
    if args.samples < 1 or args.interval <= 0 or stall_after <= 0:
        raise CliError("--samples must be at least 1, --interval and --stall-after above 0")
    with reaching_kafka(settings):
        report = asyncio.run(
            measure(
                client_kwargs(settings),
                group,
                names,
                samples=args.samples,
                interval_s=args.interval,
                stall_after_s=stall_after,
            )
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0 if report.status is Status.OK else 1
    print(
        f"group {group}  status {report.status}  members {report.members}  "
        f"total lag {report.total_lag}  max lag {report.max_lag_seconds:.1f}s  "
        f"(watched {report.observed_s:.1f}s; STALL after {stall_after:g}s without a commit)"
    )
    width = max([len(p.sample.topic) for p in report.partitions] + [5])
    print(
        f"{'topic':<{width}} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8} "
        f"{'lag_s':>9} {'still_s':>8}  status"
    )
    for p in report.partitions:
        s = p.sample
        committed = "-" if s.committed is None else str(s.committed)
        seconds = "-" if s.lag_seconds is None else f"{s.lag_seconds:.1f}"
        part = str(s.partition) if s.partition >= 0 else "-"
        still = f"{p.unmoved_s:.1f}" if s.lag else "-"
        line = (
            f"{s.topic:<{width}} {part:>4} {committed:>10} {s.end:>10} {s.lag:>8} "
            f"{seconds:>9} {still:>8}  {p.status}"
        )
        print(line + (f"  ({s.error})" if s.error else ""))
    return 0 if report.status is Status.OK else 1


# ------------------------------------------------------------------------------------ events

_SKIP = {"campaign_id", "actor", "schedule", "template_data", "values", "version", "from", "to"}


def _short(value: Any) -> str | None:
    """One field of an event as a few characters: money as `1100.00 EUR`, lists joined."""
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) == {"amount", "currency"}:
            return f"{value['amount']} {value['currency']}"
        return None
    if isinstance(value, list):
        items = [_short(v) for v in value]
        return ",".join(i for i in items if i) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def event_line(topic: str, event: dict[str, Any]) -> str:
    """One readable line: time, type, subject, then the data fields that say what happened."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    parts = []
    kind = str(event.get("type") or f"({topic})")
    transition = kind.endswith("status_changed") and isinstance(data.get("to"), str)
    if transition:
        parts.append(f"{data.get('from') or '-'} -> {data['to']}")
    for name, value in data.items():
        if name in _SKIP and (transition or name not in ("from", "to")):
            continue
        text = _short(value)
        if text is not None:
            parts.append(f"{name}={text}")
    when = str(event.get("time") or "-")
    subject = str(event.get("subject") or "-")
    return f"{when:<27} {kind:<34} {subject:<36} {' '.join(parts)}".rstrip()


def _matches(event: dict[str, Any], types: list[str] | None, subject: str | None) -> bool:
    if subject is not None and event.get("subject") != subject:
        return False
    if not types:
        return True
    kind = str(event.get("type") or "")
    return any(kind == t or (t.endswith("*") and kind.startswith(t[:-1])) for t in types)


def cmd_events_tail(args: argparse.Namespace) -> int:
    """Follow the outgoing topics; one line (or one JSON object) per event."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from campaign_worker.adapters.kafka_client import client_kwargs

    settings = load_settings()
    # campaign.state repeats every change as a whole state: followed only when asked for
    wanted = args.topic or [t for t in topics.OUTBOUND if t not in topics.COMPACTED]
    unknown = [t for t in wanted if t not in topics.OUTBOUND + topics.INBOUND]
    if unknown:
        raise CliError(
            f"unknown topic {unknown[0]!r}; the contract's topics: "
            + ", ".join(topics.OUTBOUND + topics.INBOUND)
        )
    physical = {settings.topic(t): t for t in wanted}

    async def follow() -> int:
        consumer = AIOKafkaConsumer(
            **client_kwargs(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="campaign-worker-events-tail",
        )
        try:
            await consumer.start()
            existing = await consumer.topics()
            missing = [t for t in physical if t not in existing]
            if len(missing) == len(physical):
                raise CliError(
                    f"none of the topics exists yet ({', '.join(missing)}): the worker creates "
                    "them when it starts",
                    EXIT_NOT_OK,
                )
            tps = [
                TopicPartition(t, p)
                for t in sorted(physical)
                if t in existing
                for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            consumer.assign(tps)
            if args.from_beginning:
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
            shown = 0
            loop = asyncio.get_running_loop()
            last = loop.time()
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                records = sorted(
                    (r for rs in batch.values() for r in rs), key=lambda r: r.timestamp
                )
                if records:
                    last = loop.time()
                for record in records:
                    try:
                        event = json.loads(record.value)
                    except (TypeError, ValueError):
                        event = {"type": None, "data": None}
                    if not isinstance(event, dict) or not _matches(event, args.type, args.subject):
                        continue
                    topic = physical.get(record.topic, record.topic)
                    if args.json:
                        print(json.dumps({"topic": topic, **event}), flush=True)
                    else:
                        print(event_line(topic, event), flush=True)
                    shown += 1
                    if args.count and shown >= args.count:
                        return 0
                if args.idle_exit is not None and loop.time() - last >= args.idle_exit:
                    return 0
        finally:
            await consumer.stop()

    with reaching_kafka(settings):
        try:
            return asyncio.run(follow())
        except KeyboardInterrupt:
            return 0


# ------------------------------------------------------------------------------------ dlq


def _text(raw: bytes | None) -> str:
    if raw is None:
        return "(none)"
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def _letter_json(letter: Any, *, full: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": letter.id,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "error_code": letter.error_code,
        "error_message": letter.error_message,
        "message_id": letter.message_id,
        "message_type": letter.message_type,
        "created_at": letter.created_at.isoformat(),
        "replayed_at": letter.replayed_at.isoformat() if letter.replayed_at else None,
    }
    if full:
        data["key"] = _text(letter.key) if letter.key is not None else None
        data["headers"] = [{"key": k, "value": _text(v)} for k, v in letter.headers]
        data["value"] = _text(letter.value)
        data["value_bytes"] = len(letter.value)
    return data


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from campaign_worker.adapters.db.dead_letters import list_dead_letters

    letters = _with_engine(
        load_settings(),
        lambda e: list_dead_letters(e, limit=args.limit, pending_only=args.pending),
    )
    if args.json:
        print(json.dumps([_letter_json(d, full=False) for d in letters], indent=2))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    print(f"{'id':>6}  {'when':<25} {'source':<32} {'code':<18} {'type':<28} replayed")
    for d in letters:
        source = f"{d.topic}[{d.partition}]@{d.offset}"
        print(
            f"{d.id:>6}  {d.created_at.isoformat(timespec='seconds'):<25} {source:<32} "
            f"{d.error_code:<18} {(d.message_type or '-'):<28} "
            f"{d.replayed_at.isoformat(timespec='seconds') if d.replayed_at else '-'}"
        )
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from campaign_worker.adapters.db.dead_letters import get_dead_letter

    letter = _with_engine(load_settings(), lambda e: get_dead_letter(e, args.id))
    if letter is None:
        raise CliError(f"dead letter {args.id} not found", EXIT_NOT_OK)
    data = _letter_json(letter, full=True)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for name, value in data.items():
        if name not in ("headers", "value"):
            print(f"{name:<14}{'-' if value is None else value}")
    print("headers")
    for h in data["headers"]:
        print(f"  {h['key']}: {h['value']}")
    print("value")
    print(data["value"])
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    import logging

    from campaign_worker.adapters.db.dead_letters import AlreadyReplayed, replay_dead_letter
    from campaign_worker.logs import log_context, setup_logging

    settings = load_settings()
    setup_logging(settings.log_level)
    try:
        letter = _with_engine(settings, lambda e: replay_dead_letter(e, args.id, force=args.force))
    except AlreadyReplayed as error:
        raise CliError(f"{error}; use --force to replay it again", EXIT_NOT_OK) from error
    if letter is None:
        raise CliError(f"dead letter {args.id} not found", EXIT_NOT_OK)
    with log_context(
        dead_letter_id=letter.id,
        message_id=letter.message_id,
        topic=letter.topic,
        error_code=letter.error_code,
    ):
        logging.getLogger("campaign_worker.dlq").info("dead letter queued for replay")
    print(
        f"dead letter {letter.id} queued for {settings.topic(letter.topic)} "
        f"({len(letter.value)} bytes); the worker's outbox relay publishes it"
    )
    return 0


# ------------------------------------------------------------------------------------ state


def cmd_state_republish(args: argparse.Namespace) -> int:
    """Write the current state of campaigns to campaign.state through the outbox."""
    from tqdm import tqdm

    from campaign_worker.adapters.db.republish import (
        Progress,
        republish_all,
        republish_campaigns,
    )

    if args.batch_size < 1:
        raise CliError("--batch-size must be at least 1")
    if args.restart and not args.all:
        raise CliError("--restart goes with --all")
    settings = load_settings()
    if args.campaign:
        ids = [uuid.UUID(campaign_id_arg(c)) for c in args.campaign]
        result = _with_engine(
            settings, lambda e: republish_campaigns(e, ids, batch_size=args.batch_size)
        )
        for missing in result.missing:
            print(f"campaign {missing} not found", file=sys.stderr)
        print(_republished(settings, result.written))
        return EXIT_NOT_OK if result.missing else 0

    # a bar on a terminal; plain lines (at most one per 2 s, and the last) anywhere else
    bar = tqdm(
        total=0,
        unit=" campaigns",
        desc="state republish",
        file=sys.stderr,
        disable=args.quiet or not sys.stderr.isatty(),
        mininterval=1.0,
    )
    last_line = [0.0]

    def progress(p: Progress) -> None:
        if not bar.disable:
            bar.total = p.total
            bar.n = p.written
            bar.set_postfix_str(f"after {p.last_id}" if p.last_id else "", refresh=False)
            bar.refresh()
            return
        now = time.monotonic()
        if args.quiet or (now - last_line[0] < 2.0 and p.written < p.total):
            return
        last_line[0] = now
        after = f" (after {p.last_id})" if p.last_id else ""
        print(f"state republish: {p.written}/{p.total} campaigns{after}", file=sys.stderr)

    try:
        result = _with_engine(
            settings,
            lambda e: republish_all(
                e, batch_size=args.batch_size, restart=args.restart, on_progress=progress
            ),
        )
    except KeyboardInterrupt:
        bar.close()
        print(
            "interrupted: the batches written so far are committed; run the same command "
            "again to go on after the last one (--restart starts over)",
            file=sys.stderr,
        )
        return 130
    bar.close()
    if result.resumed_from is not None:
        print(f"resumed after campaign {result.resumed_from} (an earlier run was interrupted)")
    print(_republished(settings, result.written))
    return 0


def _republished(settings: Settings, written: int) -> str:
    return (
        f"wrote the state of {written} campaign(s) to the outbox; the worker's relay "
        f"publishes them on {settings.topic(topics.STATE)}"
    )


EXAMPLE_CAMPAIGN = "6b1a0f8e-3c2d-4e5f-8a9b-0c1d2e3f4a5b"


def campaign_id_arg(text: str) -> str:
    """A campaign id given on the command line, in its canonical form."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise CliError(f"{text!r} is not a campaign id (a UUID, like {EXAMPLE_CAMPAIGN})") from None


# ------------------------------------------------------------------------------------ schemas


def project_schemas_dir() -> Path:
    """The repository's schemas/ (a source checkout or editable install), else ./schemas."""
    import campaign_worker

    checkout = Path(campaign_worker.__file__).resolve().parents[2] / "schemas"
    return checkout if checkout.is_dir() else Path("schemas")


def cmd_schemas(args: argparse.Namespace) -> int:
    from campaign_worker.entrypoints import schemas

    if args.write:
        written = schemas.write(Path(args.write))
        print(f"wrote {len(written)} files to {args.write}")
        return 0
    directory = Path(args.check) if args.check else project_schemas_dir()
    if not directory.is_dir():
        raise CliError(f"no schemas directory at {directory}: give --check DIR")
    problems = schemas.drift(directory)
    for p in problems:
        print(p)
    if problems:
        raise CliError(f"{directory} is out of date: run `make schemas`", EXIT_NOT_OK)
    print(f"{directory} matches the code")
    return 0


# ------------------------------------------------------------------------------------ parser


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the operator commands to the main parser's subcommands (`add` is cli's helper that
    gives every command the shared options)."""
    lag = add(
        sub,
        "lag",
        help="consumer lag per partition (offsets, lag, lag seconds, status)",
        description="Offsets, offset lag, lag seconds and a status per partition of a consumer "
        "group, on any cluster. Exit status 0 when the group is OK, 1 otherwise, 3 when Kafka "
        "cannot be reached. The status rules are in docs/operations.md.",
    )
    lag.add_argument("--bootstrap-servers", help="brokers (default: KAFKA_BOOTSTRAP_SERVERS)")
    lag.add_argument("--group", help="consumer group (default: CAMPAIGN_WORKER_GROUP_ID)")
    lag.add_argument("--topic-prefix", help="topic prefix (default: CAMPAIGN_WORKER_TOPIC_PREFIX)")
    lag.add_argument(
        "--topic", action="append", help="physical topic (repeatable); default: inbound topics"
    )
    lag.add_argument(
        "--samples",
        type=int,
        default=3,
        help="samples to take (default 3); a partition that looks stuck is watched longer",
    )
    lag.add_argument(
        "--interval", type=float, default=2.0, help="seconds between samples (default 2)"
    )
    lag.add_argument(
        "--stall-after",
        type=float,
        default=None,
        help="seconds without a commit, with messages waiting and members in the group, before "
        "a partition is STALL (default CAMPAIGN_WORKER_LAG_STALL_AFTER_S, 30)",
    )
    lag.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    lag.set_defaults(func=cmd_lag)

    events = add(sub, "events", help="what the worker published: follow the outgoing topics")
    events_sub = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    tail = add(
        events_sub,
        "tail",
        help="one line per outgoing event (time, type, subject, what matters), or JSON",
        description="Follows campaign.events, campaign.notifications, campaign.settlements and "
        "campaign.dlq (or the --topic ones) from now on, or from their beginning. Ctrl-C stops.",
    )
    tail.add_argument(
        "--topic",
        action="append",
        help="contract topic name (repeatable); default: the outgoing topics but campaign.state",
    )
    tail.add_argument(
        "--type",
        action="append",
        help="only this event type (repeatable; a trailing * matches a prefix: 'payment.*')",
    )
    tail.add_argument("--subject", help="only events about this campaign id")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest retained event"
    )
    tail.add_argument("--json", action="store_true", help="one CloudEvent JSON object per line")
    tail.add_argument("--count", type=int, help="stop after this many events")
    tail.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="stop when nothing new arrived for this many seconds (for scripts)",
    )
    tail.set_defaults(func=cmd_events_tail)

    dlq = add(sub, "dlq", help="dead letters: list, show, replay")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    ls = add(dlq_sub, "list", help="newest dead letters first")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls.add_argument("--pending", action="store_true", help="only those never replayed")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(func=cmd_dlq_list)
    show = add(dlq_sub, "show", help="one dead letter with its original bytes")
    show.add_argument("id", type=int, help="the dead letter's id (from `dlq list`)")
    show.add_argument("--json", action="store_true", help="JSON instead of text")
    show.set_defaults(func=cmd_dlq_show)
    replay = add(dlq_sub, "replay", help="re-publish the original record to its original topic")
    replay.add_argument("id", type=int, help="the dead letter's id (from `dlq list`)")
    replay.add_argument("--force", action="store_true", help="replay again after a first replay")
    replay.set_defaults(func=cmd_dlq_replay)

    state = add(sub, "state", help="the campaign.state topic: republish")
    state_sub = state.add_subparsers(dest="state_command", required=True, metavar="COMMAND")
    rep = add(
        state_sub,
        "republish",
        help="write the current state of campaigns to campaign.state (through the outbox)",
        description="Write the current state of the chosen campaigns as campaign.state "
        "records through the outbox (the running worker's relay publishes them): to fill a "
        "new or emptied state topic, or after a repair. In bounded batches, one transaction "
        "each; --all resumes an interrupted run after the last batch it committed.",
    )
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--campaign", action="append", metavar="ID", help="this campaign (repeatable)"
    )
    which.add_argument("--all", action="store_true", help="every campaign, in id order")
    rep.add_argument(
        "--batch-size",
        type=int,
        default=500,
        metavar="N",
        help="campaigns per transaction (default 500)",
    )
    rep.add_argument(
        "--restart", action="store_true", help="with --all: start over, not after the last run"
    )
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    rep.set_defaults(func=cmd_state_republish)

    sch = add(sub, "schemas", help="JSON Schemas and AsyncAPI document of the contract")
    mode = sch.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="DIR", help="rewrite the generated files in DIR")
    mode.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="DIR",
        help="fail when DIR differs from the code (default: the project's schemas/, "
        "from any directory)",
    )
    sch.set_defaults(func=cmd_schemas)
