"""Operator commands: `campaign-worker lag`, `dlq list|show|replay`, `schemas`.

Registered on the main parser by `cli.build_parser()` through `register(sub)`. Each reads
the same environment as the worker (Settings); flags override it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from campaign_worker import topics
from campaign_worker.config import Settings

T = TypeVar("T")


def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> T:
        engine = create_async_engine(settings.sqlalchemy_url, pool_size=1, max_overflow=0)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


# ------------------------------------------------------------------------------------ lag


def cmd_lag(args: argparse.Namespace) -> int:
    """Offsets, lag, lag seconds and status of a group, per partition, on any cluster."""
    from aiokafka.errors import KafkaError

    from campaign_worker.adapters.kafka_client import client_kwargs
    from campaign_worker.adapters.lag import Status, measure

    overrides: dict[str, Any] = {}
    if args.bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = args.bootstrap_servers
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    settings = Settings(**overrides)
    group = args.group or settings.group_id
    names = args.topic or [settings.topic(t) for t in topics.INBOUND]
    try:
        report = asyncio.run(
            measure(
                client_kwargs(settings),
                group,
                names,
                samples=args.samples,
                interval_s=args.interval,
            )
        )
    except KafkaError as error:
        print(f"cannot measure lag on {settings.kafka_bootstrap_servers}: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0 if report.status is Status.OK else 1
    print(
        f"group {group}  status {report.status}  members {report.members}  "
        f"total lag {report.total_lag}  max lag {report.max_lag_seconds:.1f}s  "
        f"({report.samples} sample(s), window {report.window}"
        + (f", {args.interval:g}s apart)" if report.samples > 1 else ": STALL/STOP/WARN need >= 2)")
    )
    width = max([len(p.sample.topic) for p in report.partitions] + [5])
    print(
        f"{'topic':<{width}} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8} "
        f"{'lag_s':>9}  status"
    )
    for p in report.partitions:
        s = p.sample
        committed = "-" if s.committed is None else str(s.committed)
        seconds = "-" if s.lag_seconds is None else f"{s.lag_seconds:.1f}"
        part = str(s.partition) if s.partition >= 0 else "-"
        line = (
            f"{s.topic:<{width}} {part:>4} {committed:>10} {s.end:>10} {s.lag:>8} "
            f"{seconds:>9}  {p.status}"
        )
        print(line + (f"  ({s.error})" if s.error else ""))
    return 0 if report.status is Status.OK else 1


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
        Settings(),
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

    letter = _with_engine(Settings(), lambda e: get_dead_letter(e, args.id))
    if letter is None:
        print(f"dead letter {args.id} not found", file=sys.stderr)
        return 1
    data = _letter_json(letter, full=True)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for name, value in data.items():
        if name not in ("headers", "value"):
            print(f"{name:<14}{value}")
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

    settings = Settings()
    setup_logging(settings.log_level)
    try:
        letter = _with_engine(settings, lambda e: replay_dead_letter(e, args.id, force=args.force))
    except AlreadyReplayed as error:
        print(f"{error}; use --force to replay it again", file=sys.stderr)
        return 1
    if letter is None:
        print(f"dead letter {args.id} not found", file=sys.stderr)
        return 1
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


# ------------------------------------------------------------------------------------ schemas


def cmd_schemas(args: argparse.Namespace) -> int:
    from campaign_worker.entrypoints import schemas

    if args.write:
        written = schemas.write(Path(args.write))
        print(f"wrote {len(written)} files to {args.write}")
        return 0
    problems = schemas.drift(Path(args.check))
    for p in problems:
        print(p)
    if problems:
        print(f"{args.check} is out of date: run `make schemas`", file=sys.stderr)
        return 1
    print(f"{args.check} matches the code")
    return 0


# ------------------------------------------------------------------------------------ parser


def register(sub: Any) -> None:
    """Add the operator commands to the main parser's subcommands."""
    lag = sub.add_parser(
        "lag",
        help="consumer lag per partition (offsets, lag, lag seconds, status)",
        description="Exit status 0 when the group is OK, 1 otherwise, 2 when Kafka cannot be "
        "reached. Status rules: adapters/lag.py and the README.",
    )
    lag.add_argument("--bootstrap-servers", help="default: KAFKA_BOOTSTRAP_SERVERS")
    lag.add_argument("--group", help="default: CAMPAIGN_WORKER_GROUP_ID")
    lag.add_argument("--topic-prefix", help="default: CAMPAIGN_WORKER_TOPIC_PREFIX")
    lag.add_argument(
        "--topic", action="append", help="physical topic (repeatable); default: inbound topics"
    )
    lag.add_argument("--samples", type=int, default=3, help="samples in the window (default 3)")
    lag.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    lag.add_argument("--json", action="store_true")
    lag.set_defaults(func=cmd_lag)

    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    ls = dlq_sub.add_parser("list", help="newest dead letters first")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--pending", action="store_true", help="only those never replayed")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_dlq_list)
    show = dlq_sub.add_parser("show", help="one dead letter with its original bytes")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_dlq_show)
    replay = dlq_sub.add_parser(
        "replay", help="re-publish the original record to its original topic, once"
    )
    replay.add_argument("id", type=int)
    replay.add_argument("--force", action="store_true", help="replay again")
    replay.set_defaults(func=cmd_dlq_replay)

    sch = sub.add_parser("schemas", help="JSON Schemas and AsyncAPI document of the contract")
    mode = sch.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="DIR", help="rewrite the generated files in DIR")
    mode.add_argument(
        "--check", metavar="DIR", default="schemas", help="fail when DIR differs (default)"
    )
    sch.set_defaults(func=cmd_schemas)
