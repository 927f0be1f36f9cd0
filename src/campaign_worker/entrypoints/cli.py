"""`campaign-worker ...`: run, dev, migrate, campaign show, publish."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from campaign_worker.config import Settings
from campaign_worker.entrypoints import cli_ops
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
    settings = Settings()
    setup_logging(settings.log_level)
    return asyncio.run(_serve(settings, migrate=not args.no_migrate))


def cmd_migrate(args: argparse.Namespace) -> int:
    from campaign_worker.adapters.db.migrate import upgrade_sync

    settings = Settings()
    setup_logging(settings.log_level)
    upgrade_sync(settings.sqlalchemy_url, args.revision)
    print(f"database migrated to {args.revision}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Zero-install run: embedded Postgres, the Tansu broker and an SMTP sink, unless the
    environment names real ones."""
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
    try:
        if "DATABASE_URL" in os.environ:
            lines.append(f"  postgres : {os.environ['DATABASE_URL']} (from DATABASE_URL)")
        else:
            pg = devservices.start_embedded_postgres(data_dir / "postgres")
            handles.append(pg)
            overrides["database_url"] = pg.url
            lines.append(f"  postgres : {pg.url} (embedded, data in {data_dir / 'postgres'})")
        if "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
            lines.append(f"  kafka    : {os.environ['KAFKA_BOOTSTRAP_SERVERS']} (from env)")
        else:
            kafka = devservices.start_tansu(data_dir / "tansu")
            handles.append(kafka)
            overrides["kafka_bootstrap_servers"] = kafka.bootstrap_servers
            overrides["kafka_idempotent_producer"] = False  # Tansu lacks InitProducerId
            overrides["topic_replication_factor"] = 1
            lines.append(f"  kafka    : {kafka.bootstrap_servers} (Tansu dev broker, in memory)")
        if "SMTP_HOST" in os.environ:
            lines.append(f"  smtp     : {os.environ['SMTP_HOST']} (from SMTP_HOST)")
        else:
            sink = devservices.start_smtp_sink(data_dir / "mail")
            handles.append(sink)
            overrides["smtp_host"], overrides["smtp_port"] = sink.host, sink.port
            lines.append(
                f"  smtp     : {sink.host}:{sink.port} (sink: emails saved in {sink.maildir})"
            )
        if "CAMPAIGN_WORKER_HTTP_PORT" not in os.environ:
            overrides["http_port"] = args.http_port
        settings = Settings(**overrides)
        cli = _cli_path()
        lines += [
            f"  http     : http://127.0.0.1:{settings.http_port}/metrics  /healthz  /readyz",
            "",
            "Try next (in another terminal, with the same environment):",
            f"  export KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}"
            f" DATABASE_URL={settings.database_url}",
            f"  {cli} publish campaign.catalog --example product",
            f"  {cli} publish campaign.commands --example create",
            f"  {cli} campaign show {EXAMPLE_CAMPAIGN}",
            f"  {cli} lag        # consumer lag per partition",
            f"  {cli} dlq list   # dead letters",
            "Stop with Ctrl-C.",
            "",
        ]
        return asyncio.run(_serve(settings, migrate=True, banner="\n".join(lines)))
    finally:
        for handle in reversed(handles):
            handle.stop()


EXAMPLE_CAMPAIGN = "6b1a0f8e-3c2d-4e5f-8a9b-0c1d2e3f4a5b"
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
    "create": {
        "specversion": "1.0",
        "type": "campaign.create",
        "source": "/cli",
        "subject": EXAMPLE_CAMPAIGN,
        "actorrole": "advertiser",
        "actorid": "adv-42",
        "data": {
            "advertiser_id": "adv-42",
            "title": "Winter sale",
            "ad_product_id": "prod-banner",
            "budget": {"amount": "1000.00", "currency": "EUR"},
            "billing_type": "manual",
            "start_at": "2030-01-01T00:00:00Z",
            "end_at": "2030-02-01T00:00:00Z",
            "contact": {"name": "Ada", "email": "ada@example.com"},
        },
    },
}


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish one message (a JSON file, inline JSON or a built-in example) to a topic."""
    import uuid

    from aiokafka import AIOKafkaProducer

    from campaign_worker.adapters.kafka_client import client_kwargs

    settings = Settings()
    if args.example:
        payload: Any = dict(EXAMPLES[args.example], id=str(uuid.uuid4()))
        raw = json.dumps(payload).encode()
    elif args.json == "-":
        raw = sys.stdin.buffer.read()
    elif args.json and Path(args.json).is_file():
        raw = Path(args.json).read_bytes()
    elif args.json:
        raw = args.json.encode()
    else:
        print("give JSON (inline, a file or -) or --example", file=sys.stderr)
        return 2
    key = args.key
    if key is None:
        try:
            key = json.loads(raw).get("subject")
        except (ValueError, AttributeError):
            key = None

    async def send() -> None:
        producer = AIOKafkaProducer(**client_kwargs(settings))
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                settings.topic(args.topic),
                raw,
                key=key.encode() if key else None,
                headers=[("content-type", b"application/cloudevents+json")],
            )
            print(f"published to {meta.topic}[{meta.partition}] at offset {meta.offset}")
        finally:
            await producer.stop()

    asyncio.run(send())
    return 0


def cmd_campaign_show(args: argparse.Namespace) -> int:
    from campaign_worker.adapters.db.queries import campaign_report

    settings = Settings()
    report = asyncio.run(campaign_report(settings, args.campaign_id))
    if report is None:
        print(f"campaign {args.campaign_id} not found", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    c = report["campaign"]
    print(f"Campaign {c['id']}  {c['title']!r}")
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
            print(f"  {name:<17}{c[name]}")
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
            note = "" if e["billable"] else f" (not billable: {e['reason']})"
            print(
                f"  {e['at']!s:<32} {e['kind']:<8} {e['amount']:>14} {e['currency']} "
                f"{e['ref']}{note}  <- {e['message_id']}"
            )
    for r in report["refunds"]:
        if r["status"] != "succeeded":
            print(
                f"  refund {r['refund_id']}: {r['status']} {r['amount']}"
                f" ({r.get('last_error') or 'awaiting confirmation'})"
            )
    if report["statement"]:
        _print_statement(report["statement"])
    print("\nHistory (oldest first):")
    print(f"  {'ver':>3}  {'when':<32} {'who':<24} {'what':<40} caused by")
    for h in report["history"]:
        who = h["actor_role"] + (f":{h['actor_id']}" if h["actor_id"] else "")
        if h["kind"] == "status_changed":
            what = f"{h['from_status']} -> {h['to_status']} ({h['trigger']})"
        elif h["kind"] == "created":
            what = f"created as {h['to_status']}"
        elif h["kind"] == "updated":
            what = "updated " + ", ".join(sorted(h["details"].get("changes", {})))
        elif h["kind"] == "creative":
            what = f"creative {h['details'].get('creative_id')}: {h['details'].get('status')}"
        elif h["kind"] == "holds_changed":
            d = h["details"]
            what = f"holds +{d.get('added')} -{d.get('removed')}"
        else:
            what = h["kind"]
        print(
            f"  {h['version']:>3}  {h['occurred_at']!s:<32} {who:<24} {what:<40} "
            f"{h['message_type']} {h['message_id']}"
        )
    return 0


DIAGRAM_BEGIN = "<!-- state-diagram:begin -->"
DIAGRAM_END = "<!-- state-diagram:end -->"


def render_readme(text: str) -> str:
    """The README with its generated state diagram replaced by the current table's."""
    from campaign_worker.domain.lifecycle import state_diagram_mermaid

    head, _, rest = text.partition(DIAGRAM_BEGIN)
    _, _, tail = rest.partition(DIAGRAM_END)
    block = f"{DIAGRAM_BEGIN}\n```mermaid\n{state_diagram_mermaid().rstrip()}\n```\n{DIAGRAM_END}"
    return head + block + tail


def cmd_docs(args: argparse.Namespace) -> int:
    path = Path(args.write)
    path.write_text(render_readme(path.read_text()))
    print(f"rewrote the generated parts of {path}")
    return 0


def default_dev_dir() -> str:
    """Postgres refuses to run as root, so devservices runs it as `nobody`, who cannot
    enter root's home: as root the dev data lives under /var/tmp instead."""
    if os.geteuid() == 0:
        return "/var/tmp/campaign-worker/dev"
    return os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "campaign-worker", "dev")


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
    from campaign_worker.adapters.db.queries import campaign_report

    report = asyncio.run(campaign_report(Settings(), args.campaign_id))
    if report is None or report["statement"] is None:
        print(f"no statement for campaign {args.campaign_id}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report["statement"], indent=2))
    else:
        _print_statement(report["statement"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campaign-worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="consumers, outbox relay and HTTP server (migrates first)")
    run.add_argument("--no-migrate", action="store_true", help="do not migrate the schema")
    run.set_defaults(func=cmd_run)

    dev = sub.add_parser("dev", help="run on embedded Postgres, Tansu and an SMTP sink")
    dev.add_argument(
        "--data-dir",
        default=default_dev_dir(),
        help="where embedded Postgres keeps its data and the SMTP sink its emails "
        "(as root: a folder the unprivileged Postgres user can reach)",
    )
    dev.add_argument("--http-port", type=int, default=8080)
    dev.set_defaults(func=cmd_dev)

    mig = sub.add_parser("migrate", help="migrate the database schema and exit")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=cmd_migrate)

    pub = sub.add_parser("publish", help="publish one message to a topic (contract name)")
    pub.add_argument("topic")
    pub.add_argument("json", nargs="?", help="inline JSON, a file, or - for stdin")
    pub.add_argument("--example", choices=sorted(EXAMPLES))
    pub.add_argument("--key")
    pub.set_defaults(func=cmd_publish)

    camp = sub.add_parser("campaign", help="read campaigns")
    camp_sub = camp.add_subparsers(dest="campaign_command", required=True)
    show = camp_sub.add_parser("show", help="current state and history of one campaign")
    show.add_argument("campaign_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_campaign_show)
    st = camp_sub.add_parser("statement", help="the settlement statement of one campaign")
    st.add_argument("campaign_id")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_campaign_statement)
    docs = sub.add_parser("docs", help="rewrite generated README parts (state diagram)")
    docs.add_argument("--write", default="README.md")
    docs.set_defaults(func=cmd_docs)
    cli_ops.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
