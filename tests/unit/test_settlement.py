"""Money (spec §5, §6, §7): statement arithmetic per case of the refund table and per currency
exponent, rounding at the half, charges, billable spend, budget and relevance, refunds."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from campaign_worker.domain.commands import (
    ApproveCampaign,
    CancelCampaign,
    Command,
    EndDue,
    PauseCampaign,
    RejectCampaign,
    ResumeCampaign,
    StartDue,
    SubmitCampaign,
    UpdateCampaign,
)
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.events import CampaignStatusChanged
from campaign_worker.domain.ledger import EntryKind, Ledger, LedgerEntry, NonBillableReason
from campaign_worker.domain.lifecycle import decide, evolve, stop_for_low_relevance
from campaign_worker.domain.model import Actor, BillingType, Campaign, Status, Trigger
from campaign_worker.domain.money import Money
from campaign_worker.domain.settlement import (
    DEFAULT_RULES,
    REFUND_TABLE,
    Account,
    ChargeRecorded,
    ChargeRequest,
    ChargeRequested,
    DeliveryReport,
    LiveInterval,
    MoneyEvent,
    MoneyRules,
    NonBillable,
    PenaltyRecorded,
    RefundBasis,
    RefundReason,
    RefundRequested,
    RefundStatus,
    SettlementScheduled,
    SpendRecorded,
    SpendSplit,
    Statement,
    StatementIssued,
    apply_account,
    charge_amount,
    compute_statement,
    evolve_account,
    is_low_relevance,
    live_intervals,
    live_share,
    on_status_changed,
    record_charge,
    record_delivery,
    record_refund_result,
    relevance,
    retry_charge,
    retry_refund,
    settle,
    split_spend,
    statement_due,
    tax_on,
)
from tests.unit.domain_builders import (
    BEFORE_START,
    END,
    OTHER_ADVERTISER,
    OWNER,
    PRODUCTS,
    PUBLISHER,
    START,
    SYSTEM,
    campaign_in,
)

D = Decimal
T0 = START  # the campaign starts at T0 and ends at END (30 days later)


def m(amount: str, currency: str = "EUR") -> Money:
    return Money.of(amount, currency)


# =============================================================================================
# A harness: lifecycle decide/evolve, and the money side of every status change
# =============================================================================================


@dataclass
class Books:
    campaign: Campaign
    rules: MoneyRules = DEFAULT_RULES
    account: Account = field(init=False)
    history: list[tuple[datetime, Status]] = field(init=False)
    money: list[MoneyEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.account = Account.open(self.campaign)
        self.history = [(BEFORE_START, self.campaign.status)]

    def _apply(self, events: list[MoneyEvent]) -> list[MoneyEvent]:
        self.account = apply_account(self.account, events)
        self.money.extend(events)
        return events

    def do(self, command: Command, actor: Actor, now: datetime) -> list[MoneyEvent]:
        produced: list[MoneyEvent] = []
        for event in decide(self.campaign, command, actor, now, PRODUCTS):
            after = evolve(self.campaign, event)
            self.campaign = after
            if isinstance(event, CampaignStatusChanged):
                self.history.append((now, event.to_status))
                produced += self._apply(
                    on_status_changed(after, self.account, event, now, self.rules)
                )
        return produced

    def confirm_charge(self, now: datetime, charge_id: str | None = None) -> list[MoneyEvent]:
        current = self.account.current_charge
        assert current is not None
        cid = charge_id or current.charge_id
        amount = next(c.amount for c in self.account.charges if c.charge_id == cid)
        return self._apply(record_charge(self.campaign, self.account, cid, amount, SYSTEM, now))

    def deliver(
        self,
        spend: Money,
        start: datetime,
        end: datetime,
        now: datetime | None = None,
        impressions: int = 1000,
        clicks: int = 10,
    ) -> SpendRecorded:
        report = DeliveryReport(f"r-{len(self.money)}", start, end, impressions, clicks, spend)
        events = record_delivery(
            self.campaign,
            self.account,
            report,
            live_intervals(self.history),
            SYSTEM,
            now or end,
            self.rules,
        )
        self._apply(events)
        (event,) = events
        assert isinstance(event, SpendRecorded)
        return event

    # -- walks to the usual states -----------------------------------------------------------
    def submit(self) -> None:
        self.do(SubmitCampaign(self.campaign.id), OWNER, BEFORE_START)

    def book(self, *, confirm: bool = True) -> None:
        self.submit()
        if confirm and self.campaign.billing_type is BillingType.CARD:
            self.confirm_charge(BEFORE_START)
        self.do(ApproveCampaign(self.campaign.id), PUBLISHER, BEFORE_START)

    def go_live(self, *, confirm: bool = True) -> None:
        self.book(confirm=confirm)
        self.do(StartDue(self.campaign.id, T0), SYSTEM, T0)

    def end(self, now: datetime = END + timedelta(minutes=1)) -> list[MoneyEvent]:
        """The end time closes the campaign (T6/T7): its statement is only scheduled."""
        return self.do(EndDue(self.campaign.id, END), SYSTEM, now)

    def settle(self, now: datetime, *, final: bool) -> list[MoneyEvent]:
        return self._apply(
            settle(self.campaign, self.account, SYSTEM, now, self.rules, final=final)
        )

    def close(self) -> list[MoneyEvent]:
        """Close at the end, and the ad server's `delivery.final` at the same instant: the
        settlement's money events (statement, refund)."""
        now = END + timedelta(minutes=1)
        scheduled = self.end(now)
        assert [type(e) for e in scheduled] == [SettlementScheduled]
        return self.settle(now, final=True)

    def of(self, kind: type[MoneyEvent]) -> list[MoneyEvent]:
        return [e for e in self.money if isinstance(e, kind)]

    @property
    def statement(self) -> Statement:
        assert self.account.statement is not None
        return self.account.statement

    @property
    def refund_requests(self) -> list[Money]:
        return [e.amount for e in self.money if isinstance(e, RefundRequested)]


def books(
    billing: BillingType = BillingType.CARD, budget: Money | None = None, **kw: object
) -> Books:
    campaign = campaign_in(
        Status.DRAFT, billing_type=billing, budget=budget or m("1000.00"), version=1
    )
    return Books(campaign, **kw)  # type: ignore[arg-type]


def check_statement_identities(s: Statement) -> None:
    assert s.tax == tax_on(s.spent + s.penalty, s.tax_rate)
    assert s.final == s.spent + s.penalty + s.tax
    if s.billing_type is BillingType.CARD:
        assert s.refund == s.charged - s.final
    else:
        assert s.refund.is_zero()
    assert s.spent <= s.booked


# =============================================================================================
# The issue-6 example
# =============================================================================================


def test_card_campaign_closing_after_spending_300_of_1000_eur_refunds_770() -> None:
    b = books()
    b.go_live()
    b.deliver(m("300.00"), T0, T0 + timedelta(days=1))
    events = b.close()
    assert [type(e) for e in events] == [StatementIssued, RefundRequested]
    s = b.statement
    assert (s.booked, s.spent, s.penalty, s.tax, s.refund, s.final) == (
        m("1000.00"),
        m("300.00"),
        m("0.00"),
        m("30.00"),
        m("770.00"),
        m("330.00"),
    )
    assert s.charged == m("1100.00") and s.tax_rate == D("0.10")
    assert s.billing_type is BillingType.CARD
    assert b.refund_requests == [m("770.00")]
    assert events[1] == RefundRequested(
        b.campaign.id,
        b.account.refunds[0].refund_id,
        m("770.00"),
        RefundReason.CLOSED,
        END + timedelta(minutes=1),
    )


# =============================================================================================
# Tax and charges
# =============================================================================================


@pytest.mark.parametrize(
    ("amount", "currency", "rate", "tax"),
    [
        ("1000.00", "EUR", "0.10", "100.00"),
        ("0.05", "EUR", "0.10", "0.01"),  # 0.005: the half goes up
        ("0.04", "EUR", "0.10", "0.00"),  # 0.004
        ("0.15", "EUR", "0.10", "0.02"),  # 0.015: half-up, not to even
        ("0.50", "EUR", "0.19", "0.10"),  # 0.095
        ("5", "JPY", "0.10", "1"),  # 0.5
        ("25", "JPY", "0.10", "3"),  # 2.5: half-up, not to even
        ("4", "JPY", "0.10", "0"),  # 0.4
        ("0.005", "BHD", "0.10", "0.001"),  # 0.0005
        ("1.235", "BHD", "0.10", "0.124"),  # 0.1235
        ("12345", "KRW", "0.10", "1235"),  # 1234.5
        ("1000.00", "EUR", "0", "0.00"),
    ],
)
def test_tax_is_rounded_half_up_to_the_currency_minor_unit(
    amount: str, currency: str, rate: str, tax: str
) -> None:
    assert tax_on(m(amount, currency), D(rate)) == m(tax, currency)
    assert tax_on(m(amount, currency), D(rate)).is_quantized()


@pytest.mark.parametrize(
    ("budget", "currency", "charge"),
    [("1000.00", "EUR", "1100.00"), ("1234", "JPY", "1357"), ("1.235", "BHD", "1.359")],
)
def test_card_charge_on_submit_is_budget_plus_tax(budget: str, currency: str, charge: str) -> None:
    assert charge_amount(m(budget, currency), DEFAULT_RULES.tax_rate) == m(charge, currency)
    b = books(budget=m(budget, currency))
    b.submit()
    (requested,) = b.of(ChargeRequested)
    assert isinstance(requested, ChargeRequested) and requested.amount == m(charge, currency)


def test_tax_rate_is_configurable() -> None:
    b = books(rules=MoneyRules(tax_rate=D("0.19")))
    b.go_live()
    b.deliver(m("300.00"), T0, T0 + timedelta(hours=1))
    b.close()
    s = b.statement
    assert (s.tax, s.final, s.charged, s.refund, s.tax_rate) == (
        m("57.00"),
        m("357.00"),
        m("1190.00"),
        m("833.00"),
        D("0.19"),
    )


def test_manual_campaign_is_never_charged_up_front() -> None:
    b = books(BillingType.MANUAL)
    b.go_live()
    assert b.of(ChargeRequested) == [] and b.account.ledger.charged.is_zero()


def test_resubmission_requests_a_new_charge() -> None:
    b = books()
    b.submit()
    b.do(RejectCampaign(b.campaign.id, "vague"), PUBLISHER, BEFORE_START)
    b.submit()
    first, second = b.account.charges
    assert first.charge_id != second.charge_id and first.amount == second.amount


# =============================================================================================
# The refund table (spec §5) and the statement (spec §6), case by case
# =============================================================================================


def test_refund_table_covers_every_case_and_never_refunds_manual_settlement() -> None:
    assert set(REFUND_TABLE) == {(r, b) for r in RefundReason for b in BillingType}
    for (reason, billing), basis in REFUND_TABLE.items():
        if billing is BillingType.MANUAL and reason is not RefundReason.LATE_CHARGE:
            assert basis is RefundBasis.NOTHING


def test_rejected_card_campaign_is_refunded_the_full_charge_without_a_statement() -> None:
    b = books()
    b.submit()
    b.confirm_charge(BEFORE_START)
    events = b.do(RejectCampaign(b.campaign.id, "vague"), PUBLISHER, BEFORE_START)
    assert [type(e) for e in events] == [RefundRequested]
    assert b.refund_requests == [m("1100.00")]
    assert isinstance(events[0], RefundRequested)
    assert events[0].reason is RefundReason.REVIEW_REJECTED
    assert b.account.statement is None


@pytest.mark.parametrize("actor", [OWNER, PUBLISHER], ids=["advertiser", "publisher"])
def test_cancel_while_submitted_refunds_the_full_charge_and_issues_a_statement(
    actor: Actor,
) -> None:
    b = books()
    b.submit()
    b.confirm_charge(BEFORE_START)
    b.do(CancelCampaign(b.campaign.id), actor, BEFORE_START)
    assert b.refund_requests == [m("1100.00")]
    s = b.statement
    assert (s.spent, s.tax, s.final, s.refund) == (m("0"), m("0"), m("0"), m("1100.00"))
    check_statement_identities(s)


def test_cancel_while_submitted_before_the_charge_is_confirmed_refunds_nothing_yet() -> None:
    b = books()
    b.submit()
    b.do(CancelCampaign(b.campaign.id), OWNER, BEFORE_START)
    assert b.refund_requests == [] and b.account.statement is None
    # the charge arrives late: refunded in full at once
    events = b.confirm_charge(BEFORE_START + timedelta(hours=1))
    assert [type(e) for e in events] == [ChargeRecorded, RefundRequested]
    assert b.refund_requests == [m("1100.00")]


def test_cancelled_draft_gets_no_statement() -> None:
    b = books()
    assert b.do(CancelCampaign(b.campaign.id), OWNER, BEFORE_START) == []


B, L, P = Status.BOOKED, Status.LIVE, Status.PAUSED
CANCEL_CASES = [
    # from, spend, penalty -> spent, penalty, tax, final, refund
    (B, "0.00", None, ("0.00", "0.00", "0.00", "0.00", "1100.00")),
    (B, "0.00", "50.00", ("0.00", "50.00", "5.00", "55.00", "1045.00")),
    (L, "0.00", None, ("0.00", "0.00", "0.00", "0.00", "1100.00")),
    (L, "300.00", None, ("300.00", "0.00", "30.00", "330.00", "770.00")),
    (L, "300.00", "100.00", ("300.00", "100.00", "40.00", "440.00", "660.00")),
    (P, "300.00", None, ("300.00", "0.00", "30.00", "330.00", "770.00")),
    (P, "300.00", "100.00", ("300.00", "100.00", "40.00", "440.00", "660.00")),
    # exactly the unused budget: the prepaid charge covers it and its tax
    (P, "900.00", "100.00", ("900.00", "100.00", "100.00", "1100.00", "0.00")),
]


@pytest.mark.parametrize(("cancelled_from", "spend", "penalty", "expected"), CANCEL_CASES)
def test_publisher_cancel_after_approval_refunds_unused_budget_and_its_tax(
    cancelled_from: Status,
    spend: str,
    penalty: str | None,
    expected: tuple[str, str, str, str, str],
) -> None:
    b = books()
    if cancelled_from is Status.BOOKED:
        b.book()
    else:
        b.go_live()
        if m(spend).amount:
            b.deliver(m(spend), T0, T0 + timedelta(hours=2))
        if cancelled_from is Status.PAUSED:
            b.do(PauseCampaign(b.campaign.id), OWNER, T0 + timedelta(days=1))
    assert b.campaign.status is cancelled_from
    fee = m(penalty) if penalty else None
    events = b.do(CancelCampaign(b.campaign.id, "policy", fee), PUBLISHER, T0 + timedelta(days=2))
    spent, pen, tax, final, refund = (m(x) for x in expected)
    s = b.statement
    assert (s.spent, s.penalty, s.tax, s.final, s.refund) == (spent, pen, tax, final, refund)
    check_statement_identities(s)
    assert b.refund_requests == ([refund] if refund.amount else [])
    kinds = [type(e) for e in events]
    assert kinds == [PenaltyRecorded] * (fee is not None) + [StatementIssued] + [
        RefundRequested
    ] * bool(refund.amount)
    if fee is not None:
        (recorded,) = b.of(PenaltyRecorded)
        assert isinstance(recorded, PenaltyRecorded)
        assert (recorded.requested, recorded.amount) == (fee, pen)


def test_campaign_that_never_went_live_is_refunded_everything_on_close() -> None:  # T7
    b = books()
    b.book()
    events = b.close()
    assert b.campaign.status is Status.CLOSED
    s = b.statement
    assert (s.spent, s.tax, s.final, s.refund) == (m("0"), m("0"), m("0"), m("1100.00"))
    assert [type(e) for e in events] == [StatementIssued, RefundRequested]


def test_closed_card_campaign_whose_charge_never_succeeded_refunds_nothing() -> None:
    b = books()
    b.go_live(confirm=False)
    spend = b.deliver(m("50.00"), T0, T0 + timedelta(hours=1))
    assert spend.split.non_billable == (
        NonBillable(m("50.00"), NonBillableReason.CHARGE_NOT_CONFIRMED),
    )
    b.close()
    assert b.statement.final.is_zero() and b.refund_requests == []


@pytest.mark.parametrize(
    ("end", "cancel_penalty", "spent", "penalty", "tax", "final"),
    [
        ("close", None, "300.00", "0.00", "30.00", "330.00"),
        ("cancel", "100.00", "300.00", "100.00", "40.00", "440.00"),
        # manual penalties are not capped: nothing was prepaid, the statement says what is owed
        ("cancel", "5000.00", "300.00", "5000.00", "530.00", "5830.00"),
    ],
)
def test_manual_campaign_is_never_refunded_and_owes_spend_penalty_and_tax(
    end: str,
    cancel_penalty: str | None,
    spent: str,
    penalty: str,
    tax: str,
    final: str,
) -> None:
    b = books(BillingType.MANUAL)
    b.go_live()
    b.deliver(m("300.00"), T0, T0 + timedelta(hours=1))
    if end == "close":
        b.close()
    else:
        fee = m(cancel_penalty) if cancel_penalty else None
        b.do(CancelCampaign(b.campaign.id, None, fee), PUBLISHER, T0 + timedelta(days=1))
    s = b.statement
    assert (s.spent, s.penalty, s.tax, s.final) == (m(spent), m(penalty), m(tax), m(final))
    assert s.refund.is_zero() and b.refund_requests == [] and s.charged.is_zero()
    check_statement_identities(s)


def test_manual_campaign_rejected_or_cancelled_before_approval_gets_nothing() -> None:
    b = books(BillingType.MANUAL)
    b.submit()
    assert b.do(RejectCampaign(b.campaign.id, "vague"), PUBLISHER, BEFORE_START) == []
    assert b.do(CancelCampaign(b.campaign.id), OWNER, BEFORE_START) == []


@pytest.mark.parametrize(
    ("currency", "budget", "spend", "tax", "final", "charged", "refund"),
    [
        ("EUR", "1000.00", "300.05", "30.01", "330.06", "1100.00", "769.94"),  # 30.005
        ("JPY", "100000", "12345", "1235", "13580", "110000", "96420"),  # 1234.5
        ("BHD", "100.000", "12.345", "1.235", "13.580", "110.000", "96.420"),  # 1.2345
        ("KWD", "0.005", "0.005", "0.001", "0.006", "0.006", "0.000"),  # 0.0005
    ],
)
def test_statement_arithmetic_per_currency_exponent_rounds_the_half_up(
    currency: str,
    budget: str,
    spend: str,
    tax: str,
    final: str,
    charged: str,
    refund: str,
) -> None:
    b = books(budget=m(budget, currency))
    b.go_live()
    b.deliver(m(spend, currency), T0, T0 + timedelta(hours=1))
    b.close()
    s = b.statement
    assert (s.spent, s.tax, s.final, s.charged, s.refund) == tuple(
        m(x, currency) for x in (spend, tax, final, charged, refund)
    )
    for amount in (s.booked, s.spent, s.penalty, s.tax, s.refund, s.final):
        assert amount.currency == currency and amount.is_quantized()
    check_statement_identities(s)


def test_statement_is_due_at_close_and_at_cancel_only_after_money_moved() -> None:
    empty = Ledger("EUR")
    assert statement_due(Status.CLOSED, empty)
    assert not statement_due(Status.CANCELLED, empty)
    for kind in (EntryKind.CHARGE, EntryKind.SPEND, EntryKind.PENALTY):
        ledger = empty.add(LedgerEntry(kind, m("1.00"), "x", T0))
        assert statement_due(Status.CANCELLED, ledger), kind
    non_billable = empty.add(
        LedgerEntry(EntryKind.SPEND, m("1.00"), "x", T0, False, NonBillableReason.NOT_LIVE)
    )
    assert not statement_due(Status.CANCELLED, non_billable)
    for status in Status:
        if status not in (Status.CLOSED, Status.CANCELLED):
            assert not statement_due(status, non_billable)


def test_compute_statement_from_a_ledger() -> None:
    campaign = campaign_in(Status.CLOSED, budget=m("1000.00"))
    ledger = Ledger("EUR").add(
        LedgerEntry(EntryKind.CHARGE, m("1100.00"), "c1", T0),
        LedgerEntry(EntryKind.SPEND, m("120.00"), "r1", T0),
        LedgerEntry(EntryKind.SPEND, m("5.00"), "r1", T0, False, NonBillableReason.NOT_LIVE),
        LedgerEntry(EntryKind.SPEND, m("180.00"), "r2", T0),
    )
    s = compute_statement(campaign, ledger, D("0.10"))
    assert (s.spent, s.tax, s.final, s.refund) == (
        m("300.00"),
        m("30.00"),
        m("330.00"),
        m("770.00"),
    )
    assert s.campaign_id == campaign.id and s.statement_id
    with pytest.raises(ValueError):
        compute_statement(campaign, Ledger("USD"), D("0.10"))


def test_only_one_statement_per_campaign() -> None:
    b = books()
    b.go_live()
    b.close()
    statement_event = b.of(StatementIssued)[0]
    with pytest.raises(ValueError):
        evolve_account(b.account, statement_event)
    # a status change after settlement produces no second statement
    change = CampaignStatusChanged(b.campaign.id, Status.LIVE, Status.CLOSED, Trigger.END)
    assert on_status_changed(b.campaign, b.account, change, END) == []


# =============================================================================================
# Charges
# =============================================================================================


def test_charge_confirmation_is_recorded_once() -> None:
    b = books()
    b.submit()
    assert not b.account.charge_confirmed
    assert [type(e) for e in b.confirm_charge(BEFORE_START)] == [ChargeRecorded]
    assert b.account.charge_confirmed and b.account.ledger.charged == m("1100.00")
    assert b.confirm_charge(BEFORE_START) == []


def test_charge_confirmed_after_rejection_is_refunded_in_full_at_once() -> None:
    b = books()
    b.submit()
    b.do(RejectCampaign(b.campaign.id, "vague"), PUBLISHER, BEFORE_START)
    events = b.confirm_charge(BEFORE_START)
    assert [type(e) for e in events] == [ChargeRecorded, RefundRequested]
    assert isinstance(events[1], RefundRequested)
    assert events[1].reason is RefundReason.LATE_CHARGE and events[1].amount == m("1100.00")


def test_stale_charge_of_an_earlier_submission_is_refunded() -> None:
    b = books()
    b.submit()
    stale = b.account.charges[0].charge_id
    b.do(RejectCampaign(b.campaign.id, "vague"), PUBLISHER, BEFORE_START)
    b.submit()  # a new charge is now the current one
    events = b.confirm_charge(BEFORE_START, stale)
    assert [type(e) for e in events] == [ChargeRecorded, RefundRequested]
    assert not b.account.charge_confirmed
    b.confirm_charge(BEFORE_START)
    assert b.account.charge_confirmed


def test_unknown_or_mismatched_charge_is_refused_and_only_the_system_reports_payments() -> None:
    b = books()
    b.submit()
    with pytest.raises(Refusal) as info:
        record_charge(b.campaign, b.account, "nope", m("1100.00"), SYSTEM, BEFORE_START)
    assert info.value.code is RefusalCode.NOT_FOUND
    cid = b.account.charges[0].charge_id
    with pytest.raises(Refusal) as info:
        record_charge(b.campaign, b.account, cid, m("1000.00"), SYSTEM, BEFORE_START)
    assert info.value.code is RefusalCode.VALIDATION_FAILED
    with pytest.raises(Refusal) as info:
        record_charge(b.campaign, b.account, cid, m("1100.00"), PUBLISHER, BEFORE_START)
    assert info.value.code is RefusalCode.FORBIDDEN


def test_account_follows_a_draft_budget_currency_until_money_moves() -> None:
    b = books()
    b.do(UpdateCampaign(b.campaign.id, {"budget": m("5000", "JPY")}), OWNER, BEFORE_START)
    b.submit()
    assert b.account.ledger.currency == "JPY"
    assert b.account.charges[0].amount == m("5500", "JPY")
    b.confirm_charge(BEFORE_START)
    b.do(RejectCampaign(b.campaign.id, "vague"), PUBLISHER, BEFORE_START)
    b.do(UpdateCampaign(b.campaign.id, {"budget": m("50.00", "EUR")}), OWNER, BEFORE_START)
    with pytest.raises(Refusal) as info:
        b.submit()
    assert info.value.code is RefusalCode.VALIDATION_FAILED


# =============================================================================================
# Spend, budget and relevance (spec §7)
# =============================================================================================


def test_spend_while_live_is_billable() -> None:
    b = books()
    b.go_live()
    event = b.deliver(m("12.34"), T0, T0 + timedelta(hours=1))
    assert event.split == SpendSplit(m("12.34"))
    assert event.spent_total == m("12.34") and b.account.ledger.spent == m("12.34")


def test_spend_for_a_period_that_ended_before_the_pause_is_billable_when_reported_later() -> None:
    b = books()
    b.go_live()
    b.do(PauseCampaign(b.campaign.id), OWNER, T0 + timedelta(hours=2))
    late = b.deliver(m("20.00"), T0, T0 + timedelta(hours=2), now=T0 + timedelta(hours=5))
    assert late.split.billable == m("20.00")


def test_spend_while_not_live_is_recorded_as_non_billable_with_a_reason() -> None:
    b = books()
    b.go_live()
    b.do(PauseCampaign(b.campaign.id), OWNER, T0 + timedelta(hours=2))
    event = b.deliver(m("20.00"), T0 + timedelta(hours=3), T0 + timedelta(hours=4))
    assert event.split == SpendSplit(
        m("0.00"), (NonBillable(m("20.00"), NonBillableReason.NOT_LIVE),)
    )
    assert event.split.non_billable_reason == "not_live"
    assert b.account.ledger.non_billable == m("20.00") and b.account.ledger.spent.is_zero()


def test_spend_of_a_period_straddling_a_pause_is_billed_for_the_live_share_only() -> None:
    b = books()
    b.go_live()
    b.do(PauseCampaign(b.campaign.id), OWNER, T0 + timedelta(hours=1))
    b.do(ResumeCampaign(b.campaign.id), OWNER, T0 + timedelta(hours=3))
    # 4 hours, of which hours 0-1 and 3-4 were LIVE: half of it
    event = b.deliver(m("10.01"), T0, T0 + timedelta(hours=4))
    assert event.split.billable == m("5.01")  # 5.005 rounds half-up
    assert event.split.non_billable == (NonBillable(m("5.00"), NonBillableReason.NOT_LIVE),)


def test_spend_before_the_start_is_not_billable() -> None:
    b = books()
    b.book()
    event = b.deliver(m("3.00"), BEFORE_START, BEFORE_START + timedelta(hours=1))
    assert event.split.billable.is_zero()


def test_billable_spend_is_capped_at_the_budget_which_sets_out_of_budget_once() -> None:
    b = books()
    b.go_live()
    first = b.deliver(m("990.00"), T0, T0 + timedelta(hours=1))
    assert not first.budget_reached
    second = b.deliver(m("25.00"), T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert second.split == SpendSplit(
        m("10.00"), (NonBillable(m("15.00"), NonBillableReason.OVER_BUDGET),)
    )
    assert second.budget_reached and second.spent_total == m("1000.00")
    third = b.deliver(m("5.00"), T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    assert not third.budget_reached and third.split.billable.is_zero()
    assert b.account.ledger.spent == m("1000.00")
    b.close()
    assert b.statement.spent == m("1000.00") and b.statement.refund.is_zero()


def test_spend_reported_after_close_is_non_billable_after_settlement() -> None:
    b = books()
    b.go_live()
    b.close()
    event = b.deliver(m("7.00"), END - timedelta(hours=1), END, now=END + timedelta(hours=3))
    assert event.split.non_billable == (NonBillable(m("7.00"), NonBillableReason.AFTER_SETTLEMENT),)
    assert b.account.ledger.spent.is_zero() and b.statement.spent.is_zero()


def test_several_non_billable_reasons_are_all_recorded() -> None:
    split = split_spend(
        m("10.00"),
        T0,
        T0 + timedelta(hours=2),
        [LiveInterval(T0, T0 + timedelta(hours=1))],
        spent_so_far=m("998.00"),
        budget=m("1000.00"),
        charge_confirmed=True,
        settled=False,
    )
    assert split.billable == m("2.00")
    assert split.non_billable == (
        NonBillable(m("5.00"), NonBillableReason.NOT_LIVE),
        NonBillable(m("3.00"), NonBillableReason.OVER_BUDGET),
    )
    assert split.non_billable_total == m("8.00")
    assert split.non_billable_reason == "not_live,over_budget"


def test_live_intervals_come_from_the_status_history() -> None:
    h = [
        (T0 - timedelta(days=1), Status.BOOKED),
        (T0, Status.LIVE),
        (T0 + timedelta(hours=1), Status.PAUSED),
        (T0 + timedelta(hours=2), Status.LIVE),
    ]
    assert live_intervals(h) == (
        LiveInterval(T0, T0 + timedelta(hours=1)),
        LiveInterval(T0 + timedelta(hours=2), None),
    )
    assert live_share(T0, T0 + timedelta(hours=4), live_intervals(h)) == D("0.75")
    instant = T0 + timedelta(hours=1)  # a zero-length period at the pause: ended when it stopped
    assert live_share(instant, instant, live_intervals(h)) == 1
    gap = T0 + timedelta(minutes=90)
    assert live_share(gap, gap, live_intervals(h)) == 0


def test_delivery_reports_are_validated() -> None:
    b = books()
    b.go_live()

    def report(**kw: object) -> DeliveryReport:
        r = DeliveryReport("r", T0, T0 + timedelta(hours=1), 10, 1, m("1.00"))
        return replace(r, **kw)  # type: ignore[arg-type]

    bad = [
        report(period_end=T0 - timedelta(hours=1)),
        report(impressions=-1),
        report(clicks=True),
        report(spend=m("1.00", "USD")),
        report(spend=Money(D("-1.00"), "EUR")),
        report(spend=Money(D("1.001"), "EUR")),
    ]
    for r in bad:
        with pytest.raises(Refusal) as info:
            record_delivery(b.campaign, b.account, r, [], SYSTEM, T0)
        assert info.value.code is RefusalCode.VALIDATION_FAILED, r
    with pytest.raises(Refusal) as info:
        record_delivery(b.campaign, b.account, report(), [], PUBLISHER, T0)
    assert info.value.code is RefusalCode.FORBIDDEN


@pytest.mark.parametrize(
    ("impressions", "clicks", "low"),
    [
        (9_999, 0, False),  # not enough impressions yet
        (10_000, 9, True),  # 0.09 %
        (10_000, 10, False),  # exactly 0.1 % is not below
        (1_000_000, 999, True),
        (0, 0, False),
    ],
)
def test_low_relevance_after_enough_impressions_below_the_ctr_threshold(
    impressions: int, clicks: int, low: bool
) -> None:
    assert is_low_relevance(impressions, clicks) is low


def test_relevance_thresholds_are_configurable() -> None:
    rules = MoneyRules(relevance_min_impressions=100, relevance_min_ctr=D("0.05"))
    assert is_low_relevance(100, 4, rules) and not is_low_relevance(100, 5, rules)
    assert not is_low_relevance(99, 0, rules)


def test_relevance_counts_only_the_impressions_and_clicks_delivered_while_live() -> None:
    b = books()
    b.go_live()
    b.deliver(m("1.00"), T0, T0 + timedelta(hours=1), impressions=6_000, clicks=5)
    # half of this period was before the start: half its impressions and clicks count
    b.deliver(
        m("1.00"), T0 - timedelta(hours=1), T0 + timedelta(hours=1), impressions=4_000, clicks=3
    )
    b.deliver(m("1.00"), T0 - timedelta(hours=3), T0 - timedelta(hours=2), impressions=900)
    assert (b.account.impressions, b.account.clicks) == (10_900, 18)
    assert (b.account.live_impressions, b.account.live_clicks) == (8_000, 6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tax_rate": D("-0.1")},
        {"tax_rate": D("1.5")},
        {"tax_rate": 0.1},
        {"relevance_min_impressions": 0},
        {"relevance_min_ctr": D("NaN")},
        {"relevance_peer_ratio": D("1.5")},
        {"relevance_min_peers": 0},
        {"settlement_grace": timedelta(seconds=-1)},
        {"settlement_grace": 3600},
    ],
)
def test_invalid_money_rules_are_caller_bugs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MoneyRules(**kwargs)  # type: ignore[arg-type]


# =============================================================================================
# Refunds are tracked until confirmed; a failed one stays visible and can be retried
# =============================================================================================


def closed_with_refund() -> tuple[Books, str]:
    b = books()
    b.go_live()
    b.close()
    return b, b.account.refunds[0].refund_id


def test_refund_is_requested_then_confirmed() -> None:
    b, rid = closed_with_refund()
    assert b.account.refunds[0].status is RefundStatus.REQUESTED
    b.account = apply_account(
        b.account, record_refund_result(b.account, rid, SYSTEM, END, succeeded=True)
    )
    assert b.account.refunds[0].status is RefundStatus.SUCCEEDED
    assert record_refund_result(b.account, rid, SYSTEM, END, succeeded=True) == []
    assert record_refund_result(b.account, rid, SYSTEM, END, succeeded=False) == []


def test_failed_refund_stays_visible_and_the_publisher_retries_it() -> None:
    b, rid = closed_with_refund()
    events = record_refund_result(
        b.account, rid, SYSTEM, END, succeeded=False, error="card expired"
    )
    b.account = apply_account(b.account, events)
    (refund,) = b.account.refunds
    assert refund.status is RefundStatus.FAILED and refund.last_error == "card expired"
    assert record_refund_result(b.account, rid, SYSTEM, END, succeeded=False) == []
    for actor in (OWNER, SYSTEM):
        with pytest.raises(Refusal) as info:
            retry_refund(b.account, rid, actor, END)
        assert info.value.code is RefusalCode.FORBIDDEN
    b.account = apply_account(b.account, retry_refund(b.account, rid, PUBLISHER, END))
    (refund,) = b.account.refunds
    assert refund.status is RefundStatus.REQUESTED and refund.attempts == 2
    assert b.account.ledger.refunded == refund.amount  # booked once, whatever the attempts
    with pytest.raises(Refusal) as info:
        retry_refund(b.account, rid, PUBLISHER, END)
    assert info.value.code is RefusalCode.INVALID_TRANSITION


def test_unknown_or_mismatched_refund_results_are_refused() -> None:
    b, rid = closed_with_refund()
    with pytest.raises(Refusal) as info:
        record_refund_result(b.account, "nope", SYSTEM, END, succeeded=True)
    assert info.value.code is RefusalCode.NOT_FOUND
    with pytest.raises(Refusal) as info:
        retry_refund(b.account, "nope", PUBLISHER, END)
    assert info.value.code is RefusalCode.NOT_FOUND
    with pytest.raises(Refusal) as info:
        record_refund_result(b.account, rid, SYSTEM, END, succeeded=True, amount=m("1.00"))
    assert info.value.code is RefusalCode.VALIDATION_FAILED


# =============================================================================================
# The ledger
# =============================================================================================


def test_ledger_entries_are_non_negative_minor_unit_amounts_in_one_currency() -> None:
    with pytest.raises(ValueError):
        LedgerEntry(EntryKind.CHARGE, Money(D("-1"), "EUR"), "x", T0)
    with pytest.raises(ValueError):
        LedgerEntry(EntryKind.CHARGE, Money(D("1.001"), "EUR"), "x", T0)
    with pytest.raises(ValueError):
        LedgerEntry(EntryKind.REFUND, m("1.00"), "x", T0, billable=False, reason="not_live")
    with pytest.raises(ValueError):
        LedgerEntry(EntryKind.SPEND, m("1.00"), "x", T0, billable=False)
    with pytest.raises(ValueError):
        Ledger("EUR").add(LedgerEntry(EntryKind.CHARGE, m("1", "JPY"), "x", T0))


def test_every_statement_number_traces_to_ledger_entries() -> None:
    b = books()
    b.go_live()
    b.deliver(m("100.00"), T0, T0 + timedelta(hours=1))
    b.deliver(m("200.00"), T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    b.close()
    ledger, s = b.account.ledger, b.statement
    kinds = [e.kind for e in ledger.entries]
    assert kinds == [EntryKind.CHARGE, EntryKind.SPEND, EntryKind.SPEND, EntryKind.REFUND]
    assert s.charged == ledger.charged and s.spent == ledger.spent
    assert ledger.charged == s.final + ledger.refunded


# =============================================================================================
# Issue 13: final performance before the statement (spec §6)
# =============================================================================================

GRACE = DEFAULT_RULES.settlement_grace
CLOSED_AT = END + timedelta(minutes=1)


def test_closed_campaign_statement_waits_for_the_final_report_or_the_grace() -> None:
    b = books()
    b.go_live()
    events = b.end(CLOSED_AT)
    assert b.campaign.status is Status.CLOSED
    assert events == [SettlementScheduled(b.campaign.id, CLOSED_AT + GRACE, CLOSED_AT)]
    assert b.account.statement is None and b.refund_requests == []
    assert b.account.settle_at == CLOSED_AT + GRACE and b.account.settlement_pending
    # delivery.final settles at once
    settled = b.settle(CLOSED_AT + timedelta(minutes=5), final=True)
    assert [type(e) for e in settled] == [StatementIssued, RefundRequested]
    assert b.account.settle_at is None and not b.account.settlement_pending
    # the grace trigger that comes later finds nothing to do
    assert b.settle(CLOSED_AT + GRACE, final=False) == []
    assert len(b.of(StatementIssued)) == 1


def test_grace_settles_a_closed_campaign_when_no_final_report_comes() -> None:
    b = books()
    b.go_live()
    b.end(CLOSED_AT)
    with pytest.raises(Refusal) as early:
        b.settle(CLOSED_AT + GRACE - timedelta(seconds=1), final=False)
    assert early.value.code is RefusalCode.INVALID_TRANSITION and "not due" in early.value.message
    settled = b.settle(CLOSED_AT + GRACE, final=False)
    assert [type(e) for e in settled] == [StatementIssued, RefundRequested]
    assert b.refund_requests == [m("1100.00")]
    # and the ad server's final report after it changes nothing
    assert b.settle(CLOSED_AT + GRACE + timedelta(hours=1), final=True) == []


def test_reports_for_live_periods_arriving_before_the_statement_are_billable() -> None:
    b = books()
    b.go_live()
    b.end(CLOSED_AT)
    last_hour = b.deliver(m("40.00"), END - timedelta(hours=1), END, now=CLOSED_AT)
    assert last_hour.split == SpendSplit(m("40.00"))
    straddling = b.deliver(
        m("10.00"), CLOSED_AT - timedelta(minutes=1), CLOSED_AT + timedelta(minutes=1)
    )
    assert straddling.split.billable == m("5.00")  # only its LIVE half
    b.settle(CLOSED_AT + timedelta(minutes=30), final=True)
    assert b.statement.spent == m("45.00")
    assert b.refund_requests == [b.statement.refund] and b.statement.refund == m("1050.50")
    check_statement_identities(b.statement)


def test_report_after_the_statement_is_non_billable_after_settlement_and_changes_nothing() -> None:
    b = books()
    b.go_live()
    b.close()
    statement = b.statement
    late = b.deliver(m("7.00"), END - timedelta(hours=1), END, now=CLOSED_AT + GRACE)
    assert late.after_settlement
    assert late.split.non_billable == (NonBillable(m("7.00"), NonBillableReason.AFTER_SETTLEMENT),)
    assert b.statement == statement and b.account.ledger.spent.is_zero()


def test_final_report_for_a_campaign_that_has_not_closed_is_refused() -> None:
    b = books()
    b.go_live()
    with pytest.raises(Refusal) as refused:
        b.settle(T0 + timedelta(days=1), final=True)
    assert refused.value.code is RefusalCode.INVALID_TRANSITION
    assert "after it closes" in refused.value.message
    with pytest.raises(Refusal) as forbidden:
        settle(b.campaign, b.account, PUBLISHER, T0, final=True)
    assert forbidden.value.code is RefusalCode.FORBIDDEN


def test_cancellation_keeps_issuing_its_statement_at_once() -> None:
    b = books()
    b.go_live()
    b.deliver(m("100.00"), T0, T0 + timedelta(hours=1))
    events = b.do(CancelCampaign(b.campaign.id, "policy"), PUBLISHER, T0 + timedelta(days=1))
    assert [type(e) for e in events] == [StatementIssued, RefundRequested]
    assert b.account.settle_at is None
    assert b.settle(T0 + timedelta(days=2), final=True) == []  # nothing pending


def test_zero_grace_issues_the_statement_at_the_close() -> None:
    b = books(rules=MoneyRules(settlement_grace=timedelta(0)))
    b.go_live()
    events = b.end(CLOSED_AT)
    assert [type(e) for e in events] == [StatementIssued, RefundRequested]


def test_spend_reported_for_a_cancelled_campaign_without_statement_is_after_settlement() -> None:
    b = books()
    b.do(CancelCampaign(b.campaign.id), OWNER, BEFORE_START)  # a DRAFT: nothing moved
    late = b.deliver(m("3.00"), T0, T0 + timedelta(hours=1))
    assert late.after_settlement


# =============================================================================================
# Issue 13: penalties are never silently changed (spec §6)
# =============================================================================================


def test_penalty_above_what_can_be_collected_is_refused_saying_the_maximum() -> None:
    b = books()
    b.go_live()
    b.deliver(m("300.00"), T0, T0 + timedelta(hours=2))
    before, live = b.account, b.campaign
    with pytest.raises(Refusal) as refused:
        b.do(
            CancelCampaign(b.campaign.id, "policy", m("700.01")), PUBLISHER, T0 + timedelta(days=1)
        )
    assert refused.value.code is RefusalCode.VALIDATION_FAILED
    assert (
        "700.01 EUR" in refused.value.message and "maximum of 700.00 EUR" in refused.value.message
    )
    assert b.account == before  # no money moved (the service applies nothing: test_money_rules)
    b.campaign = live  # this harness evolves the campaign before asking the money side
    # the maximum itself is taken as asked
    b.do(CancelCampaign(b.campaign.id, "policy", m("700.00")), PUBLISHER, T0 + timedelta(days=1))
    assert b.statement.penalty == m("700.00") and b.campaign.penalty == m("700.00")


def test_penalty_on_a_card_campaign_without_a_confirmed_charge_is_refused() -> None:
    b = books()
    b.book(confirm=False)
    with pytest.raises(Refusal) as refused:
        b.do(CancelCampaign(b.campaign.id, "policy", m("10.00")), PUBLISHER, BEFORE_START)
    assert refused.value.code is RefusalCode.VALIDATION_FAILED
    assert "maximum of 0.00 EUR" in refused.value.message
    assert "not confirmed" in refused.value.message


def test_penalty_event_and_statement_carry_the_same_figure() -> None:
    b = books(BillingType.MANUAL)
    b.go_live()
    events = b.do(
        CancelCampaign(b.campaign.id, "policy", m("5000.00")), PUBLISHER, T0 + timedelta(days=1)
    )
    (penalty,) = [e for e in events if isinstance(e, PenaltyRecorded)]
    assert penalty.amount == penalty.requested == m("5000.00") == b.statement.penalty
    assert b.campaign.penalty == m("5000.00")


# =============================================================================================
# Issue 13: a failed card charge can be retried (spec §5)
# =============================================================================================


def test_retry_charge_requests_a_new_charge_only_while_billing_error_is_set() -> None:
    b = books()
    b.submit()
    (first,) = b.account.charges
    with pytest.raises(Refusal) as no_error:
        retry_charge(b.campaign, b.account, False, OWNER, BEFORE_START)
    assert no_error.value.code is RefusalCode.INVALID_TRANSITION
    assert "no billing error" in no_error.value.message
    events = retry_charge(b.campaign, b.account, True, OWNER, BEFORE_START)
    assert len(events) == 1 and isinstance(events[0], ChargeRequested)
    assert events[0].charge_id != first.charge_id and events[0].amount == first.amount
    b._apply(events)
    assert b.account.current_charge == ChargeRequest(events[0].charge_id, m("1100.00"))
    # its success confirms the campaign's charge; the failed one, if it succeeds late, is refunded
    b.confirm_charge(BEFORE_START)
    assert b.account.charge_confirmed
    late = b.confirm_charge(BEFORE_START, first.charge_id)
    assert [type(e) for e in late] == [ChargeRecorded, RefundRequested]


def test_only_the_owning_advertiser_retries_a_charge_of_a_running_card_campaign() -> None:
    b = books()
    b.submit()
    for actor in (PUBLISHER, SYSTEM, OTHER_ADVERTISER):
        with pytest.raises(Refusal) as refused:
            retry_charge(b.campaign, b.account, True, actor, BEFORE_START)
        assert refused.value.code is RefusalCode.FORBIDDEN, actor
    manual = books(BillingType.MANUAL)
    manual.submit()
    with pytest.raises(Refusal) as refused:
        retry_charge(manual.campaign, manual.account, True, OWNER, BEFORE_START)
    assert refused.value.code is RefusalCode.INVALID_TRANSITION
    b.do(CancelCampaign(b.campaign.id), OWNER, BEFORE_START)
    with pytest.raises(Refusal) as ended:
        retry_charge(b.campaign, b.account, True, OWNER, BEFORE_START)
    assert ended.value.code is RefusalCode.INVALID_TRANSITION


# =============================================================================================
# Issue 13: low relevance stops the campaign (spec §7)
# =============================================================================================

PEER = (20_000, 200)  # 1 % click-through rate


@pytest.mark.parametrize(
    ("clicks", "peers", "low", "threshold"),
    [
        # 5 peers at 1 %: stopped below 0.25 x 1 % = 0.25 % (25 clicks on 10,000)
        (24, [PEER] * 5, True, D("0.0025")),
        (25, [PEER] * 5, False, D("0.0025")),
        # a 0.2 % campaign is above the 0.1 % floor but below a quarter of its peers' median
        (20, [PEER] * 5, True, D("0.0025")),
        # fewer than 5 peers: the absolute floor (0.1 %) applies instead
        (20, [PEER] * 4, False, D("0.001")),
        (9, [PEER] * 4, True, D("0.001")),
        # peers with too few LIVE impressions do not count
        (20, [PEER] * 4 + [(9_999, 100)], False, D("0.001")),
        # the median, not the mean: one very strong peer does not move it
        (24, [PEER] * 4 + [(20_000, 20_000)], True, D("0.0025")),
    ],
)
def test_relevance_compares_with_the_median_of_peers_with_enough_live_impressions(
    clicks: int, peers: list[tuple[int, int]], low: bool, threshold: Decimal
) -> None:
    verdict = relevance(10_000, clicks, peers)
    assert verdict is not None
    assert verdict.low is low and verdict.threshold == threshold
    if len([p for p in peers if p[0] >= 10_000]) >= 5:
        assert verdict.peer_median_ctr == D("0.01") and verdict.peers == 5
    else:
        assert verdict.peer_median_ctr is None


def test_relevance_is_not_judged_before_enough_live_impressions() -> None:
    assert relevance(9_999, 0, [PEER] * 10) is None
    rules = MoneyRules(relevance_min_impressions=100, relevance_peer_ratio=D("0.5"))
    verdict = relevance(100, 4, [(100, 10)] * 5, rules)
    assert verdict is not None and verdict.low and verdict.threshold == D("0.05")


def test_low_relevance_stop_closes_a_live_or_paused_campaign_and_refunds_unused_budget() -> None:
    for paused in (False, True):
        b = books()
        b.go_live()
        b.deliver(m("200.00"), T0, T0 + timedelta(hours=1))
        if paused:
            b.do(PauseCampaign(b.campaign.id), OWNER, T0 + timedelta(hours=2))
        change = stop_for_low_relevance(b.campaign, SYSTEM)
        assert (change.to_status, change.trigger, change.reason) == (
            Status.CLOSED,
            Trigger.STOP,
            "low_relevance",
        )
        stopped_at = T0 + timedelta(hours=3)
        b.campaign = evolve(b.campaign, change)
        scheduled = on_status_changed(b.campaign, b.account, change, stopped_at)
        assert scheduled == [SettlementScheduled(b.campaign.id, stopped_at + GRACE, stopped_at)]
        b._apply(scheduled)
        b.settle(stopped_at + GRACE, final=False)
        assert b.statement.spent == m("200.00") and b.refund_requests == [m("880.00")]


def test_low_relevance_stop_is_system_only_and_only_from_live_or_paused() -> None:
    live = campaign_in(Status.LIVE)
    with pytest.raises(Refusal) as forbidden:
        stop_for_low_relevance(live, PUBLISHER)
    assert forbidden.value.code is RefusalCode.FORBIDDEN
    for status in (Status.BOOKED, Status.DRAFT, Status.CLOSED, Status.CANCELLED):
        with pytest.raises(Refusal) as refused:
            stop_for_low_relevance(campaign_in(status), SYSTEM)
        assert refused.value.code is RefusalCode.INVALID_TRANSITION, status
