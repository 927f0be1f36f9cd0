"""The README's walk-through, with the CLI only: `campaign-worker dev` on its embedded
services, and every step a `campaign-worker ...` subprocess, as a person in a second terminal
would type it (no exported addresses: the CLI reads the file the dev mode writes).

A card campaign goes from create to statement: create, submit, read the pending charge from
`campaign show --json`, confirm it, approve, register and approve a creative, LIVE at its
start, a delivery report, CLOSED at its end, the statement; `events tail --json` shows the
same story. Then the dev mode restarts on the same ports and the second terminal still works.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from campaign_worker.dev.services import free_port

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "campaign_worker.entrypoints.cli"]
BANNER = "campaign-worker (dev mode) is running"


class Dev:
    """`campaign-worker dev` as a subprocess, its output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.out: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None

    def start(self, timeout: float = 120) -> None:
        self.out.clear()
        self.proc = subprocess.Popen(
            [*CLI, "dev", "--http-port", str(free_port())],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self.reader.start()
        deadline = time.monotonic() + timeout
        while BANNER not in "".join(self.out):
            if self.proc.poll() is not None:
                raise AssertionError(f"dev exited with {self.proc.returncode}:\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no banner within {timeout}s:\n{self.text}")
            time.sleep(0.2)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.out.append(line)

    @property
    def text(self) -> str:
        return "".join(self.out)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture
def dev_env() -> Iterator[dict[str, str]]:
    # Not tmp_path: as root, Postgres runs as `nobody`, which cannot enter pytest's 0700 base.
    data = Path(tempfile.mkdtemp(prefix="campaign-worker-walk-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_HOST")
        and not k.startswith("CAMPAIGN_WORKER_")
    }
    env["CAMPAIGN_WORKER_DEV_DIR"] = str(data)
    yield env
    shutil.rmtree(data, ignore_errors=True)


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result


def show(env: dict[str, str], campaign: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(cli(env, "campaign", "show", campaign, "--json").stdout)
    return report


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if value := check():
                return value
        except (AssertionError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_a_card_campaign_from_create_to_statement_with_the_cli_alone(
    dev_env: dict[str, str],
) -> None:
    dev = Dev(dev_env)
    dev.start()
    try:
        campaign = str(uuid.uuid4())
        env = dev_env
        cli(env, "publish", "campaign.catalog", "--example", "product")
        cli(
            env,
            *("publish", "campaign.commands", "--example", "create-card", "--subject", campaign),
            *("--starts-in", "25", "--runs-for", "20"),
        )
        cli(env, "publish", "campaign.commands", "--example", "submit", "--subject", campaign)

        # the pending card charge, read from `campaign show --json`
        charge = until(
            lambda: show(env, campaign)["waiting_for"]["charge"], "the charge request", 30
        )
        assert charge["amount"] == {"amount": "1100.00", "currency": "EUR"}  # budget + 10 % tax
        human = cli(env, "campaign", "show", campaign).stdout
        assert f"card charge {charge['charge_id']} of 1100.00 EUR to be confirmed" in human
        confirm = {
            "type": "payment.charge_succeeded",
            "source": "/cli",
            "subject": campaign,
            "actorrole": "system",
            "data": {"charge_id": charge["charge_id"], "amount": charge["amount"]},
        }
        assert f"publish campaign.payments '{json.dumps(confirm)}'" in human
        cli(env, "publish", "campaign.payments", json.dumps(confirm))
        cli(env, "publish", "campaign.reviews", "--example", "approve", "--subject", campaign)
        cli(env, "publish", "campaign.commands", "--example", "creative", "--subject", campaign)
        cli(
            env,
            *("publish", "campaign.reviews", "--example", "approve-creative"),
            *("--subject", campaign),
        )
        booked = until(
            lambda: (
                (r := show(env, campaign))["campaign"]["status"] == "BOOKED"
                and r["creatives"][0]["status"] == "APPROVED"
                and r["waiting_for"]["charge"] is None
                and r
            ),
            "BOOKED with an approved creative",
        )
        assert booked["waiting_for"]["next_due"]["trigger"] == "start"

        live = until(
            lambda: (r := show(env, campaign))["campaign"]["status"] == "LIVE" and r, "LIVE"
        )
        assert live["serving"]["serving"] is True
        assert live["waiting_for"]["next_due"]["trigger"] == "end"
        time.sleep(3)  # a delivery period wholly inside LIVE: all of its spend is billable
        cli(
            env,
            *("publish", "campaign.delivery", "--example", "delivery", "--subject", campaign),
            "--starts-in=-2",
            "--runs-for",
            "2",
        )
        until(lambda: show(env, campaign)["ledger"][-1]["kind"] == "spend", "the delivery")
        ended = until(
            lambda: (r := show(env, campaign))["campaign"]["status"] == "CLOSED" and r, "CLOSED"
        )
        assert ended["waiting_for"]["statement"]["or_when"] == "delivery.final"
        # the ad server's last word: the statement waits for it (or the settlement grace)
        cli(env, *("publish", "campaign.delivery", "--example", "final", "--subject", campaign))

        closed = until(
            lambda: (r := show(env, campaign))["statement"] is not None and r, "the statement"
        )
        assert closed["campaign"]["status"] == "CLOSED"
        st = closed["statement"]
        assert st["booked"] == {"amount": "1000.00", "currency": "EUR"}
        assert st["spent"] == {"amount": "120.00", "currency": "EUR"}
        assert st["tax"] == {"amount": "12.00", "currency": "EUR"}
        assert st["final"] == {"amount": "132.00", "currency": "EUR"}
        statement = cli(env, "campaign", "statement", campaign).stdout
        assert "Final settlement          132.00 EUR" in statement
        assert "0000 EUR" not in cli(env, "campaign", "show", campaign).stdout  # minor units
        refund = closed["waiting_for"]["refunds"][0]
        assert refund["amount"] == st["refund"] and refund["status"] == "requested"

        # `events tail --json` tells the same story
        tail = cli(
            env,
            *("events", "tail", "--json", "--from-beginning", "--subject", campaign),
            *("--idle-exit", "3"),
        )
        events = [json.loads(line) for line in tail.stdout.splitlines()]
        statuses = [e["data"]["to"] for e in events if e["type"] == "campaign.status_changed"]
        assert statuses == ["DRAFT", "SUBMITTED", "BOOKED", "LIVE", "CLOSED"]
        kinds = {e["type"] for e in events}
        assert {
            "payment.charge_requested",
            "creative.status_changed",
            "delivery.recorded",
            "settlement.statement_issued",
            "payment.refund_requested",
            "notification.requested",
        } <= kinds
        (issued,) = [e for e in events if e["type"] == "settlement.statement_issued"]
        assert issued["data"]["statement_id"] == st["statement_id"]
        assert all(e["subject"] == campaign for e in events)
        readable = cli(
            env,
            *("events", "tail", "--from-beginning", "--subject", campaign),
            *("--type", "campaign.status_changed", "--idle-exit", "3"),
        ).stdout.splitlines()
        assert [line.split()[1] for line in readable] == ["campaign.status_changed"] * 5
        assert "LIVE -> CLOSED" in readable[-1]
        assert "None" not in "".join(readable) and "{'" not in "".join(readable)

        # a restart keeps the ports, and the second terminal keeps working without an export
        ports = (Path(env["CAMPAIGN_WORKER_DEV_DIR"]) / "ports.json").read_text()
        first_banner = dev.text
        dev.stop()
        down = cli(env, "campaign", "show", campaign, check=False)
        assert down.returncode == 3 and "cannot reach Postgres" in down.stderr
        dev.start()
        assert (Path(env["CAMPAIGN_WORKER_DEV_DIR"]) / "ports.json").read_text() == ports
        kafka = json.loads(ports)["kafka"]
        assert f"kafka    : 127.0.0.1:{kafka} " in first_banner
        assert f"kafka    : 127.0.0.1:{kafka} " in dev.text
        assert show(env, campaign)["campaign"]["status"] == "CLOSED"
        assert "Traceback" not in first_banner + dev.text
        assert " ERROR " not in first_banner + dev.text
        assert "\x1b[" not in first_banner + dev.text
    finally:
        dev.stop()
