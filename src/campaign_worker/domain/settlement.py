"""Money (spec §5, §6, §7): charges, spend, budget and relevance, refunds and the statement.

Pure rules, in the campaign currency (`Money`, `Decimal`, never floats), tax computed on totals
and rounded half-up to the currency's minor unit:

- `tax_on`, `charge_amount`: a card charge on submit is the budget plus its tax.
- `REFUND_TABLE` (spec §5) and `refund_amount`: what a status change refunds.
- `compute_statement` (spec §6) from a `Ledger`; `statement_due`: exactly once per campaign,
  after CLOSED, or at CANCELLED after anything was charged, spent or fined. A closed
  campaign's statement waits for the ad server's final report (`delivery.final`) or the
  settlement grace (`MoneyRules.settlement_grace` after the close), whichever comes first
  (`SettlementScheduled`, then `settle`); a cancellation settles at once.
- `split_spend` (spec §7): billable vs non-billable spend (with reasons), from the periods the
  campaign was actually LIVE (`LiveInterval`s, derived by `live_intervals` from its status
  history), capped at the budget; `relevance` (against the campaign's peers) and
  `is_low_relevance` (the absolute floor).

The money side of one campaign is an `Account` (ledger, charge requests, refunds, delivery
totals, the pending settlement, the statement), changed decide/evolve-style like the
lifecycle: the functions `on_status_changed`, `settle`, `record_charge`, `retry_charge`,
`record_delivery`, `record_refund_result` and `retry_refund` return events (or raise
`Refusal`), and `evolve_account` applies them.
Charge, refund and statement ids are derived deterministically (uuid5 of the campaign id), so a
redelivered message yields the same ids.

Holds are not set here: a `SpendRecorded` says when the budget was reached, and the service
turns that (and charge results) into `serving.HoldSignal`s. Low relevance is not a hold: the
service stops the campaign (lifecycle T13) when `relevance` says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import TypeAlias, assert_never
from uuid import UUID, uuid5

from campaign_worker.domain.checks import aware_utc
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.events import CampaignStatusChanged
from campaign_worker.domain.ledger import EntryKind, Ledger, LedgerEntry, NonBillableReason
from campaign_worker.domain.model import TERMINAL, Actor, BillingType, Campaign, Status
from campaign_worker.domain.money import Money
from campaign_worker.domain.permissions import check

__all__ = [
    "DEFAULT_RELEVANCE_MIN_CTR",
    "DEFAULT_RELEVANCE_MIN_IMPRESSIONS",
    "DEFAULT_RELEVANCE_MIN_PEERS",
    "DEFAULT_RELEVANCE_PEER_RATIO",
    "DEFAULT_RULES",
    "DEFAULT_SETTLEMENT_GRACE",
    "DEFAULT_TAX_RATE",
    "REFUND_TABLE",
    "Account",
    "ChargeRecorded",
    "ChargeRequest",
    "ChargeRequested",
    "DeliveryReport",
    "LiveInterval",
    "MoneyEvent",
    "MoneyRules",
    "NonBillable",
    "PenaltyRecorded",
    "Refund",
    "RefundBasis",
    "RefundFailed",
    "RefundReason",
    "RefundRequested",
    "RefundRetried",
    "RefundStatus",
    "RefundSucceeded",
    "Relevance",
    "SettlementScheduled",
    "SpendRecorded",
    "SpendSplit",
    "Statement",
    "StatementIssued",
    "apply_account",
    "charge_amount",
    "compute_statement",
    "evolve_account",
    "is_low_relevance",
    "live_intervals",
    "live_share",
    "on_status_changed",
    "penalty_maximum",
    "record_charge",
    "record_delivery",
    "record_refund_result",
    "refund_amount",
    "refund_reason",
    "relevance",
    "retry_charge",
    "retry_refund",
    "settle",
    "split_spend",
    "statement_due",
    "tax_on",
]

DEFAULT_TAX_RATE = Decimal("0.10")
DEFAULT_RELEVANCE_MIN_IMPRESSIONS = 10_000
DEFAULT_RELEVANCE_MIN_CTR = Decimal("0.001")  # 0.1 %
DEFAULT_RELEVANCE_PEER_RATIO = Decimal("0.25")
DEFAULT_RELEVANCE_MIN_PEERS = 5  # fewer peers than this: the absolute floor applies
DEFAULT_SETTLEMENT_GRACE = timedelta(seconds=3600)


@dataclass(frozen=True)
class MoneyRules:
    """The configurable numbers (per publisher). Invalid values are caller bugs: ValueError.

    `settlement_grace`: how long a closed campaign's statement waits for the ad server's
    `delivery.final` (zero: issued at the close)."""

    tax_rate: Decimal = DEFAULT_TAX_RATE
    relevance_min_impressions: int = DEFAULT_RELEVANCE_MIN_IMPRESSIONS
    relevance_min_ctr: Decimal = DEFAULT_RELEVANCE_MIN_CTR
    relevance_peer_ratio: Decimal = DEFAULT_RELEVANCE_PEER_RATIO
    relevance_min_peers: int = DEFAULT_RELEVANCE_MIN_PEERS
    settlement_grace: timedelta = DEFAULT_SETTLEMENT_GRACE

    def __post_init__(self) -> None:
        _check_rate("tax_rate", self.tax_rate)
        _check_rate("relevance_min_ctr", self.relevance_min_ctr)
        _check_rate("relevance_peer_ratio", self.relevance_peer_ratio)
        for name in ("relevance_min_impressions", "relevance_min_peers"):
            n = getattr(self, name)
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {n!r}")
        grace = self.settlement_grace
        if not isinstance(grace, timedelta) or grace < timedelta(0):
            raise ValueError(f"settlement_grace must be a timedelta >= 0, not {grace!r}")


def _check_rate(name: str, rate: Decimal) -> None:
    if not isinstance(rate, Decimal) or not rate.is_finite() or not 0 <= rate <= 1:
        raise ValueError(f"{name} must be a Decimal between 0 and 1, not {rate!r}")


DEFAULT_RULES = MoneyRules()

# ---------------------------------------------------------------------------------------------
# Tax and charges
# ---------------------------------------------------------------------------------------------


def tax_on(amount: Money, rate: Decimal) -> Money:
    """Tax on a total, rounded half-up to the currency's minor unit."""
    _check_rate("tax rate", rate)
    return Money(amount.amount * rate, amount.currency).quantize()


def charge_amount(budget: Money, rate: Decimal) -> Money:
    """What a card campaign is charged on submit (T1/T4): the budget plus tax on it."""
    return (budget + tax_on(budget, rate)).quantize()


# ---------------------------------------------------------------------------------------------
# Refunds (spec §5)
# ---------------------------------------------------------------------------------------------


class RefundReason(StrEnum):
    """The cases of the spec's refund table (the `reason` of `payment.refund_requested`)."""

    REVIEW_REJECTED = "review_rejected"  # T3
    CANCELLED_BEFORE_APPROVAL = "cancelled_before_approval"  # T10 (SUBMITTED: full charge)
    CANCELLED_AFTER_APPROVAL = "cancelled_after_approval"  # T11 (publisher)
    CLOSED = "closed"  # T6, T7
    LATE_CHARGE = "late_charge"  # a charge confirmed after rejection/cancel/close, or stale


class RefundBasis(StrEnum):
    NOTHING = "nothing"
    FULL_CHARGE = "full_charge"  # everything still held of the charges
    UNUSED_BUDGET = "unused_budget"  # held - (spent + penalty + tax): unused budget and its tax
    THAT_CHARGE = "that_charge"  # exactly the charge just confirmed


_C, _M = BillingType.CARD, BillingType.MANUAL
REFUND_TABLE = MappingProxyType(
    {
        (RefundReason.REVIEW_REJECTED, _C): RefundBasis.FULL_CHARGE,
        (RefundReason.CANCELLED_BEFORE_APPROVAL, _C): RefundBasis.FULL_CHARGE,
        (RefundReason.CANCELLED_AFTER_APPROVAL, _C): RefundBasis.UNUSED_BUDGET,
        (RefundReason.CLOSED, _C): RefundBasis.UNUSED_BUDGET,
        (RefundReason.LATE_CHARGE, _C): RefundBasis.THAT_CHARGE,
        # manual: never; only actual spend is billed.
        (RefundReason.REVIEW_REJECTED, _M): RefundBasis.NOTHING,
        (RefundReason.CANCELLED_BEFORE_APPROVAL, _M): RefundBasis.NOTHING,
        (RefundReason.CANCELLED_AFTER_APPROVAL, _M): RefundBasis.NOTHING,
        (RefundReason.CLOSED, _M): RefundBasis.NOTHING,
        # A card charge confirmed after the campaign switched to manual billing (edited while
        # REJECTED) is still returned: the worker never keeps money it did not ask for.
        (RefundReason.LATE_CHARGE, _M): RefundBasis.THAT_CHARGE,
    }
)

_BEFORE_APPROVAL = frozenset({Status.DRAFT, Status.SUBMITTED, Status.REJECTED})
_CHARGE_KEEPING = frozenset({Status.SUBMITTED, Status.BOOKED, Status.LIVE, Status.PAUSED})


def refund_reason(from_status: Status, to_status: Status) -> RefundReason | None:
    """The refund-table case a status change is, if any."""
    if to_status is Status.REJECTED:
        return RefundReason.REVIEW_REJECTED
    if to_status is Status.CLOSED:
        return RefundReason.CLOSED
    if to_status is Status.CANCELLED:
        if from_status in _BEFORE_APPROVAL:
            return RefundReason.CANCELLED_BEFORE_APPROVAL
        return RefundReason.CANCELLED_AFTER_APPROVAL
    return None


def refund_amount(
    reason: RefundReason, billing_type: BillingType, ledger: Ledger, rate: Decimal
) -> Money:
    """What to refund now for `reason` (never negative), given the ledger as settled (with the
    penalty entry, if any). Earlier refunds are deducted: the result is what is still due."""
    basis = REFUND_TABLE[(reason, billing_type)]
    zero = Money.zero(ledger.currency)
    match basis:
        case RefundBasis.NOTHING:
            return zero
        case RefundBasis.FULL_CHARGE:
            return max(ledger.held, zero)
        case RefundBasis.UNUSED_BUDGET:
            return max(ledger.held - _final(ledger, rate), zero)
        case RefundBasis.THAT_CHARGE:
            raise ValueError("a late charge is refunded by record_charge, with its amount")
        case _:  # pragma: no cover - exhaustive
            assert_never(basis)


# ---------------------------------------------------------------------------------------------
# Statements (spec §6)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One per campaign. Amounts as in spec §6; `charged` (total confirmed card charges) is
    shown so that `refund = charged - final` can be checked."""

    statement_id: str
    campaign_id: UUID
    billing_type: BillingType
    tax_rate: Decimal
    booked: Money
    spent: Money
    penalty: Money
    tax: Money
    refund: Money
    final: Money
    charged: Money


def _final(ledger: Ledger, rate: Decimal) -> Money:
    base = ledger.spent + ledger.penalty
    return base + tax_on(base, rate)


def compute_statement(campaign: Campaign, ledger: Ledger, rate: Decimal) -> Statement:
    """The §6 table from the ledger:

    | line | card | manual |
    |---|---|---|
    | booked | the budget | the budget |
    | spent | billable spend (never above budget) | billable spend |
    | penalty | penalty entries | same |
    | tax | tax on (spent + penalty) | same |
    | refund | charged - (spent + penalty + tax) | 0 |
    | final | spent + penalty + tax | spent + penalty + tax |
    """
    if ledger.currency != campaign.budget.currency:
        raise ValueError(
            f"ledger in {ledger.currency} for a campaign budgeted in {campaign.budget.currency}"
        )
    spent, penalty = ledger.spent, ledger.penalty
    tax = tax_on(spent + penalty, rate)
    final = spent + penalty + tax
    zero = Money.zero(ledger.currency)
    refund = max(ledger.charged - final, zero) if campaign.billing_type is _C else zero
    return Statement(
        statement_id=_money_id(campaign.id, "statement", 1),
        campaign_id=campaign.id,
        billing_type=campaign.billing_type,
        tax_rate=rate,
        booked=campaign.budget.quantize(),
        spent=spent,
        penalty=penalty,
        tax=tax,
        refund=refund,
        final=final,
        charged=ledger.charged,
    )


def statement_due(to_status: Status, ledger: Ledger) -> bool:
    """A statement is due when a campaign reaches CLOSED (issued after the settlement grace
    or the ad server's final report: see `settle`), or CANCELLED after anything was charged,
    billably spent or fined (issued at once)."""
    if to_status is Status.CLOSED:
        return True
    if to_status is Status.CANCELLED:
        return not (
            ledger.charged.is_zero() and ledger.spent.is_zero() and ledger.penalty.is_zero()
        )
    return False


# ---------------------------------------------------------------------------------------------
# Spend, budget and relevance (spec §7)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveInterval:
    """A stretch of time the campaign was LIVE; `end` None: still LIVE."""

    start: datetime
    end: datetime | None = None


def live_intervals(transitions: Iterable[tuple[datetime, Status]]) -> tuple[LiveInterval, ...]:
    """The LIVE intervals from a campaign's status history: (when, status reached) pairs in the
    order they happened."""
    intervals: list[LiveInterval] = []
    opened: datetime | None = None
    for at, status in transitions:
        if status is Status.LIVE and opened is None:
            opened = at
        elif status is not Status.LIVE and opened is not None:
            intervals.append(LiveInterval(opened, at))
            opened = None
    if opened is not None:
        intervals.append(LiveInterval(opened))
    return tuple(intervals)


def live_share(start: datetime, end: datetime, live: Sequence[LiveInterval]) -> Decimal:
    """The share (0..1) of the period [start, end] the campaign was LIVE. A zero-length period
    counts as LIVE when its instant lies in a LIVE interval (end included: a period that ended
    when the campaign stopped being LIVE ended before it stopped)."""
    if start == end:
        inside = any(i.start <= start and (i.end is None or start <= i.end) for i in live)
        return Decimal(1) if inside else Decimal(0)
    total = end - start
    covered = 0
    for lo, hi in _merged(live):
        a = max(start, lo)
        b = min(end, hi if hi is not None else end)
        if b > a:
            covered += _micros(b - a)
    if covered >= _micros(total):
        return Decimal(1)
    return Decimal(covered) / Decimal(_micros(total))


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _merged(live: Sequence[LiveInterval]) -> list[tuple[datetime, datetime | None]]:
    merged: list[tuple[datetime, datetime | None]] = []
    for interval in sorted(live, key=lambda i: i.start):
        if merged:
            lo, hi = merged[-1]
            if hi is None or interval.start <= hi:
                end = None if hi is None or interval.end is None else max(hi, interval.end)
                merged[-1] = (lo, end)
                continue
        merged.append((interval.start, interval.end))
    return merged


@dataclass(frozen=True)
class NonBillable:
    amount: Money
    reason: NonBillableReason


@dataclass(frozen=True)
class SpendSplit:
    billable: Money
    non_billable: tuple[NonBillable, ...] = ()  # only parts above zero, in rule order

    @property
    def non_billable_total(self) -> Money:
        total = Money.zero(self.billable.currency)
        for part in self.non_billable:
            total = total + part.amount
        return total

    @property
    def non_billable_reason(self) -> str | None:
        """The reasons joined by "," (the `non_billable_reason` of `delivery.recorded`)."""
        return ",".join(p.reason.value for p in self.non_billable) or None


def split_spend(
    spend: Money,
    period_start: datetime,
    period_end: datetime,
    live: Sequence[LiveInterval],
    *,
    spent_so_far: Money,
    budget: Money,
    charge_confirmed: bool,
    settled: bool,
) -> SpendSplit:
    """Billable and non-billable parts of one report's spend, by these rules in order:

    1. reported after the campaign's books closed (`settled`) -> all `after_settlement`;
    2. only the LIVE share of the period is billable (the rest `not_live`; pro rata by time,
       rounded half-up);
    3. a card campaign without a confirmed charge does not serve: its LIVE share is
       `charge_not_confirmed` (pass `charge_confirmed=True` for manual billing);
    4. billable spend is capped at the budget: the excess is `over_budget`.
    """
    zero = Money.zero(spend.currency)
    if settled:
        return SpendSplit(zero, _parts((spend, NonBillableReason.AFTER_SETTLEMENT)))
    share = live_share(period_start, period_end, live)
    live_part = spend if share == 1 else Money(spend.amount * share, spend.currency).quantize()
    not_live = spend - live_part
    unconfirmed = zero
    if not charge_confirmed:
        unconfirmed, live_part = live_part, zero
    remaining = max(budget - spent_so_far, zero)
    billable = min(live_part, remaining)
    return SpendSplit(
        billable,
        _parts(
            (not_live, NonBillableReason.NOT_LIVE),
            (unconfirmed, NonBillableReason.CHARGE_NOT_CONFIRMED),
            (live_part - billable, NonBillableReason.OVER_BUDGET),
        ),
    )


def _parts(*parts: tuple[Money, NonBillableReason]) -> tuple[NonBillable, ...]:
    return tuple(NonBillable(amount, reason) for amount, reason in parts if amount.amount > 0)


def is_low_relevance(impressions: int, clicks: int, rules: MoneyRules = DEFAULT_RULES) -> bool:
    """The absolute floor: after at least `relevance_min_impressions` impressions, a
    click-through rate below `relevance_min_ctr` (exact: clicks < min_ctr * impressions)."""
    return (
        impressions >= rules.relevance_min_impressions
        and Decimal(clicks) < rules.relevance_min_ctr * impressions
    )


@dataclass(frozen=True)
class Relevance:
    """How a campaign compares with similar ads (spec §7). `threshold` is the click-through
    rate below which it is stopped: `relevance_peer_ratio` x the peers' median when there are
    at least `relevance_min_peers` peers, else the floor `relevance_min_ctr`."""

    impressions: int
    clicks: int
    ctr: Decimal
    peers: int  # other campaigns of the product with enough LIVE impressions
    peer_median_ctr: Decimal | None  # None while there are fewer than relevance_min_peers
    threshold: Decimal
    low: bool


def relevance(
    impressions: int,
    clicks: int,
    peers: Iterable[tuple[int, int]],
    rules: MoneyRules = DEFAULT_RULES,
) -> Relevance | None:
    """The relevance of a campaign with `impressions` / `clicks` delivered while LIVE, against
    `peers`: the (LIVE impressions, LIVE clicks) of the OTHER campaigns of its ad product
    (those below `relevance_min_impressions` are ignored). None while the campaign itself has
    fewer than `relevance_min_impressions` LIVE impressions: too early to judge."""
    enough = rules.relevance_min_impressions
    if impressions < enough:
        return None
    rates = [Decimal(c) / Decimal(i) for i, c in peers if i >= enough]
    ctr = Decimal(clicks) / Decimal(impressions)
    if len(rates) >= rules.relevance_min_peers:
        median = Decimal(statistics.median(rates))
        threshold = rules.relevance_peer_ratio * median
        low = Decimal(clicks) < threshold * impressions
        return Relevance(impressions, clicks, ctr, len(rates), median, threshold, low)
    low = is_low_relevance(impressions, clicks, rules)
    return Relevance(impressions, clicks, ctr, len(rates), None, rules.relevance_min_ctr, low)


# ---------------------------------------------------------------------------------------------
# The account: the money side of one campaign, decide/evolve-style
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeRequest:
    charge_id: str
    amount: Money


class RefundStatus(StrEnum):
    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # stays visible until retried (`refund.retry`) and confirmed


@dataclass(frozen=True)
class Refund:
    refund_id: str
    amount: Money
    reason: RefundReason
    status: RefundStatus = RefundStatus.REQUESTED
    attempts: int = 1
    last_error: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    """`delivery.reported`: `report_id` is the message id."""

    report_id: str
    period_start: datetime
    period_end: datetime
    impressions: int
    clicks: int
    spend: Money


@dataclass(frozen=True)
class Account:
    campaign_id: UUID
    ledger: Ledger
    charges: tuple[ChargeRequest, ...] = ()  # every charge requested, in order
    refunds: tuple[Refund, ...] = ()
    impressions: int = 0  # everything reported
    clicks: int = 0
    statement: Statement | None = None
    version: int = 0
    # A closed campaign's statement is due at this instant unless `delivery.final` comes
    # first; None when nothing is pending (not closed yet, or settled).
    settle_at: datetime | None = None
    live_impressions: int = 0  # the share delivered while LIVE: what relevance is judged on
    live_clicks: int = 0

    @classmethod
    def open(cls, campaign: Campaign) -> Account:
        return cls(campaign.id, Ledger(campaign.budget.currency))

    @property
    def current_charge(self) -> ChargeRequest | None:
        """The charge of the latest submission (the one the campaign waits for)."""
        return self.charges[-1] if self.charges else None

    @property
    def charge_confirmed(self) -> bool:
        """The current charge has succeeded (for `serving_verdict`)."""
        current = self.current_charge
        return current is not None and current.charge_id in self.ledger.refs(EntryKind.CHARGE)

    @property
    def settlement_pending(self) -> bool:
        return self.settle_at is not None and self.statement is None

    @property
    def pristine(self) -> bool:
        return not (self.ledger.entries or self.charges or self.refunds or self.statement)

    def refund(self, refund_id: str) -> Refund | None:
        return next((r for r in self.refunds if r.refund_id == refund_id), None)


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeRequested:
    campaign_id: UUID
    charge_id: str
    amount: Money


@dataclass(frozen=True)
class ChargeRecorded:
    campaign_id: UUID
    charge_id: str
    amount: Money
    at: datetime


@dataclass(frozen=True)
class SpendRecorded:
    """One delivery report. `budget_reached` / `relevance_low`: this report made billable spend
    reach the budget / made the click-through rate low (each true once per crossing)."""

    campaign_id: UUID
    report_id: str
    period_start: datetime
    period_end: datetime
    impressions: int
    clicks: int
    spend: Money
    split: SpendSplit
    spent_total: Money
    budget_reached: bool
    at: datetime
    live_impressions: int = 0  # of `impressions`, those delivered while LIVE
    live_clicks: int = 0

    @property
    def after_settlement(self) -> bool:
        """Reported after the statement: recorded, never billed, never changes it."""
        return any(p.reason is NonBillableReason.AFTER_SETTLEMENT for p in self.split.non_billable)


@dataclass(frozen=True)
class PenaltyRecorded:
    """`amount` is booked; it is always what the publisher asked (`requested`, kept for the
    event's shape): a penalty above what can be collected is refused, never changed."""

    campaign_id: UUID
    amount: Money
    requested: Money
    at: datetime


@dataclass(frozen=True)
class RefundRequested:
    campaign_id: UUID
    refund_id: str
    amount: Money
    reason: RefundReason
    at: datetime


@dataclass(frozen=True)
class RefundSucceeded:
    campaign_id: UUID
    refund_id: str
    at: datetime


@dataclass(frozen=True)
class RefundFailed:
    campaign_id: UUID
    refund_id: str
    error: str
    at: datetime


@dataclass(frozen=True)
class RefundRetried:
    campaign_id: UUID
    refund_id: str
    attempt: int
    at: datetime


@dataclass(frozen=True)
class SettlementScheduled:
    """A campaign closed: its statement is due at `due_at` (the settlement grace) unless the
    ad server's `delivery.final` comes first."""

    campaign_id: UUID
    due_at: datetime
    at: datetime


@dataclass(frozen=True)
class StatementIssued:
    campaign_id: UUID
    statement: Statement
    at: datetime


MoneyEvent: TypeAlias = (
    ChargeRequested
    | ChargeRecorded
    | SpendRecorded
    | PenaltyRecorded
    | RefundRequested
    | RefundSucceeded
    | RefundFailed
    | RefundRetried
    | SettlementScheduled
    | StatementIssued
)


def _money_id(campaign_id: UUID, kind: str, n: int) -> str:
    return str(uuid5(campaign_id, f"{kind}:{n}"))


def _checked(campaign: Campaign, account: Account) -> Account:
    """The account, re-based on the campaign currency while no money has moved (a DRAFT budget
    may change currency). Refuses a currency change after money moved."""
    if account.campaign_id != campaign.id:
        raise ValueError(f"account of {account.campaign_id} used for campaign {campaign.id}")
    currency = campaign.budget.currency
    if account.ledger.currency == currency:
        return account
    if account.pristine:
        return replace(account, ledger=Ledger(currency))
    raise Refusal(
        RefusalCode.VALIDATION_FAILED,
        f"campaign {campaign.id} moved money in {account.ledger.currency}; "
        f"its budget cannot be in {currency}",
    )


# -- decide ---------------------------------------------------------------------------------------


def on_status_changed(
    campaign: Campaign,
    account: Account,
    change: CampaignStatusChanged,
    now: datetime,
    rules: MoneyRules = DEFAULT_RULES,
) -> list[MoneyEvent]:
    """The money side of an accepted status change; `campaign` is the campaign after it.

    - submit / resubmit (card): `ChargeRequested` for budget + tax;
    - close (T6, T7, T13): `SettlementScheduled` for now + the settlement grace (the statement
      and refund follow in `settle`); with a grace of zero, settled at once like a cancel;
    - reject (T3), cancel (T10/T11): for T11 the penalty (`PenaltyRecorded`; refused when
      above what can be collected), then the statement when due (`StatementIssued`), then the
      refund of the refund table when above zero (`RefundRequested`).
    """
    now = aware_utc(now, "now")
    if change.campaign_id != campaign.id or campaign.status is not change.to_status:
        raise ValueError("on_status_changed needs the campaign after the change")
    account = _checked(campaign, account)
    if change.to_status is Status.SUBMITTED:
        if campaign.billing_type is not _C:
            return []
        charge_id = _money_id(campaign.id, "charge", len(account.charges) + 1)
        return [
            ChargeRequested(campaign.id, charge_id, charge_amount(campaign.budget, rules.tax_rate))
        ]
    reason = refund_reason(change.from_status, change.to_status)
    if reason is None or account.statement is not None:
        return []
    if reason is RefundReason.CLOSED and rules.settlement_grace > timedelta(0):
        return [SettlementScheduled(campaign.id, now + rules.settlement_grace, now)]
    events: list[MoneyEvent] = []
    ledger = account.ledger
    if reason is RefundReason.CANCELLED_AFTER_APPROVAL and change.penalty is not None:
        penalty = _penalty_checked(campaign, account, change.penalty)
        if penalty.amount > 0:
            events.append(PenaltyRecorded(campaign.id, penalty, penalty, now))
            ledger = ledger.add(LedgerEntry(EntryKind.PENALTY, penalty, "penalty", now))
    return events + _statement_and_refund(campaign, account, ledger, reason, now, rules)


def _statement_and_refund(
    campaign: Campaign,
    account: Account,
    ledger: Ledger,
    reason: RefundReason,
    now: datetime,
    rules: MoneyRules,
) -> list[MoneyEvent]:
    """The statement when due, then the refund of the refund table when above zero."""
    events: list[MoneyEvent] = []
    if statement_due(campaign.status, ledger):
        statement = compute_statement(campaign, ledger, rules.tax_rate)
        events.append(StatementIssued(campaign.id, statement, now))
    amount = refund_amount(reason, campaign.billing_type, ledger, rules.tax_rate)
    if amount.amount > 0:
        refund_id = _money_id(campaign.id, "refund", len(account.refunds) + 1)
        events.append(RefundRequested(campaign.id, refund_id, amount, reason, now))
    return events


def penalty_maximum(campaign: Campaign, account: Account) -> Money | None:
    """The largest penalty that can be collected on a publisher cancel (T11); None: no limit.

    Manual billing: no limit (nothing was prepaid; the statement says what is owed). Card: the
    unused budget (budget - billable spend), taken from the prepaid charge together with its
    tax; zero while the charge is not confirmed (nothing prepaid to take it from)."""
    if campaign.billing_type is BillingType.MANUAL:
        return None
    zero = Money.zero(account.ledger.currency)
    if not account.charge_confirmed:
        return zero
    return max(campaign.budget - account.ledger.spent, zero).quantize()


def _penalty_checked(campaign: Campaign, account: Account, penalty: Money) -> Money:
    """The penalty as asked, or a refusal saying the maximum: never silently changed."""
    if penalty.currency != account.ledger.currency:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"penalty in {penalty.currency}, campaign in {account.ledger.currency}",
        )
    penalty = penalty.quantize()
    maximum = penalty_maximum(campaign, account)
    if maximum is not None and penalty > maximum:
        why = (
            "the card charge is not confirmed, so nothing prepaid can cover a penalty"
            if not account.charge_confirmed
            else "a card campaign's penalty is taken from its unused budget"
        )
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"penalty {penalty} is above the maximum of {maximum} that can be collected "
            f"from campaign {campaign.id} ({why})",
        )
    return penalty


def settle(
    campaign: Campaign,
    account: Account,
    actor: Actor,
    now: datetime,
    rules: MoneyRules = DEFAULT_RULES,
    *,
    final: bool,
) -> list[MoneyEvent]:
    """Issue a closed campaign's pending statement (spec §6) and its refund (card: unused
    budget and its tax). `final`: the ad server's `delivery.final` (settles at once); else the
    settlement grace, refused before `settle_at`. A campaign already settled (the other
    trigger came first) or cancelled gives no events. `delivery.final` for a campaign that
    has not closed is refused (`invalid_transition`): its statement is not due yet."""
    check("delivery.final" if final else "settlement.due", actor)
    now = aware_utc(now, "now")
    account = _checked(campaign, account)
    if campaign.status is not Status.CLOSED:
        if campaign.status is Status.CANCELLED:
            return []  # settled at the cancel (or nothing was due)
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"campaign {campaign.id} is {campaign.status.value}: its statement is issued "
            "after it closes",
        )
    if not account.settlement_pending:
        return []
    assert account.settle_at is not None
    if not final and now < account.settle_at:
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"the settlement of campaign {campaign.id} is not due: now {now.isoformat()} is "
            f"before {account.settle_at.isoformat()}",
        )
    return _statement_and_refund(campaign, account, account.ledger, RefundReason.CLOSED, now, rules)


def record_charge(
    campaign: Campaign,
    account: Account,
    charge_id: str,
    amount: Money,
    actor: Actor,
    now: datetime,
) -> list[MoneyEvent]:
    """`payment.charge_succeeded`. Records the charge; refunds it in full at once when it comes
    late (the campaign was rejected, cancelled or closed meanwhile, or resubmitted so that the
    charge is not the current one). A repeated confirmation changes nothing. Refuses a charge
    the worker never requested (`not_found`) or an amount other than requested
    (`validation_failed`): the books must stay exact, an operator has to look at those."""
    check("payment.charge_succeeded", actor)
    now = aware_utc(now, "now")
    account = _checked(campaign, account)
    request = next((c for c in account.charges if c.charge_id == charge_id), None)
    if request is None:
        raise Refusal(
            RefusalCode.NOT_FOUND, f"charge {charge_id} was never requested for {campaign.id}"
        )
    if charge_id in account.ledger.refs(EntryKind.CHARGE):
        return []
    if amount != request.amount:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"charge {charge_id} confirmed {amount}, but {request.amount} was requested",
        )
    events: list[MoneyEvent] = [ChargeRecorded(campaign.id, charge_id, request.amount, now)]
    current = account.current_charge
    late = (
        campaign.status not in _CHARGE_KEEPING
        or current is None
        or current.charge_id != charge_id
        or account.statement is not None
    )
    if late:
        refund_id = _money_id(campaign.id, "refund", len(account.refunds) + 1)
        events.append(
            RefundRequested(campaign.id, refund_id, request.amount, RefundReason.LATE_CHARGE, now)
        )
    return events


def retry_charge(
    campaign: Campaign,
    account: Account,
    billing_error: bool,
    actor: Actor,
    now: datetime,
    rules: MoneyRules = DEFAULT_RULES,
) -> list[MoneyEvent]:
    """`campaign.retry_charge` (the advertiser, spec §5): while `billing_error` is set, request
    the charge again (budget + tax) with a new `charge_id`; its success clears the hold (the
    service's hold table). Refused (`invalid_transition`) when there is no billing error to
    retry, or the campaign has ended."""
    check("campaign.retry_charge", actor, campaign.advertiser_id, f"campaign {campaign.id}")
    now = aware_utc(now, "now")
    account = _checked(campaign, account)
    if campaign.status in TERMINAL:
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"campaign {campaign.id} is {campaign.status.value}: nothing is charged any more",
        )
    if not billing_error or campaign.billing_type is not _C or account.charge_confirmed:
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"campaign {campaign.id} has no billing error: only a failed card charge can be "
            "retried",
        )
    charge_id = _money_id(campaign.id, "charge", len(account.charges) + 1)
    return [ChargeRequested(campaign.id, charge_id, charge_amount(campaign.budget, rules.tax_rate))]


def record_delivery(
    campaign: Campaign,
    account: Account,
    report: DeliveryReport,
    live: Sequence[LiveInterval],
    actor: Actor,
    now: datetime,
    rules: MoneyRules = DEFAULT_RULES,
) -> list[MoneyEvent]:
    """`delivery.reported`: one `SpendRecorded` with the split of `split_spend`. `live` are the
    campaign's LIVE intervals so far (`live_intervals`). Until a closed campaign's statement
    is issued, reports are split as usual (its LIVE periods are billable); after it, and for a
    cancelled campaign, everything is `after_settlement`. Idempotency by message id is the
    inbox's job."""
    check("delivery.reported", actor)
    now = aware_utc(now, "now")
    account = _checked(campaign, account)
    start = aware_utc(report.period_start, "period_start")
    end = aware_utc(report.period_end, "period_end")
    if end < start:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"period_end {end.isoformat()} is before period_start {start.isoformat()}",
        )
    for name in ("impressions", "clicks"):
        value = getattr(report, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise Refusal(RefusalCode.VALIDATION_FAILED, f"{name} must be a whole number >= 0")
    spend = report.spend
    if spend.currency != account.ledger.currency:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"spend in {spend.currency}, campaign {campaign.id} in {account.ledger.currency}",
        )
    if spend.amount < 0 or not spend.is_quantized():
        raise Refusal(RefusalCode.VALIDATION_FAILED, f"spend {spend} must be >= 0 in minor units")
    before = account.ledger.spent
    split = split_spend(
        spend,
        start,
        end,
        live,
        spent_so_far=before,
        budget=campaign.budget,
        charge_confirmed=campaign.billing_type is BillingType.MANUAL or account.charge_confirmed,
        settled=account.statement is not None
        or (campaign.status in TERMINAL and not account.settlement_pending),
    )
    after = before + split.billable
    share = live_share(start, end, live)
    return [
        SpendRecorded(
            campaign_id=campaign.id,
            report_id=report.report_id,
            period_start=start,
            period_end=end,
            impressions=report.impressions,
            clicks=report.clicks,
            spend=spend,
            split=split,
            spent_total=after,
            budget_reached=before < campaign.budget <= after,
            at=now,
            live_impressions=_share_of(report.impressions, share),
            live_clicks=_share_of(report.clicks, share),
        )
    ]


def _share_of(count: int, share: Decimal) -> int:
    """The LIVE part of a count, rounded down (a part impression is not an impression)."""
    return count if share == 1 else int(Decimal(count) * share)


def record_refund_result(
    account: Account,
    refund_id: str,
    actor: Actor,
    now: datetime,
    *,
    succeeded: bool,
    error: str | None = None,
    amount: Money | None = None,
) -> list[MoneyEvent]:
    """`payment.refund_succeeded` / `payment.refund_failed`. Repeats change nothing; a failure
    after a success is ignored (the money has arrived)."""
    check("payment.refund_succeeded" if succeeded else "payment.refund_failed", actor)
    now = aware_utc(now, "now")
    refund = account.refund(refund_id)
    if refund is None:
        raise Refusal(RefusalCode.NOT_FOUND, f"refund {refund_id} was never requested")
    if amount is not None and amount != refund.amount:
        raise Refusal(
            RefusalCode.VALIDATION_FAILED,
            f"refund {refund_id} confirmed {amount}, but {refund.amount} was requested",
        )
    if refund.status is RefundStatus.SUCCEEDED:
        return []
    if succeeded:
        return [RefundSucceeded(account.campaign_id, refund_id, now)]
    if refund.status is RefundStatus.FAILED:
        return []
    return [RefundFailed(account.campaign_id, refund_id, error or "unknown error", now)]


def retry_refund(account: Account, refund_id: str, actor: Actor, now: datetime) -> list[MoneyEvent]:
    """`refund.retry` (publisher): request a failed refund again, same id and amount."""
    check("refund.retry", actor)
    now = aware_utc(now, "now")
    refund = account.refund(refund_id)
    if refund is None:
        raise Refusal(RefusalCode.NOT_FOUND, f"refund {refund_id} does not exist")
    if refund.status is not RefundStatus.FAILED:
        raise Refusal(
            RefusalCode.INVALID_TRANSITION,
            f"refund {refund_id} is {refund.status.value}: only a failed refund is retried",
        )
    return [RefundRetried(account.campaign_id, refund_id, refund.attempts + 1, now)]


# -- evolve ---------------------------------------------------------------------------------------


def evolve_account(account: Account, event: MoneyEvent) -> Account:
    """Apply one event (version + 1). ValueError when it does not fit (a bug or a corrupt log)."""
    if event.campaign_id != account.campaign_id:
        raise ValueError(f"event for {event.campaign_id} applied to {account.campaign_id}")
    money = _event_currency(event)
    if money is not None and money != account.ledger.currency and account.pristine:
        account = replace(account, ledger=Ledger(money))
    ledger = account.ledger
    version = account.version + 1
    match event:
        case ChargeRequested():
            return replace(
                account,
                charges=(*account.charges, ChargeRequest(event.charge_id, event.amount)),
                version=version,
            )
        case ChargeRecorded():
            if event.charge_id in ledger.refs(EntryKind.CHARGE):
                raise ValueError(f"charge {event.charge_id} is already recorded")
            entry = LedgerEntry(EntryKind.CHARGE, event.amount, event.charge_id, event.at)
            return replace(account, ledger=ledger.add(entry), version=version)
        case SpendRecorded():
            entries = [
                LedgerEntry(
                    EntryKind.SPEND, part.amount, event.report_id, event.at, False, part.reason
                )
                for part in event.split.non_billable
            ]
            if event.split.billable.amount > 0:
                entries.insert(
                    0, LedgerEntry(EntryKind.SPEND, event.split.billable, event.report_id, event.at)
                )
            return replace(
                account,
                ledger=ledger.add(*entries),
                impressions=account.impressions + event.impressions,
                clicks=account.clicks + event.clicks,
                live_impressions=account.live_impressions + event.live_impressions,
                live_clicks=account.live_clicks + event.live_clicks,
                version=version,
            )
        case PenaltyRecorded():
            entry = LedgerEntry(EntryKind.PENALTY, event.amount, "penalty", event.at)
            return replace(account, ledger=ledger.add(entry), version=version)
        case RefundRequested():
            if account.refund(event.refund_id) is not None:
                raise ValueError(f"refund {event.refund_id} already exists")
            entry = LedgerEntry(
                EntryKind.REFUND, event.amount, event.refund_id, event.at, reason=event.reason
            )
            refund = Refund(event.refund_id, event.amount, event.reason)
            return replace(
                account,
                ledger=ledger.add(entry),
                refunds=(*account.refunds, refund),
                version=version,
            )
        case RefundSucceeded():
            return _set_refund(account, event.refund_id, version, status=RefundStatus.SUCCEEDED)
        case RefundFailed():
            return _set_refund(
                account,
                event.refund_id,
                version,
                status=RefundStatus.FAILED,
                last_error=event.error,
            )
        case RefundRetried():
            return _set_refund(
                account,
                event.refund_id,
                version,
                status=RefundStatus.REQUESTED,
                attempts=event.attempt,
            )
        case SettlementScheduled():
            if account.statement is not None:
                raise ValueError(f"campaign {account.campaign_id} is already settled")
            return replace(account, settle_at=event.due_at, version=version)
        case StatementIssued():
            if account.statement is not None:
                raise ValueError(f"campaign {account.campaign_id} already has a statement")
            return replace(account, statement=event.statement, settle_at=None, version=version)
        case _:  # pragma: no cover - exhaustive
            assert_never(event)


def _event_currency(event: MoneyEvent) -> str | None:
    amount = getattr(event, "amount", None) or getattr(event, "spend", None)
    return amount.currency if isinstance(amount, Money) else None


def _set_refund(account: Account, refund_id: str, version: int, **changes: object) -> Account:
    if account.refund(refund_id) is None:
        raise ValueError(f"refund {refund_id} does not exist")
    refunds = tuple(
        replace(r, **changes) if r.refund_id == refund_id else r  # type: ignore[arg-type]
        for r in account.refunds
    )
    return replace(account, refunds=refunds, version=version)


def apply_account(account: Account, events: Iterable[MoneyEvent]) -> Account:
    for event in events:
        account = evolve_account(account, event)
    return account
