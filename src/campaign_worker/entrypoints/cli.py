"""`campaign-worker ...`: run the worker (or its dev mode), publish commands, read campaigns,
follow what it publishes, and operate it (lag, dead letters, contract files)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from campaign_worker import topics
from campaign_worker.config import Settings
from campaign_worker.entrypoints import cli_ops
from campaign_worker.entrypoints.cli_ops import (
    EXAMPLE_CAMPAIGN,
    EXIT_NOT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    campaign_id_arg,
    default_dev_dir,
    load_settings,
    reaching_database,
    reaching_kafka,
)
from campaign_worker.logs import setup_logging

log = logging.getLogger("campaign_worker")


async def _serve(settings: Settings, *, migrate: bool, banner: str | None = None) -> int:
    from campaign_worker.bootstrap import build_worker

    worker = build_worker(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start(migrate=migrate)
    except BaseException:
        await worker.stop()
        raise
    if banner:
        print(banner, flush=True)
    await stop.wait()
    log.info("stop signal received: draining")
    await worker.stop()
    return 0


def _cli_path() -> str:
    """How to call this CLI from another terminal (the venv's script, not just the name)."""
    script = Path(sys.executable).with_name("campaign-worker")
    return str(script) if script.exists() else "campaign-worker"


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(dev=False)
    setup_logging(settings.log_level)
    return asyncio.run(_serve(settings, migrate=not args.no_migrate))


def cmd_migrate(args: argparse.Namespace) -> int:
    from campaign_worker.adapters.db.migrate import upgrade_sync

    settings = load_settings(dev=False)
    setup_logging(settings.log_level)
    with reaching_database(settings):
        upgrade_sync(settings.sqlalchemy_url, args.revision, settings.postgres_connect_args)
    print(f"database migrated to {args.revision}")
    return 0


PORTS_FILE = "ports.json"


def dev_ports(data_dir: Path) -> dict[str, int]:
    """The dev services' ports, chosen once and kept with the dev data, so that a restart
    keeps every address (a port another program took since is replaced)."""
    from campaign_worker.dev.services import free_port, port_is_free

    path = data_dir / PORTS_FILE
    try:
        stored = {k: int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        stored = {}
    ports = {}
    for name in ("postgres", "kafka", "smtp"):
        port = stored.get(name)
        ports[name] = port if port and port_is_free(port) else free_port()
    if ports != stored:
        path.write_text(json.dumps(ports, indent=2) + "\n")
    return ports


def _step(text: str) -> None:
    print(f"  ... {text}", file=sys.stderr, flush=True)


def cmd_dev(args: argparse.Namespace) -> int:
    """Zero-install run: embedded Postgres, the Tansu broker and an SMTP sink, unless the
    environment names real ones."""
    import importlib
    import threading
    import time

    from campaign_worker.dev import services as devservices

    data_dir = Path(args.data_dir).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # Postgres runs as `nobody` and must be able to pass through
        data_dir.chmod(data_dir.stat().st_mode | 0o011)
    overrides: dict[str, Any] = {}
    handles: list[Any] = []
    lines = ["", "campaign-worker (dev mode) is running", ""]
    setup_logging(os.environ.get("CAMPAIGN_WORKER_LOG_LEVEL", "INFO"))
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    ports = dev_ports(data_dir)
    began = time.monotonic()
    # The worker's imports (FastStream, SQLAlchemy, ...) take seconds on a busy machine: do
    # them while the servers start, which is mostly waiting for other processes.
    importing = threading.Thread(
        target=importlib.import_module, args=("campaign_worker.bootstrap",), daemon=True
    )
    importing.start()
    try:
        if "DATABASE_URL" in os.environ:
            given = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", os.environ["DATABASE_URL"])
            lines.append(f"  postgres : {given} (from DATABASE_URL)")
        else:
            _step(f"starting Postgres on 127.0.0.1:{ports['postgres']} (data in {data_dir})")
            pg = devservices.start_embedded_postgres(data_dir / "postgres", ports["postgres"])
            handles.append(pg)
            overrides["database_url"] = pg.url
            lines.append(f"  postgres : {pg.url} (embedded, data in {data_dir / 'postgres'})")
        if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
            lines.append(f"  kafka    : {os.environ['KAFKA_BOOTSTRAP_SERVERS']} (from env)")
        else:
            _step(f"starting the Tansu broker on 127.0.0.1:{ports['kafka']}")
            kafka = devservices.start_tansu(data_dir / "tansu", ports["kafka"])
            handles.append(kafka)
            overrides["kafka_bootstrap_servers"] = kafka.bootstrap_servers
            overrides["kafka_idempotent_producer"] = False  # Tansu lacks InitProducerId
            overrides["topic_replication_factor"] = 1
            lines.append(f"  kafka    : {kafka.bootstrap_servers} (Tansu dev broker, in memory)")
        if "SMTP_HOST" in os.environ:
            lines.append(f"  smtp     : {os.environ['SMTP_HOST']} (from SMTP_HOST)")
        else:
            _step(f"starting the SMTP sink on 127.0.0.1:{ports['smtp']}")
            sink = devservices.start_smtp_sink(data_dir / "mail", ports["smtp"])
            handles.append(sink)
            overrides["smtp_host"], overrides["smtp_port"] = sink.host, sink.port
            lines.append(
                f"  smtp     : {sink.host}:{sink.port} (sink: emails saved in {sink.maildir})"
            )
        if "CAMPAIGN_WORKER_HTTP_PORT" not in os.environ:
            overrides["http_port"] = args.http_port
        settings = Settings(**overrides)
        env_file = cli_ops.write_dev_env(
            data_dir,
            {
                "DATABASE_URL": settings.database_url,
                "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "CAMPAIGN_WORKER_TOPIC_PREFIX": settings.topic_prefix,
                "CAMPAIGN_WORKER_GROUP_ID": settings.group_id,
            },
        )
        cli = _cli_path()
        same_dir = Path(default_dev_dir()).expanduser().resolve() == data_dir.resolve()
        lines += [
            f"  http     : http://127.0.0.1:{settings.http_port}/metrics  /healthz  /readyz",
            f"  settings : {env_file} (the CLI reads it by itself; the ports stay the same "
            "from one start to the next)",
            "",
            "Try next, in another terminal:",
        ]
        if not same_dir:
            lines.append(f"  export CAMPAIGN_WORKER_DEV_DIR={data_dir}")
        lines += [
            f"  {cli} publish campaign.catalog --example product",
            f"  {cli} publish campaign.commands --example create",
            f"  {cli} campaign show {EXAMPLE_CAMPAIGN}",
            f"  {cli} events tail   # what the worker publishes, one line per event",
            f"  {cli} lag           # consumer lag per partition",
            f"  {cli} dlq list      # dead letters",
            "Stop with Ctrl-C.",
            "",
        ]
        importing.join()
        _step(f"services up in {time.monotonic() - began:.1f}s; migrating and starting the worker")
        return asyncio.run(_serve(settings, migrate=True, banner="\n".join(lines)))
    finally:
        for handle in reversed(handles):
            handle.stop()


def _command(type_: str, role: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "type": type_,
        "source": "/cli",
        "subject": EXAMPLE_CAMPAIGN,
        "actorrole": role,
    }
    if role == "advertiser":
        event["actorid"] = "adv-42"
    if data is not None:
        event["data"] = data
    return event


_CREATE_DATA: dict[str, Any] = {
    "advertiser_id": "adv-42",
    "title": "Winter sale",
    "ad_product_id": "prod-banner",
    "budget": {"amount": "1000.00", "currency": "EUR"},
    "billing_type": "manual",
    "start_at": "2030-01-01T00:00:00Z",
    "end_at": "2030-02-01T00:00:00Z",
    "contact": {"name": "Ada", "email": "ada@example.com"},
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "product": {
        "specversion": "1.0",
        "type": "catalog.ad_product_upserted",
        "source": "/cli",
        "subject": "prod-banner",
        "actorrole": "publisher",
        "data": {
            "ad_product_id": "prod-banner",
            "name": "Homepage banner",
            "unit_ids": ["unit-728x90"],
            "unit_set_valid": True,
            "buyable": True,
        },
    },
    "create": _command("campaign.create", "advertiser", _CREATE_DATA),
    "create-card": _command(
        "campaign.create", "advertiser", {**_CREATE_DATA, "billing_type": "card"}
    ),
    "submit": _command("campaign.submit", "advertiser"),
    "approve": _command("review.campaign_approved", "publisher"),
    "creative": _command(
        "creative.create",
        "advertiser",
        {
            "creative_id": "cr-1",
            "name": "Banner A",
            "ad_unit_id": "unit-728x90",
            "content": {
                "file_url": "https://cdn.example.com/banner.png",
                "destination_url": "https://shop.example.com/sale",
                "text": "50% off this week",
            },
        },
    ),
    "approve-creative": _command("review.creative_approved", "publisher", {"creative_id": "cr-1"}),
    "delivery": _command(
        "delivery.reported",
        "system",
        {
            "period_start": "2030-01-01T00:00:00Z",
            "period_end": "2030-01-02T00:00:00Z",
            "impressions": 1000,
            "clicks": 12,
            "spend": {"amount": "120.00", "currency": "EUR"},
        },
    ),
    # the ad server has reported every period of a closed campaign: its statement is due now
    "final": _command("delivery.final", "system"),
}
"""Built-in messages for `publish --example NAME`; `--subject` sets the campaign."""


def _type_topic(type_: str) -> str:
    from campaign_worker.entrypoints.messages import INBOUND_TYPES

    return INBOUND_TYPES[type_].topic


EXAMPLE_TOPICS = {name: _type_topic(e["type"]) for name, e in EXAMPLES.items()}


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[", '"') or text.strip() in ("null", "true", "false")


def _read_payload(args: argparse.Namespace) -> bytes:
    """The message bytes from --example, stdin, a file or inline JSON."""
    if args.example:
        event: dict[str, Any] = json.loads(json.dumps(EXAMPLES[args.example]))
        if args.subject:
            event["subject"] = args.subject
        data = event.get("data") or {}
        now = datetime.now(UTC).replace(microsecond=0)
        if args.starts_in is not None:
            start = now + timedelta(seconds=args.starts_in)
            end = start + timedelta(seconds=args.runs_for)
            for first, last in (("start_at", "end_at"), ("period_start", "period_end")):
                if first in data:
                    data[first] = start.isoformat().replace("+00:00", "Z")
                    data[last] = end.isoformat().replace("+00:00", "Z")
        return json.dumps(event).encode()
    if args.json is None:
        raise CliError("give the message as inline JSON, a file, - for stdin, or --example NAME")
    if args.json == "-":
        stdin: bytes = sys.stdin.buffer.read()
        return stdin
    text = str(args.json)
    if _looks_like_json(text):
        return text.encode()
    path = Path(text)
    if not path.is_file():
        raise CliError(f"no such file: {args.json} (give inline JSON, a file, or -)")
    try:
        return path.read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {args.json}: {error.strerror}") from error


def _complete(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """Parse the message and add what a person typing it need not: `id` and `specversion`."""
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise CliError(f"the message is not JSON: {error}") from error
    if not isinstance(event, dict):
        raise CliError(f"the message must be a JSON object, got {type(event).__name__}")
    added = {k: v for k, v in (("id", str(uuid.uuid4())), ("specversion", "1.0")) if k not in event}
    if added:
        event = {**added, **event}
        raw = json.dumps(event).encode()
    return raw, event


def _validation_errors(error: Any) -> str:
    parts = []
    for e in error.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def validation_problem(topic: str, event: dict[str, Any]) -> str | None:
    """Why the worker would dead-letter this message on `topic` (its own models), or None."""
    from pydantic import ValidationError

    from campaign_worker.entrypoints.messages import INBOUND_TYPES, CloudEvent, parse_subject

    try:
        envelope = CloudEvent.model_validate(event)
    except ValidationError as error:
        return f"not a valid CloudEvent: {_validation_errors(error)}"
    spec = INBOUND_TYPES.get(envelope.type)
    if spec is None:
        kinds = sorted(t for t, s in INBOUND_TYPES.items() if s.topic == topic)
        return f"unknown type {envelope.type!r}; {topic} takes: {', '.join(kinds)}"
    if spec.topic != topic:
        return f"type {envelope.type!r} belongs on {spec.topic}, not {topic}"
    try:
        spec.data.model_validate(envelope.data or {})
    except ValidationError as error:
        return f"invalid data for {envelope.type}: {_validation_errors(error)}"
    if spec.campaign_scoped:
        if envelope.actorrole is None:
            return "actorrole is required for campaign messages (advertiser, publisher, system)"
        try:
            parse_subject(envelope.subject)
        except ValueError as error:
            return str(error)
    return None


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish one message (a JSON file, inline JSON or a built-in example) to a topic."""
    from aiokafka import AIOKafkaProducer

    from campaign_worker.adapters.kafka_client import client_kwargs

    contract = topics.INBOUND + topics.OUTBOUND
    if args.topic not in contract:
        raise CliError(
            f"unknown topic {args.topic!r}; the contract's topics: {', '.join(contract)}"
        )
    settings = load_settings()
    raw, event = _complete(_read_payload(args))
    key = args.key if args.key is not None else event.get("subject")
    if key is not None and not isinstance(key, str):
        key = json.dumps(key)
    if not args.no_validate and args.topic in topics.INBOUND:
        if len(raw) > settings.max_message_bytes:
            raise CliError(
                f"the message has {len(raw)} bytes, more than the worker reads "
                f"(CAMPAIGN_WORKER_MAX_MESSAGE_BYTES={settings.max_message_bytes})"
            )
        if problem := validation_problem(args.topic, event):
            raise CliError(
                f"the worker would dead-letter this message: {problem} "
                "(--no-validate sends it anyway)"
            )

    async def send() -> None:
        producer = AIOKafkaProducer(**client_kwargs(settings))
        try:
            await producer.start()
            meta = await producer.send_and_wait(
                settings.topic(args.topic),
                raw,
                key=key.encode() if key else None,
                headers=[("content-type", b"application/cloudevents+json")],
            )
            print(
                f"published {event.get('type')} {event.get('id')} to "
                f"{meta.topic}[{meta.partition}] at offset {meta.offset}"
            )
        finally:
            await producer.stop()

    with reaching_kafka(settings):
        asyncio.run(send())
    return 0


def _report(campaign_id: str) -> dict[str, Any]:
    from campaign_worker.adapters.db.queries import campaign_report

    cid = campaign_id_arg(campaign_id)
    settings = load_settings()
    with reaching_database(settings):
        report = asyncio.run(campaign_report(settings, cid))
    if report is None:
        raise CliError(f"campaign {cid} not found", EXIT_NOT_OK)
    return report


def _text(value: Any) -> str:
    """A value for a person: money as `1100.00 EUR`, lists joined, never a Python repr."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        if set(value) == {"amount", "currency"}:
            return f"{value['amount']} {value['currency']}"
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _confirm_command(campaign_id: str, charge: dict[str, Any]) -> str:
    message = {
        "type": "payment.charge_succeeded",
        "source": "/cli",
        "subject": campaign_id,
        "actorrole": "system",
        "data": {"charge_id": charge["charge_id"], "amount": charge["amount"]},
    }
    return f"{_cli_path()} publish campaign.payments '{json.dumps(message)}'"


def _history_what(h: dict[str, Any]) -> str:
    d = h.get("details") or {}
    if h["kind"] == "status_changed":
        return f"{h['from_status']} -> {h['to_status']} ({h['trigger']})"
    if h["kind"] == "created":
        return f"created as {h['to_status']}"
    if h["kind"] == "updated":
        return "updated " + ", ".join(sorted(d.get("changes", {})))
    if h["kind"] == "creative":
        return f"creative {_text(d.get('creative_id'))}: {_text(d.get('status'))}"
    if h["kind"] == "holds_changed":
        return f"holds +{_text(d.get('added'))} -{_text(d.get('removed'))}"
    return str(h["kind"])


def cmd_campaign_show(args: argparse.Namespace) -> int:
    report = _report(args.campaign_id)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    c = report["campaign"]
    print(f'Campaign {c["id"]}  "{c["title"]}"')
    for name in (
        "status",
        "display_status",
        "advertiser_id",
        "ad_product_id",
        "billing_type",
        "budget",
        "start_at",
        "end_at",
        "timezone",
        "version",
        "paused_from",
        "rejection_reason",
        "cancel_reason",
        "penalty",
    ):
        if c.get(name) is not None:
            print(f"  {name:<17}{_text(c[name])}")
    waiting = report["waiting_for"]
    if waiting["charge"] or waiting["next_due"] or waiting["statement"] or waiting["refunds"]:
        print("\nWaiting for:")
        if charge := waiting["charge"]:
            print(
                f"  card charge {charge['charge_id']} of {_text(charge['amount'])} to be "
                "confirmed (payment.charge_succeeded); in dev:"
            )
            print(f"    {_confirm_command(c['id'], charge)}")
        if due := waiting["next_due"]:
            print(f"  {due['trigger']} at {due['at']} (the scheduler applies it)")
        if pending := waiting["statement"]:
            print(
                f"  the statement: at {pending['due_at']} at the latest, or when the ad server "
                "sends delivery.final (in dev: publish campaign.delivery --example final)"
            )
        for r in waiting["refunds"]:
            state = r["last_error"] or "awaiting payment.refund_succeeded"
            print(f"  refund {r['refund_id']} of {_text(r['amount'])}: {r['status']} ({state})")
    sv = report["serving"]
    print(f"\nServing: {'yes' if sv['serving'] else 'no'} ({sv['display_status']})")
    for reason in sv["why_not_serving"]:
        print(f"  - {reason}")
    if sv["suspension_reason"]:
        print(f"  suspended because: {sv['suspension_reason']}")
    if report["creatives"]:
        print("\nCreatives:")
        for cr in report["creatives"]:
            gone = " (deleted)" if cr["deleted"] else ""
            print(f"  {cr['id']:<24} {cr['status']:<13} {cr['ad_unit_id']:<16} {cr['name']}{gone}")
    if report["ledger"]:
        print("\nLedger (every money movement):")
        for e in report["ledger"]:
            note = "" if e["billable"] else f" (not billable: {_text(e['reason'])})"
            print(
                f"  {e['at']!s:<32} {e['kind']:<8} {e['amount']:>14} {e['currency']} "
                f"{_text(e['ref'])}{note}  <- {e['message_id']}"
            )
    if report["statement"]:
        _print_statement(report["statement"])
    print("\nHistory (oldest first):")
    print(f"  {'ver':>3}  {'when':<32} {'who':<24} {'what':<40} caused by")
    for h in report["history"]:
        who = h["actor_role"] + (f":{h['actor_id']}" if h["actor_id"] else "")
        print(
            f"  {h['version']:>3}  {h['occurred_at']!s:<32} {who:<24} {_history_what(h):<40} "
            f"{h['message_type']} {h['message_id']}"
        )
    return 0


DIAGRAM_BEGIN = "<!-- state-diagram:begin -->"
DIAGRAM_END = "<!-- state-diagram:end -->"
EXAMPLES_BEGIN = "<!-- message-examples:begin -->"
EXAMPLES_END = "<!-- message-examples:end -->"


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text:
        return text
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}{end}{tail}"


def render_readme(text: str) -> str:
    """A markdown file with its generated parts (the state diagram, the message examples)
    replaced by what the code says now; a file without the markers is returned as it is."""
    from campaign_worker.domain.lifecycle import state_diagram_mermaid

    text = _replace_block(
        text, DIAGRAM_BEGIN, DIAGRAM_END, f"```mermaid\n{state_diagram_mermaid().rstrip()}\n```\n"
    )
    return _replace_block(text, EXAMPLES_BEGIN, EXAMPLES_END, message_examples_markdown())


def _example_value(node: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
    """A value for one JSON Schema node: its first example, else a plausible placeholder."""
    if "$ref" in node:
        return _example_value(defs[node["$ref"].rsplit("/", 1)[-1]], defs, name)
    if node.get("examples"):
        return node["examples"][0]
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if o.get("type") != "null"]
            return _example_value(options[0], defs, name) if options else None
    if "allOf" in node:
        return _example_value(node["allOf"][0], defs, name)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        required = set(node.get("required", []))
        return {
            k: _example_value(v, defs, k)
            for k, v in node.get("properties", {}).items()
            if k in required or "examples" in v
        }
    if kind == "array":
        return [_example_value(node.get("items", {}), defs, name)]
    if kind == "string":
        if node.get("format") == "date-time" or name.endswith("_at"):
            return "2030-01-01T00:00:00Z"
        if node.get("format") == "uuid" or "{12}" in node.get("pattern", ""):
            return EXAMPLE_CAMPAIGN
        return f"{name.replace('_', '-')}-1" if name.endswith("id") else name or "text"
    if kind == "integer":
        return max(1, int(node.get("minimum", 1)))
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    return None


_HAND_WRITTEN: dict[str, dict[str, Any]] = {
    # where a model's own validators need values that belong together
    "campaign.update": {"title": "Winter sale, extended", "budget": _CREATE_DATA["budget"]},
    "creative.update": {"creative_id": "cr-1", "name": "Banner A, blue"},
}


def message_example(type_: str) -> dict[str, Any]:
    """The `data` of one message type: the CLI's example where there is one, else built from
    the model's JSON Schema (its examples first); always valid for the model."""
    from campaign_worker.entrypoints.messages import INBOUND_TYPES
    from campaign_worker.entrypoints.messages_out import OUTBOUND_TYPES

    spec = INBOUND_TYPES.get(type_) or OUTBOUND_TYPES[type_]
    cli_example = next((e for e in EXAMPLES.values() if e["type"] == type_), None)
    if type_ in _HAND_WRITTEN:
        data = _HAND_WRITTEN[type_]
    elif cli_example is not None:
        data = cli_example.get("data") or {}
    else:
        schema = spec.data.model_json_schema(by_alias=True, mode="validation")
        data = _example_value(schema, schema.get("$defs", {}))
    spec.data.model_validate(data)  # a wrong example fails `make docs` and the docs test
    return dict(data)


def message_examples_markdown() -> str:
    """One example per message type, by topic, for docs/contract.md."""
    from campaign_worker.entrypoints.messages import INBOUND_TYPES
    from campaign_worker.entrypoints.messages_out import OUTBOUND_TYPES

    lines = [
        "<!-- generated by `make docs` from the message models; do not edit by hand -->",
        "",
    ]
    for direction, table in (("Incoming", INBOUND_TYPES), ("Outgoing", OUTBOUND_TYPES)):
        for topic in topics.INBOUND if direction == "Incoming" else topics.OUTBOUND:
            kinds = [t for t, spec in table.items() if spec.topic == topic]
            if not kinds:
                continue
            lines += [f"#### {direction}: `{topic}`", ""]
            for type_ in kinds:
                doc = " ".join((table[type_].data.__doc__ or "").split())
                doc = re.sub(r"^`[^`]+`(\s*/\s*`[^`]+`)*(\s*\([^)]*\))?:\s*", "", doc)
                if doc.startswith("`"):  # only the list of types it serves
                    doc = ""
                example = {"type": type_, "data": message_example(type_)}
                lines += [f"`{type_}`: {doc}" if doc else f"`{type_}`", "", "```json"]
                lines += [json.dumps(example, indent=2), "```", ""]
    return "\n".join(lines)


def cmd_docs(args: argparse.Namespace) -> int:
    for name in args.write:
        path = Path(name)
        if not path.is_file():
            raise CliError(f"no such file: {path}")
        path.write_text(render_readme(path.read_text()))
        print(f"rewrote the generated parts of {path}")
    return 0


def _print_statement(st: dict[str, Any]) -> None:
    print(f"\nStatement {st['statement_id']} ({st['billing_type']}, tax rate {st['tax_rate']}):")
    for label, key in (
        ("Booked amount", "booked"),
        ("Spent amount", "spent"),
        ("Penalty", "penalty"),
        ("Tax", "tax"),
        ("Refund amount", "refund"),
        ("Final settlement", "final"),
    ):
        money = st[key]
        print(f"  {label:<18}{money['amount']:>14} {money['currency']}")


def cmd_campaign_statement(args: argparse.Namespace) -> int:
    report = _report(args.campaign_id)
    if report["statement"] is None:
        raise CliError(f"campaign {args.campaign_id} has no statement yet", EXIT_NOT_OK)
    if args.json:
        print(json.dumps(report["statement"], indent=2))
    else:
        _print_statement(report["statement"])
    return 0


# ------------------------------------------------------------------------------------ parser


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one error style: one line, exit 2, a pointer to --help."""

    def error(self, message: str) -> NoReturn:
        print(
            f"campaign-worker: error: {message} (see: {self.prog} --help)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)


_COMMON = argparse.ArgumentParser(add_help=False)
_COMMON.add_argument(
    "--debug",
    action="store_true",
    default=argparse.SUPPRESS,
    help="show the traceback of an error instead of one line",
)


def add_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand with the shared options; its description defaults to its help line."""
    kwargs.setdefault("description", kwargs.get("help"))
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[_COMMON], **kwargs)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("campaign-worker")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _publish_epilog() -> str:
    width = max(len(n) for n in EXAMPLES)
    lines = [
        "topics (contract names; the worker reads the first six):",
        *(f"  {t}" for t in topics.INBOUND + topics.OUTBOUND),
        "",
        "examples (--example NAME; --subject sets the campaign id):",
        *(
            f"  {n:<{width}}  {e['type']} on {EXAMPLE_TOPICS[n]}"
            for n, e in sorted(EXAMPLES.items())
        ),
        "",
        "The message is validated with the worker's own models before it is sent; a message it",
        "would dead-letter is refused (--no-validate sends it anyway). `id` (a new UUID) and",
        "`specversion` are added when missing; the key is the subject unless --key.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="campaign-worker", description=__doc__)
    parser.add_argument("--version", action="version", version=f"campaign-worker {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error instead of one line"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add: Callable[..., argparse.ArgumentParser] = add_command

    run = add(
        sub, "run", help="the worker: consumers, outbox relay, scheduler, HTTP (migrates first)"
    )
    run.add_argument("--no-migrate", action="store_true", help="do not migrate the schema")
    run.set_defaults(func=cmd_run)

    dev = add(
        sub,
        "dev",
        help="the worker on embedded Postgres, the Tansu broker and an SMTP sink (`make run`)",
    )
    dev.add_argument(
        "--data-dir",
        default=default_dev_dir(),
        help="where embedded Postgres keeps its data, the SMTP sink its emails and the dev "
        "mode its ports and settings file (default: CAMPAIGN_WORKER_DEV_DIR or %(default)s)",
    )
    dev.add_argument(
        "--http-port", type=int, default=8080, help="port of /metrics, /healthz, /readyz"
    )
    dev.set_defaults(func=cmd_dev)

    mig = add(sub, "migrate", help="migrate the database schema and exit")
    mig.add_argument("revision", nargs="?", default="head", help="Alembic revision (default head)")
    mig.set_defaults(func=cmd_migrate)

    pub = add(
        sub,
        "publish",
        help="publish one message to a topic, validated first",
        epilog=_publish_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pub.add_argument("topic", metavar="TOPIC", help="contract topic name (listed below)")
    pub.add_argument(
        "json", nargs="?", metavar="JSON|FILE|-", help="inline JSON, a file, or - for stdin"
    )
    pub.add_argument("--example", choices=sorted(EXAMPLES), help="a built-in message (below)")
    pub.add_argument("--subject", help="with --example: the campaign id (its subject and key)")
    pub.add_argument(
        "--starts-in",
        type=float,
        metavar="SECONDS",
        help="with --example create*/delivery: the campaign (or the delivery period) starts "
        "that many seconds from now (negative: ago; write --starts-in=-60)",
    )
    pub.add_argument(
        "--runs-for",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --starts-in: the campaign's (or the period's) length (default 120)",
    )
    pub.add_argument("--key", help="record key (default: the message's subject)")
    pub.add_argument(
        "--no-validate", action="store_true", help="send even what the worker would refuse"
    )
    pub.set_defaults(func=cmd_publish)

    camp = add(sub, "campaign", help="read campaigns: show, statement")
    camp_sub = camp.add_subparsers(dest="campaign_command", required=True, metavar="COMMAND")
    show = add(
        camp_sub,
        "show",
        help="state, what it waits for, serving, creatives, ledger and history of a campaign",
    )
    show.add_argument("campaign_id", metavar="ID", help="the campaign id (UUID)")
    show.add_argument("--json", action="store_true", help="the whole report as JSON")
    show.set_defaults(func=cmd_campaign_show)
    st = add(camp_sub, "statement", help="the settlement statement of one campaign")
    st.add_argument("campaign_id", metavar="ID", help="the campaign id (UUID)")
    st.add_argument("--json", action="store_true", help="the statement document as JSON")
    st.set_defaults(func=cmd_campaign_statement)
    docs = add(
        sub,
        "docs",
        help="rewrite the generated parts of the README and docs/ (state diagram, examples)",
    )
    docs.add_argument(
        "--write", nargs="+", default=["README.md"], metavar="FILE", help="files to rewrite"
    )
    docs.set_defaults(func=cmd_docs)
    cli_ops.register(sub, add)
    return parser


def _unexpected(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every error is one line on stderr and a non-zero exit (--debug: the
    traceback)."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if args.command not in ("run", "dev"):
        # client commands report a broker or database that does not answer themselves, in
        # one line; the clients' own retry chatter would only repeat it
        logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
        if not debug:
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return int(args.func(args))
    except CliError as error:
        if debug:
            raise
        print(f"campaign-worker: error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if debug:
            raise
        print(
            f"campaign-worker: error: {_unexpected(error)} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE if isinstance(error, OSError) else EXIT_NOT_OK


if __name__ == "__main__":
    sys.exit(main())
