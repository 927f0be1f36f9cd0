"""Pure helpers of the benchmark: percentiles, /proc parsing, the command mix, the summary line.

Nothing here talks to a server, so tests/unit/test_bench_helpers.py can check it in
milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PRODUCT = "prod-banner"
ADVERTISER = "adv-1"
PUBLISHER = "pub-1"

# Contract topic of each command type the bench sends.
TOPIC_OF = {
    "campaign.create": "campaign.commands",
    "campaign.submit": "campaign.commands",
    "campaign.pause": "campaign.commands",
    "campaign.resume": "campaign.commands",
    "review.campaign_approved": "campaign.reviews",
    "delivery.reported": "campaign.delivery",
    "catalog.ad_product_upserted": "campaign.catalog",
}

# The outcome each command of the mix must produce on campaign.events (by causationid).
OUTCOME_OF = {
    "campaign.create": "campaign.status_changed",
    "campaign.submit": "campaign.status_changed",
    "campaign.pause": "campaign.status_changed",
    "campaign.resume": "campaign.status_changed",
    "review.campaign_approved": "campaign.status_changed",
    "delivery.reported": "delivery.recorded",
}

ACTOR_OF = {
    "campaign.create": ("advertiser", ADVERTISER),
    "campaign.submit": ("advertiser", ADVERTISER),
    "campaign.pause": ("advertiser", ADVERTISER),
    "campaign.resume": ("advertiser", ADVERTISER),
    "review.campaign_approved": ("publisher", PUBLISHER),
    "delivery.reported": ("system", "delivery"),
    "catalog.ad_product_upserted": ("publisher", PUBLISHER),
}


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (the
    same as numpy's default); NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


# --------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------


def parse_proc_stat_cpu(text: str, clock_ticks: int) -> float:
    """utime + stime of a /proc/PID/stat line, in seconds. The command name (field 2) is in
    parentheses and may itself hold spaces and parentheses, so fields are counted from the
    last ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / clock_ticks


def parse_proc_status_kib(text: str, key: str) -> int:
    """A "Key:   1234 kB" value of /proc/PID/status, in KiB."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            number, _, unit = value.strip().partition(" ")
            if unit and unit != "kB":
                raise ValueError(f"{key} is in {unit!r}, not kB")
            return int(number)
    raise KeyError(f"{key} is not in /proc/PID/status")


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        return parse_proc_stat_cpu(f.read(), os.sysconf("SC_CLK_TCK"))


def process_peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return parse_proc_status_kib(f.read(), "VmHWM") / 1024


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    id: str
    type: str
    campaign_id: str
    topic: str  # contract name, without prefix
    value: bytes

    @property
    def key(self) -> bytes:
        return self.campaign_id.encode()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def command(type_: str, campaign_id: str, data: Mapping[str, Any] | None = None) -> Command:
    """One CloudEvent command of the contract, serialised once (producing must be cheap)."""
    role, actor = ACTOR_OF[type_]
    message_id = str(uuid.uuid4())
    event = {
        "specversion": "1.0",
        "id": message_id,
        "source": "/bench",
        "type": type_,
        "subject": campaign_id,
        "time": iso(datetime.now(UTC)),
        "datacontenttype": "application/json",
        "actorrole": role,
        "actorid": actor,
        "data": dict(data or {}),
    }
    return Command(message_id, type_, campaign_id, TOPIC_OF[type_], json.dumps(event).encode())


def product_command() -> Command:
    return command(
        "catalog.ad_product_upserted",
        PRODUCT,
        {
            "ad_product_id": PRODUCT,
            "name": "Homepage banner",
            "unit_ids": ["unit-728x90"],
            "unit_set_valid": True,
            "buyable": True,
        },
    )


def create_data(now: datetime | None = None) -> dict[str, Any]:
    """A manual-billing campaign starting in 30 days (no scheduler event during a run)."""
    now = now or datetime.now(UTC)
    return {
        "advertiser_id": ADVERTISER,
        "title": "Winter sale",
        "ad_product_id": PRODUCT,
        "budget": {"amount": "1000.00", "currency": "EUR"},
        "billing_type": "manual",
        "start_at": iso(now + timedelta(days=30)),
        "end_at": iso(now + timedelta(days=60)),
        "contact": {"name": "Ada", "email": "ada@example.com"},
    }


def delivery_data(now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {
        "period_start": iso(now - timedelta(hours=1)),
        "period_end": iso(now),
        "impressions": 1000,
        "clicks": 10,
        "spend": {"amount": "1.00", "currency": "EUR"},
    }


@dataclass
class MixPlan:
    """Commands in production order, and the campaigns that must exist before they run.

    A unit is six commands on three campaigns: a new campaign A is created and submitted;
    a SUBMITTED campaign C is approved; a BOOKED campaign B is paused, resumed and gets a
    delivery report. The worker reads its topics concurrently, so a campaign's commands
    that travel on different topics have no order between them; every sequence here is
    therefore valid in any interleaving of topics: A's and B's lifecycle commands share
    campaign.commands (keyed by campaign, so one partition keeps their order), C's approval
    is its only command, and B's delivery report is valid whether B is BOOKED or PAUSED.
    """

    commands: list[Command] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)  # campaigns to set up as SUBMITTED
    booked: list[str] = field(default_factory=list)  # campaigns to set up as BOOKED

    def ids(self) -> list[str]:
        return [c.id for c in self.commands]


MIX_TYPES = (
    "campaign.create",
    "campaign.submit",
    "review.campaign_approved",
    "campaign.pause",
    "campaign.resume",
    "delivery.reported",
)


def mix_plan(units: int, now: datetime | None = None) -> MixPlan:
    now = now or datetime.now(UTC)
    plan = MixPlan()
    created, delivered = create_data(now), delivery_data(now)
    for _ in range(units):
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        plan.submitted.append(c)
        plan.booked.append(b)
        plan.commands += [
            command("campaign.create", a, created),
            command("campaign.submit", a),
            command("review.campaign_approved", c),
            command("campaign.pause", b),
            command("campaign.resume", b),
            command("delivery.reported", b, delivered),
        ]
    return plan


def creates_plan(n: int, now: datetime | None = None) -> MixPlan:
    data = create_data(now)
    return MixPlan(commands=[command("campaign.create", str(uuid.uuid4()), data) for _ in range(n)])


def units_for(messages: float) -> int:
    """Whole mix units (six commands each) for about `messages` commands, at least one."""
    return max(1, round(messages / len(MIX_TYPES)))


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


# `--state-compare`: the mix again with the worker publishing no `campaign.state` records.
MIX_NO_STATE = "mix_no_state"
PUBLISH_STATE_ENV = "CAMPAIGN_WORKER_PUBLISH_STATE"


def state_figures(
    with_state: tuple[float, float], without_state: tuple[float, float]
) -> dict[str, float]:
    """The figures of `--state-compare` from (rate per s, worker CPU us per command) of the
    mix with and without the `campaign.state` record: both, and what the record costs."""
    return {
        "mix_with_state_per_s": with_state[0],
        "mix_with_state_cpu_us_per_cmd": with_state[1],
        "mix_no_state_per_s": without_state[0],
        "mix_no_state_cpu_us_per_cmd": without_state[1],
        "state_record_cpu_us_per_cmd": with_state[1] - without_state[1],
    }


# `--workers N`: the mix again on N processes of one consumer group.
MIX_WORKERS = "mix_workers"


def workers_figures(
    one: tuple[float, float], group: tuple[float, float], shares: Sequence[float]
) -> dict[str, float]:
    """The figures of `--workers N` from (rate per s, worker CPU us per command) of one
    worker and of the group, and each process's share of the commands processed."""
    fig = {
        "mix_workers_per_s": group[0],
        "mix_workers_cpu_us_per_cmd": group[1],
        "workers_speedup": group[0] / one[0],
    }
    if shares:
        fig["workers_share_min"] = min(shares)
        fig["workers_share_max"] = max(shares)
    return fig


def metric_sum(exposition: str, name: str) -> float:
    """The sum of every sample of one metric in Prometheus text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[-1])
    return total


def summary_line(fig: Mapping[str, float | None]) -> str:
    """`bench: mix N/s, cpu X us/cmd, create N/s, naive N/s, ratio R, p99@1000 N ms,
    due100k N s, rss N MB`; a figure not measured in this run prints as '-'."""
    return (
        f"bench: mix {_fmt(fig.get('mix_per_s'))}/s, "
        f"cpu {_fmt(fig.get('mix_cpu_us_per_cmd'))} us/cmd, "
        f"create {_fmt(fig.get('create_per_s'))}/s, "
        f"naive {_fmt(fig.get('naive_per_s'))}/s, "
        f"ratio {_fmt(fig.get('ratio'), 1)}, "
        f"p99@1000 {_fmt(fig.get('p99_at_1000_ms'))} ms, "
        f"due100k {_fmt(fig.get('due_s'))} s, "
        f"rss {_fmt(fig.get('rss_mb'))} MB"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        pairs = enumerate(zip(r, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
