"""The ledger of one campaign (issue 6): one entry per money movement, so that every number on
a statement can be traced.

Entries are never changed or removed. All amounts are in the campaign currency, quantized to
its minor unit, and not negative; the kind says which way the money went:

- `charge` (ref: charge id): a card charge the payment service confirmed (budget + tax);
- `refund` (ref: refund id): a refund the worker committed to, booked when requested (its
  confirmation is tracked on `settlement.Refund`, so a failed one stays visible);
- `spend` (ref: delivery report id): delivery cost reported by the ad server, `billable` or
  not, with a `NonBillableReason` when not;
- `penalty` (ref: "penalty"): the publisher's fee on a cancel after approval (T11).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from campaign_worker.domain.money import Money, exponent_of

__all__ = ["EntryKind", "Ledger", "LedgerEntry", "NonBillableReason"]


class EntryKind(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    SPEND = "spend"
    PENALTY = "penalty"


class NonBillableReason(StrEnum):
    """Why spend was recorded but not billed (spec §7: never silently dropped)."""

    NOT_LIVE = "not_live"  # the period (or this share of it) was not LIVE time
    CHARGE_NOT_CONFIRMED = "charge_not_confirmed"  # card campaign without a confirmed charge
    OVER_BUDGET = "over_budget"  # beyond the budget (billable spend is capped at it)
    AFTER_SETTLEMENT = "after_settlement"  # reported after the campaign closed or was cancelled


@dataclass(frozen=True)
class LedgerEntry:
    kind: EntryKind
    amount: Money
    ref: str
    at: datetime
    billable: bool = True  # spend only: False for non-billable spend
    reason: str | None = None  # non-billable spend: a NonBillableReason; refund: its reason

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Money):
            raise TypeError("a ledger amount must be Money")
        if self.amount.amount < 0 or not self.amount.is_quantized():
            raise ValueError(
                f"ledger amounts are >= 0 and in minor units of the currency, not {self.amount}"
            )
        if not self.billable:
            if self.kind is not EntryKind.SPEND:
                raise ValueError("only spend can be non-billable")
            if self.reason not in NonBillableReason._value2member_map_:
                raise ValueError(f"non-billable spend needs a reason, not {self.reason!r}")


@dataclass(frozen=True)
class Ledger:
    currency: str
    entries: tuple[LedgerEntry, ...] = ()

    def __post_init__(self) -> None:
        exponent_of(self.currency)
        for entry in self.entries:
            self._check(entry)

    def _check(self, entry: LedgerEntry) -> None:
        if entry.amount.currency != self.currency:
            raise ValueError(
                f"ledger in {self.currency} cannot hold an entry in {entry.amount.currency}"
            )

    def add(self, *entries: LedgerEntry) -> Ledger:
        for entry in entries:
            self._check(entry)
        return Ledger(self.currency, self.entries + tuple(entries))

    def total(self, kind: EntryKind, *, billable: bool | None = None) -> Money:
        """Sum of the entries of `kind` (spend: only billable / non-billable when given)."""
        return _sum(
            self.currency,
            (
                e.amount
                for e in self.entries
                if e.kind is kind and (billable is None or e.billable is billable)
            ),
        )

    def refs(self, kind: EntryKind) -> frozenset[str]:
        return frozenset(e.ref for e in self.entries if e.kind is kind)

    @property
    def charged(self) -> Money:
        return self.total(EntryKind.CHARGE)

    @property
    def refunded(self) -> Money:
        return self.total(EntryKind.REFUND)

    @property
    def held(self) -> Money:
        """What the worker still holds of the advertiser's card charges."""
        return self.charged - self.refunded

    @property
    def spent(self) -> Money:
        """Billable spend."""
        return self.total(EntryKind.SPEND, billable=True)

    @property
    def non_billable(self) -> Money:
        return self.total(EntryKind.SPEND, billable=False)

    @property
    def penalty(self) -> Money:
        return self.total(EntryKind.PENALTY)


def _sum(currency: str, amounts: Iterable[Money]) -> Money:
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total
