"""One batch's world: what the processor loaded, what the handlers changed, what they produced.

The processor loads (and locks) everything a batch can touch into a `Batch`; handlers decide
against it and apply their changes through its methods; the processor then writes the changed
state and the produced rows back in one transaction (`Batch.write`). Three parts, each with
one job:

* `State`: the loaded rows as domain objects, kept current as handlers apply changes;
* `Changes`: which of them changed (the keys to write back);
* `Outputs`: the rows the batch appends: history, outbox messages, ledger rows, statements and
  notification requests.

Adding a table means a field in `State`, a key set in `Changes`, a line in `Batch.write`, the
unit-of-work methods that read and write it (checked against the fake by the contract suite in
`tests/contract/`) and a migration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import (
    AdProduct,
    Campaign,
    CategoryState,
    Creative,
    Status,
)
from campaign_worker.domain.serving import Hold, Verdict, serving_verdict, verdict_changed
from campaign_worker.domain.settlement import DEFAULT_RULES, Account, MoneyRules, Statement
from campaign_worker.service import outbound as out
from campaign_worker.service.envelope import OutboxMessage
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.unit_of_work import (
    CampaignExtras,
    HistoryEntry,
    LedgerRow,
    NotificationRequest,
    UnitOfWork,
)

log = logging.getLogger(__name__)


@dataclass
class State:
    """The rows a batch works on, as domain objects. Handlers read it directly and change it
    only through `Batch` methods (so that `Changes` knows what to write back)."""

    campaigns: dict[UUID, Campaign]
    products: dict[str, AdProduct]
    creatives: dict[UUID, dict[str, Creative]] = field(default_factory=dict)  # tombstones too
    holds: dict[UUID, frozenset[Hold]] = field(default_factory=dict)
    suspension_reasons: dict[UUID, str | None] = field(default_factory=dict)
    categories: dict[str, CategoryState] = field(default_factory=dict)
    accounts: dict[UUID, Account] = field(default_factory=dict)  # only where money moved
    # (when, status reached) per campaign, oldest first, for the campaigns whose billing
    # needs their LIVE periods
    status_history: dict[UUID, list[tuple[datetime, Status]]] = field(default_factory=dict)
    # per ad product: campaign id -> (LIVE impressions, LIVE clicks) of the campaigns with
    # enough LIVE impressions to be a relevance peer (as stored before this batch)
    relevance_peers: dict[str, dict[UUID, tuple[int, int]]] = field(default_factory=dict)

    @classmethod
    def loaded(
        cls,
        campaigns: dict[UUID, Campaign],
        extras: CampaignExtras,
        products: dict[str, AdProduct] | None = None,
        **rest: Any,
    ) -> State:
        """The state of `campaigns` with what `UnitOfWork.load_extras` read for them."""
        return cls(
            campaigns=campaigns,
            products=products if products is not None else {},
            creatives=extras.creatives,
            holds=extras.holds,
            suspension_reasons=extras.suspension_reasons,
            accounts=extras.accounts,
            **rest,
        )


@dataclass
class Changes:
    """The keys of what changed in `State`: written back at the end of the batch."""

    campaigns: set[UUID] = field(default_factory=set)
    products: set[str] = field(default_factory=set)
    creatives: set[tuple[UUID, str]] = field(default_factory=set)
    holds: set[UUID] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    accounts: set[UUID] = field(default_factory=set)


@dataclass
class Outputs:
    """What the batch appends, in the order it was produced."""

    history: list[HistoryEntry] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    ledger: list[LedgerRow] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    notifications: list[NotificationRequest] = field(default_factory=list)


class Batch:
    """The state a batch works on and everything it produces, written in one transaction."""

    def __init__(
        self,
        now: datetime,
        state: State,
        rules: MoneyRules = DEFAULT_RULES,
        *,
        publish_state: bool = True,
    ) -> None:
        self.now = now
        self.state = state
        self.rules = rules
        self.publish_state = publish_state
        self.changes = Changes()
        self.out = Outputs()
        # the version each campaign was loaded at (a campaign's state record needs a higher
        # one), and per changed campaign the message that last changed it
        self._loaded_versions = {cid: c.version for cid, c in state.campaigns.items()}
        self._current: Inbound | None = None
        self._causes: dict[UUID, Inbound] = {}
        self._notification_ids: set[UUID] = set()
        # the serving verdict last published per campaign, and the campaigns the current
        # message touches (see track / flush_serving)
        self._verdicts: dict[UUID, Verdict | None] = {}
        self._tracked: set[UUID] = set()

    # ------------------------------------------------------------ reading

    def campaign(self, item: Inbound) -> Campaign:
        """The message's campaign; refuses the message with `not_found` when there is none."""
        assert item.campaign_id is not None
        campaign = self.state.campaigns.get(item.campaign_id)
        if campaign is None:
            raise Refusal(RefusalCode.NOT_FOUND, f"campaign {item.campaign_id} does not exist")
        return campaign

    def holds_of(self, campaign_id: UUID) -> frozenset[Hold]:
        return self.state.holds.get(campaign_id, frozenset())

    def account(self, campaign: Campaign) -> Account:
        """The campaign's money account (an empty one before any money moved)."""
        return self.state.accounts.get(campaign.id) or Account.open(campaign)

    def charge_confirmed(self, campaign_id: UUID) -> bool:
        account = self.state.accounts.get(campaign_id)
        return account is not None and account.charge_confirmed

    def verdict_of(self, campaign: Campaign) -> Verdict:
        """The serving verdict of `campaign` against the batch's creatives, holds and money."""
        return serving_verdict(
            campaign,
            self.state.creatives.get(campaign.id, {}).values(),
            self.holds_of(campaign.id),
            self.charge_confirmed(campaign.id),
        )

    def verdict(self, campaign_id: UUID) -> Verdict | None:
        campaign = self.state.campaigns.get(campaign_id)
        return self.verdict_of(campaign) if campaign is not None else None

    def display(self, campaign: Campaign) -> str:
        """The display status of spec §4 (holds, creatives and payment included, e.g.
        Activating while a card charge is unconfirmed)."""
        return self.verdict_of(campaign).display_status

    # ------------------------------------------------------------ changing

    def begin(self, item: Inbound) -> None:
        """The processor is about to apply `item`: what changes now, it caused."""
        self._current = item

    def put_campaign(self, campaign: Campaign) -> None:
        self.state.campaigns[campaign.id] = campaign
        self.changes.campaigns.add(campaign.id)
        if self._current is not None:
            self._causes[campaign.id] = self._current

    def bump(self, campaign_id: UUID) -> Campaign:
        """A change to the campaign's parts (creatives, holds) is a new campaign version."""
        current = self.state.campaigns[campaign_id]
        campaign = replace(current, version=current.version + 1)
        self.put_campaign(campaign)
        return campaign

    def put_creative(self, creative: Creative) -> None:
        self.state.creatives.setdefault(creative.campaign_id, {})[creative.id] = creative
        self.changes.creatives.add((creative.campaign_id, creative.id))

    def put_holds(self, campaign_id: UUID, holds: frozenset[Hold]) -> None:
        self.state.holds[campaign_id] = holds
        self.changes.holds.add(campaign_id)

    def put_suspension_reason(self, campaign_id: UUID, reason: str | None) -> None:
        """Stored with the holds: why the publisher suspended the campaign."""
        self.state.suspension_reasons[campaign_id] = reason
        self.changes.holds.add(campaign_id)

    def put_account(self, account: Account) -> None:
        before = self.state.accounts.get(account.campaign_id)
        self.state.accounts[account.campaign_id] = account
        self.changes.accounts.add(account.campaign_id)
        if _state_facets(before) != _state_facets(account):
            # spend and the charge are part of the campaign's state: a new version, so that
            # the state record of this change is newer than the last one
            self._bump_once(account.campaign_id)

    def _bump_once(self, campaign_id: UUID) -> None:
        """Bump the campaign's version unless this batch already did (or created it)."""
        loaded = self._loaded_versions.get(campaign_id)
        campaign = self.state.campaigns.get(campaign_id)
        if loaded is not None and campaign is not None and campaign.version <= loaded:
            self.bump(campaign_id)

    def put_product(self, product: AdProduct) -> None:
        self.state.products[product.id] = product
        self.changes.products.add(product.id)

    def put_category(self, category_id: str, state: CategoryState) -> None:
        self.state.categories[category_id] = state
        self.changes.categories.add(category_id)

    # ------------------------------------------------------------ producing

    def emit(self, item: Inbound, payload: out.Outgoing, *, subject: UUID | None = None) -> None:
        """Publish `payload` (through the outbox), caused by `item`; its subject is the given
        campaign, else the message's."""
        cid = subject if subject is not None else item.campaign_id
        self.out.outbox.append(
            out.to_outbox(
                payload,
                subject=str(cid) if cid is not None else None,
                now=self.now,
                causation_id=item.message_id,
                correlation_id=item.correlation_id,
            )
        )

    def record(
        self,
        item: Inbound,
        campaign_id: UUID,
        kind: str,
        *,
        version: int | None = None,
        **entry: Any,
    ) -> None:
        """One history row of `campaign_id`, caused by `item`, at `version` (by default the
        campaign's current version in the batch)."""
        self.out.history.append(
            HistoryEntry(
                campaign_id=campaign_id,
                version=version
                if version is not None
                else self.state.campaigns[campaign_id].version,
                kind=kind,
                actor_role=item.actor.role.value,
                actor_id=item.actor.id,
                message_id=item.message_id,
                message_type=item.type,
                correlation_id=item.correlation_id,
                occurred_at=self.now,
                **entry,
            )
        )

    def request(self, notification: NotificationRequest) -> bool:
        """Add a notification request; False when the same one is already in this batch."""
        if notification.id in self._notification_ids:
            return False
        self._notification_ids.add(notification.id)
        self.out.notifications.append(notification)
        return True

    def reject(self, item: Inbound, refusal: Refusal) -> None:
        """The message breaks a rule: nothing of it applies, `command.rejected` says why."""
        log.info(
            "refused %s: %s (%s)",
            item.type,
            refusal.code.value,
            refusal.message[:300],
            extra={
                "message_id": item.message_id,
                "campaign_id": str(item.campaign_id) if item.campaign_id is not None else None,
                "correlation_id": item.correlation_id,
            },
        )
        self.emit(
            item,
            out.CommandRejected(
                command_id=item.message_id,
                command_type=item.type,
                code=refusal.code.value,
                message=refusal.message,
                campaign_id=item.campaign_id,
            ),
        )

    # ------------------------------------------------------------ serving (spec §4)

    def track(self, campaign_id: UUID) -> None:
        """Remember the verdict before the current message changes this campaign."""
        if campaign_id not in self._verdicts:
            self._verdicts[campaign_id] = self.verdict(campaign_id)
        self._tracked.add(campaign_id)

    def flush_serving(self, item: Inbound) -> None:
        """One `campaign.serving_changed` per campaign whose verdict, hold set or display
        status the message changed, with the full list of reasons."""
        for cid in sorted(self._tracked):
            after = self.verdict(cid)
            if after is None:
                continue
            if verdict_changed(self._verdicts.get(cid), after):
                self._verdicts[cid] = after
                self.emit(
                    item,
                    out.CampaignServingChanged(
                        campaign_id=cid,
                        serving=after.serving,
                        holds=[h.value for h in after.holds],
                        display_status=after.display_status,
                        reasons=after.reasons,
                        version=self.state.campaigns[cid].version,
                    ),
                    subject=cid,
                )
        self._tracked.clear()

    # ------------------------------------------------------------ campaign.state

    def state_of(self, campaign: Campaign, updated_at: datetime) -> out.CampaignState:
        """The whole current state of `campaign` as the batch holds it."""
        account = self.state.accounts.get(campaign.id)
        return out.CampaignState.of(
            campaign,
            self.state.creatives.get(campaign.id, {}).values(),
            self.verdict_of(campaign),
            account.ledger.spent if account is not None else None,
            updated_at,
        )

    def finish_states(self) -> None:
        """Every changed campaign gets a version above the one it was loaded at and (when
        the state topic is on) one `campaign.state` record of its state after the batch,
        caused by the message that changed it last."""
        for cid in sorted(self.changes.campaigns):
            self._bump_once(cid)
            if not self.publish_state:
                continue
            cause = self._causes.get(cid)
            self.out.outbox.append(
                out.to_outbox(
                    self.state_of(self.state.campaigns[cid], self.now),
                    subject=str(cid),
                    now=self.now,
                    causation_id=cause.message_id if cause is not None else None,
                    correlation_id=cause.correlation_id if cause is not None else None,
                )
            )

    # ------------------------------------------------------------ writing back

    async def write(self, uow: UnitOfWork) -> None:
        """Write every change and every produced row in the unit of work's transaction (the
        changed campaigns' state records first: `finish_states`)."""
        self.finish_states()
        s, c, o, now = self.state, self.changes, self.out, self.now
        await uow.save_products([s.products[k] for k in sorted(c.products)], now)
        await uow.save_campaigns([s.campaigns[k] for k in sorted(c.campaigns)], now)
        await uow.save_creatives([s.creatives[cid][k] for cid, k in sorted(c.creatives)], now)
        await uow.save_holds(
            {k: (s.holds[k], s.suspension_reasons.get(k)) for k in sorted(c.holds)}, now
        )
        await uow.save_categories({k: s.categories[k] for k in sorted(c.categories)}, now)
        await uow.save_accounts([s.accounts[k] for k in sorted(c.accounts)], now)
        await uow.add_ledger_rows(o.ledger)
        await uow.add_statements(o.statements, now)
        await uow.add_history(o.history)
        # notifications: a pending row each, and its `notification.requested` event
        for n in await uow.add_notifications(o.notifications):
            o.outbox.append(out.notification_requested(n, now))
        await uow.add_outbox(o.outbox)


def _state_facets(account: Account | None) -> tuple[object, bool]:
    """What of an account the campaign's state record shows: billable spend, and whether
    the current charge is confirmed (it decides the display status)."""
    if account is None:
        return (0, False)
    return (account.ledger.spent.amount, account.charge_confirmed)
