"""The unit-of-work contract: the same tests against the in-memory fake the unit tests use
and against the SQL unit of work on a real Postgres (a fresh database per test), so the two
cannot drift apart. What the protocol cannot read back (outbox, ledger rows, statements) is
observed through each backend's own storage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker.adapters.db.codec import load_as
from campaign_worker.adapters.db.uow import SqlUnitOfWork, decode_headers
from campaign_worker.config import Settings
from campaign_worker.domain.ledger import EntryKind, Ledger, LedgerEntry
from campaign_worker.domain.model import (
    AdProduct,
    BillingType,
    Campaign,
    CategoryState,
    Creative,
    CreativeContent,
    CreativeStatus,
    Status,
)
from campaign_worker.domain.money import Money
from campaign_worker.domain.serving import Hold
from campaign_worker.domain.settlement import (
    Account,
    ChargeRequest,
    Refund,
    RefundReason,
    RefundStatus,
    Statement,
)
from campaign_worker.service.envelope import OutboxMessage
from campaign_worker.service.inbound import Source
from campaign_worker.service.unit_of_work import (
    DeadLetterEntry,
    DueTrigger,
    HistoryEntry,
    InboxEntry,
    LedgerRow,
    NotificationRequest,
    UnitOfWork,
)
from tests.unit.domain_builders import campaign_in
from tests.unit.fakes import FakeUnitOfWork, Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Backend:
    """A unit-of-work factory plus read-only views of what it stored."""

    kind: str
    uow: Callable[[], UnitOfWork]
    outbox: Callable[[], Any]  # async () -> list[OutboxMessage], in publication order
    ledger: Callable[[], Any]  # async () -> list[LedgerRow-like tuples], in insertion order
    statements: Callable[[], Any]  # async () -> dict[UUID, Statement]
    unique_violation: type[BaseException]


def fake_backend() -> Backend:
    store = Store()

    async def outbox() -> list[OutboxMessage]:
        return list(store.outbox)

    async def ledger() -> list[tuple[Any, ...]]:
        return [_ledger_tuple(r.campaign_id, r.entry, r.message_id) for r in store.ledger]

    async def statements() -> dict[uuid.UUID, Statement]:
        return dict(store.statements)

    return Backend(
        "fake", lambda: FakeUnitOfWork(store), outbox, ledger, statements, AssertionError
    )


def _ledger_tuple(campaign_id: uuid.UUID, e: LedgerEntry, message_id: str) -> tuple[Any, ...]:
    return (campaign_id, e.kind, e.amount, e.ref, e.billable, e.reason, e.at, message_id)


@pytest.fixture
async def sql_engine(database_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    engine = create_async_engine(Settings(database_url=database_url).sqlalchemy_url)
    try:
        yield engine, database_url
    finally:
        await engine.dispose()


def sql_backend(engine: AsyncEngine, database_url: str) -> Backend:
    async def fetch(query: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    async def outbox() -> list[OutboxMessage]:
        import json

        rows = await fetch("SELECT topic, key, value, headers::text FROM outbox ORDER BY id")
        return [
            OutboxMessage(r[0], r[1], r[2], tuple(decode_headers(json.loads(r[3])))) for r in rows
        ]

    async def ledger() -> list[tuple[Any, ...]]:
        rows = await fetch("SELECT * FROM ledger_entries ORDER BY id")
        return [
            (
                r["campaign_id"],
                EntryKind(r["kind"]),
                Money(r["amount"], r["currency"]).quantize(),
                r["ref"],
                r["billable"],
                r["reason"],
                r["at"],
                r["message_id"],
            )
            for r in rows
        ]

    async def statements() -> dict[uuid.UUID, Statement]:
        import json

        rows = await fetch("SELECT campaign_id, document::text FROM statements")
        return {r[0]: load_as(Statement, json.loads(r[1])) for r in rows}

    return Backend(
        "sql",
        lambda: SqlUnitOfWork(engine),
        outbox,
        ledger,
        statements,
        asyncpg.exceptions.UniqueViolationError,
    )


@pytest.fixture(params=["fake", pytest.param("sql", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return fake_backend()
    engine, url = request.getfixturevalue("sql_engine")
    return sql_backend(engine, url)


# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


def source(offset: int, topic: str = "campaign.commands") -> Source:
    return Source(topic, 1, offset, b"key", b"\xffnot json", (("h", b"\x00\x01"),))


def inbox(message_id: str, offset: int = 0) -> InboxEntry:
    return InboxEntry(message_id, "campaign.create", source(offset))


def history(
    campaign_id: uuid.UUID, version: int, to_status: Status | None, at: datetime
) -> HistoryEntry:
    return HistoryEntry(
        campaign_id=campaign_id,
        version=version,
        kind="status_changed" if to_status else "updated",
        actor_role="publisher",
        actor_id="pub-1",
        message_id=str(uuid.uuid4()),
        message_type="campaign.approve",
        correlation_id=None,
        occurred_at=at,
        to_status=to_status.value if to_status else None,
        details={"fields": ["title"], "n": 1},
    )


def creative(campaign_id: uuid.UUID, cid: str, **overrides: Any) -> Creative:
    base = Creative(
        id=cid,
        campaign_id=campaign_id,
        name=f"Creative {cid}",
        ad_unit_id="unit-a",
        content=CreativeContent("https://cdn/x.png", "https://shop/", "Buy now"),
    )
    return replace(base, **overrides)


def notification(cause: str, kind: str = "campaign_started") -> NotificationRequest:
    nid = uuid.uuid5(uuid.NAMESPACE_URL, f"{cause}/ada@example.com/{kind}")
    return NotificationRequest(
        id=nid,
        cause_id=cause,
        kind=kind,
        recipient="ada@example.com",
        subject="Your campaign is live",
        campaign_id=uuid.uuid4(),
        creative_id=None,
        template_data={"title": "Winter sale", "n": 3},
        message_id=f"<{nid}@campaign-worker>",
        correlation_id="corr-1",
        requested_at=NOW,
    )


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


async def save(backend: Backend, *campaigns: Campaign) -> None:
    async with backend.uow() as uow:
        await uow.save_campaigns(list(campaigns), NOW)
        await uow.commit()


async def locked(backend: Backend, *ids: uuid.UUID) -> dict[uuid.UUID, Campaign]:
    async with backend.uow() as uow:
        return await uow.lock_campaigns(ids)


# --------------------------------------------------------------------------------------
# Inbox and dead letters
# --------------------------------------------------------------------------------------


async def test_inbox_claims_only_ids_not_seen_before_across_transactions(
    backend: Backend,
) -> None:
    async with backend.uow() as uow:
        assert await uow.claim_inbox([inbox("a", 1), inbox("b", 2)]) == {"a", "b"}
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.claim_inbox([inbox("b", 3), inbox("c", 4)]) == {"c"}
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.claim_inbox([inbox("a", 5), inbox("b", 6), inbox("c", 7)]) == set()
        assert await uow.claim_inbox([]) == set()


async def test_inbox_claim_not_committed_is_forgotten(backend: Backend) -> None:
    async with backend.uow() as uow:
        assert await uow.claim_inbox([inbox("a")]) == {"a"}
    async with backend.uow() as uow:
        assert await uow.claim_inbox([inbox("a")]) == {"a"}


async def test_dead_letters_are_unique_by_source(backend: Backend) -> None:
    first = DeadLetterEntry(source(10), "p.campaign.commands", "invalid_json", "no", None, None)
    other = DeadLetterEntry(source(11), "p.campaign.commands", "unknown_type", "?", "m-1", "x.y")
    async with backend.uow() as uow:
        assert await uow.add_dead_letters([first, other]) == [first, other]
        await uow.commit()
    again = replace(first, code="processing_failed", message="other text")
    new = DeadLetterEntry(source(10, "campaign.catalog"), "p.campaign.catalog", "c", "m")
    async with backend.uow() as uow:
        assert await uow.add_dead_letters([again, new, new]) == [new]
        assert await uow.add_dead_letters([]) == []
        await uow.commit()


# --------------------------------------------------------------------------------------
# Campaigns
# --------------------------------------------------------------------------------------

ROUND_TRIPS = {
    "every optional set": campaign_in(
        Status.PAUSED,
        paused_from=Status.BOOKED,
        rejection_reason="was too vague",
        cancel_reason="n/a",
        penalty=eur("12.50"),
    ),
    "every optional empty": campaign_in(
        Status.DRAFT,
        frequency_cap=None,
        timezone=None,
        penalty=None,
        rejection_reason=None,
        paused_from=None,
    ),
    "zero-decimal currency": campaign_in(
        Status.CANCELLED,
        budget=Money.of("125000", "JPY"),
        penalty=Money.of("700", "JPY"),
        cancel_reason="publisher: policy",
    ),
    "three-decimal currency": campaign_in(Status.LIVE, budget=Money.of("10.125", "BHD")),
    "targeting groups, unicode": campaign_in(
        Status.SUBMITTED,
        title="Hiver – «soldes» 冬",
        targeting=replace(campaign_in(Status.DRAFT).targeting, groups=("g-1", "g-2")),
    ),
    "instants given in another zone": campaign_in(
        Status.BOOKED,
        start_at=datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        end_at=datetime(2027, 1, 1, 0, 0, 1, 250_000, tzinfo=ZoneInfo("America/New_York")),
        timezone="America/New_York",
    ),
}


@pytest.mark.parametrize("name", ROUND_TRIPS)
async def test_campaigns_round_trip_every_field(backend: Backend, name: str) -> None:
    campaign = ROUND_TRIPS[name]
    await save(backend, campaign)
    [reloaded] = (await locked(backend, campaign.id)).values()
    assert reloaded == campaign
    assert reloaded.budget.amount.as_tuple().exponent == campaign.budget.amount.as_tuple().exponent
    assert reloaded.start_at.utcoffset() is not None and reloaded.end_at.utcoffset() is not None
    assert reloaded.start_at == campaign.start_at and reloaded.end_at == campaign.end_at


async def test_lock_campaigns_returns_those_that_exist_and_saving_overwrites(
    backend: Backend,
) -> None:
    a, b = campaign_in(Status.DRAFT), campaign_in(Status.SUBMITTED)
    await save(backend, a, b)
    missing = uuid.uuid4()
    assert await locked(backend, a.id, b.id, missing, a.id) == {a.id: a, b.id: b}
    assert await locked(backend) == {}
    booked = replace(b, status=Status.BOOKED, version=b.version + 1, title="New title")
    await save(backend, booked)
    assert await locked(backend, a.id, b.id) == {a.id: a, b.id: booked}


async def test_a_unit_of_work_reads_its_own_writes(backend: Backend) -> None:
    c = campaign_in(Status.DRAFT)
    product = AdProduct("p-own", "Own", ("u",), True, True, False)
    async with backend.uow() as uow:
        await uow.save_campaigns([c], NOW)
        await uow.save_products([product], NOW)
        assert await uow.lock_campaigns([c.id]) == {c.id: c}
        assert await uow.get_products(["p-own"]) == {"p-own": product}


async def test_nothing_is_kept_without_commit(backend: Backend) -> None:
    c = campaign_in(Status.DRAFT)
    async with backend.uow() as uow:
        await uow.claim_inbox([inbox("m-1")])
        await uow.save_campaigns([c], NOW)
        await uow.add_history([history(c.id, 1, Status.DRAFT, NOW)])
        await uow.add_outbox([OutboxMessage("campaign.events", b"k", b"v")])
        await uow.save_holds({c.id: (frozenset({Hold.SUSPENDED}), "why")}, NOW)
        await uow.add_ledger_rows(
            [LedgerRow(c.id, LedgerEntry(EntryKind.CHARGE, eur("1.00"), "ch-1", NOW), "m-1")]
        )
        # leaves without commit
    assert await locked(backend, c.id) == {}
    assert await backend.outbox() == []
    assert await backend.ledger() == []
    async with backend.uow() as uow:
        assert await uow.status_history([c.id]) == {c.id: []}
        assert (await uow.load_extras([c.id])).holds == {c.id: frozenset()}
        assert await uow.claim_inbox([inbox("m-1")]) == {"m-1"}


async def test_a_failing_body_rolls_back(backend: Backend) -> None:
    c = campaign_in(Status.DRAFT)
    with pytest.raises(RuntimeError):
        async with backend.uow() as uow:
            await uow.save_campaigns([c], NOW)
            raise RuntimeError("handler bug")
    assert await locked(backend, c.id) == {}


async def test_lock_campaigns_of_product_takes_only_open_campaigns(backend: Backend) -> None:
    by_status = {s: campaign_in(s, ad_product_id="prod-x") for s in Status}
    elsewhere = campaign_in(Status.LIVE, ad_product_id="prod-y")
    await save(backend, *by_status.values(), elsewhere)
    async with backend.uow() as uow:
        got = await uow.lock_campaigns_of_product("prod-x")
        assert got == {
            c.id: c for s, c in by_status.items() if s not in (Status.CLOSED, Status.CANCELLED)
        }
        assert await uow.lock_campaigns_of_product("prod-none") == {}


# --------------------------------------------------------------------------------------
# Catalog: products and categories
# --------------------------------------------------------------------------------------


async def test_products_round_trip_and_upsert(backend: Backend) -> None:
    p1 = AdProduct("prod-1", "Banner", ("unit-a", "unit-b"), True, True, False)
    p2 = AdProduct("prod-2", "Gone", (), False, False, True)
    async with backend.uow() as uow:
        await uow.save_products([p1, p2], NOW)
        await uow.commit()
    changed = replace(p1, name="Banner XL", unit_ids=("unit-c",), buyable=False)
    async with backend.uow() as uow:
        assert await uow.get_products(["prod-1", "prod-2", "prod-3"]) == {
            "prod-1": p1,
            "prod-2": p2,
        }
        assert await uow.get_products([]) == {}
        await uow.save_products([changed], NOW)
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.get_products(["prod-1"]) == {"prod-1": changed}


async def test_categories_round_trip_and_upsert(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.save_categories(
            {"books": CategoryState.ACTIVE, "g-1": CategoryState.DEACTIVATED}, NOW
        )
        await uow.commit()
    async with backend.uow() as uow:
        await uow.save_categories({"books": CategoryState.DELETED}, NOW)
        await uow.save_categories({}, NOW)
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.get_categories(["books", "g-1", "nope"]) == {
            "books": CategoryState.DELETED,
            "g-1": CategoryState.DEACTIVATED,
        }
        assert await uow.get_categories([]) == {}


# --------------------------------------------------------------------------------------
# Creatives, holds, accounts (the extras)
# --------------------------------------------------------------------------------------


async def test_creatives_round_trip_with_tombstones(backend: Backend) -> None:
    c, other = uuid.uuid4(), uuid.uuid4()
    live = creative(c, "cr-1", status=CreativeStatus.APPROVED, version=3)
    rejected = creative(c, "cr-2", status=CreativeStatus.REJECTED, rejection_reason="blurry")
    async with backend.uow() as uow:
        await uow.save_creatives([live, rejected, creative(other, "cr-1")], NOW)
        await uow.commit()
    tombstone = replace(rejected, deleted=True, deleted_at=NOW - timedelta(minutes=5), version=2)
    async with backend.uow() as uow:
        await uow.save_creatives([tombstone], NOW)
        await uow.commit()
    empty = uuid.uuid4()
    async with backend.uow() as uow:
        extras = await uow.load_extras([c, empty])
    assert extras.creatives == {c: {"cr-1": live, "cr-2": tombstone}, empty: {}}


async def test_holds_with_suspension_reason_set_and_cleared(backend: Backend) -> None:
    c, plain, untouched = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with backend.uow() as uow:
        await uow.save_holds(
            {
                c: (frozenset({Hold.SUSPENDED, Hold.BILLING_ERROR}), "policy breach"),
                plain: (frozenset({Hold.OUT_OF_BUDGET}), None),
            },
            NOW,
        )
        await uow.commit()
    async with backend.uow() as uow:
        extras = await uow.load_extras([c, plain, untouched])
        assert extras.holds == {
            c: frozenset({Hold.SUSPENDED, Hold.BILLING_ERROR}),
            plain: frozenset({Hold.OUT_OF_BUDGET}),
            untouched: frozenset(),
        }
        assert extras.suspension_reasons == {c: "policy breach", plain: None, untouched: None}
        await uow.save_holds({c: (frozenset(), None)}, NOW)
        await uow.commit()
    async with backend.uow() as uow:
        extras = await uow.load_extras([c])
        assert extras.holds == {c: frozenset()}
        assert extras.suspension_reasons == {c: None}


def an_account(campaign_id: uuid.UUID) -> Account:
    ledger = Ledger(
        "EUR",
        (
            LedgerEntry(EntryKind.CHARGE, eur("1375.00"), "ch-1", NOW),
            LedgerEntry(EntryKind.SPEND, eur("10.01"), "rep-1", NOW, billable=True),
            LedgerEntry(EntryKind.SPEND, eur("2.00"), "rep-1", NOW, False, "not_live"),
        ),
    )
    statement = Statement(
        statement_id="st-1",
        campaign_id=campaign_id,
        billing_type=BillingType.CARD,
        tax_rate=Decimal("0.10"),
        booked=eur("1250.00"),
        spent=eur("10.01"),
        penalty=eur("0.00"),
        tax=eur("1.00"),
        refund=eur("1363.99"),
        final=eur("11.01"),
        charged=eur("1375.00"),
    )
    return Account(
        campaign_id=campaign_id,
        ledger=ledger,
        charges=(ChargeRequest("ch-1", eur("1375.00")),),
        refunds=(
            Refund("rf-1", eur("1363.99"), RefundReason.CLOSED, RefundStatus.FAILED, 2, "503"),
        ),
        impressions=12_000,
        clicks=7,
        statement=statement,
        version=4,
    )


async def test_accounts_round_trip(backend: Backend) -> None:
    c, fresh, none = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    account = an_account(c)
    opened = Account(fresh, Ledger("JPY"))
    async with backend.uow() as uow:
        await uow.save_accounts([account, opened], NOW)
        await uow.commit()
    async with backend.uow() as uow:
        extras = await uow.load_extras([c, fresh, none])
    assert extras.accounts == {c: account, fresh: opened}  # only those with an account
    newer = replace(account, clicks=9, version=5)
    async with backend.uow() as uow:
        await uow.save_accounts([newer], NOW)
        await uow.commit()
    async with backend.uow() as uow:
        assert (await uow.load_extras([c])).accounts == {c: newer}


# --------------------------------------------------------------------------------------
# Ledger rows and statements
# --------------------------------------------------------------------------------------


async def test_ledger_rows_are_kept_in_order(backend: Backend) -> None:
    c = uuid.uuid4()
    entries = [
        LedgerEntry(EntryKind.CHARGE, eur("110.00"), "ch-1", NOW),
        LedgerEntry(EntryKind.SPEND, eur("3.30"), "rep-1", NOW, False, "not_live"),
        LedgerEntry(EntryKind.PENALTY, eur("5.00"), "pen-1", NOW + timedelta(seconds=1)),
        LedgerEntry(EntryKind.REFUND, eur("101.70"), "rf-1", NOW, True, "closed"),
    ]
    async with backend.uow() as uow:
        await uow.add_ledger_rows([LedgerRow(c, e, f"m-{i}") for i, e in enumerate(entries[:2])])
        await uow.commit()
    async with backend.uow() as uow:
        await uow.add_ledger_rows([LedgerRow(c, e, "m-9") for e in entries[2:]])
        await uow.add_ledger_rows([])
        await uow.commit()
    assert await backend.ledger() == [
        _ledger_tuple(c, e, m) for e, m in zip(entries, ["m-0", "m-1", "m-9", "m-9"], strict=True)
    ]


async def test_a_second_statement_for_a_campaign_fails(backend: Backend) -> None:
    c = uuid.uuid4()
    statement = an_account(c).statement
    assert statement is not None
    async with backend.uow() as uow:
        await uow.add_statements([statement], NOW)
        await uow.commit()
    assert await backend.statements() == {c: statement}
    with pytest.raises(backend.unique_violation):
        async with backend.uow() as uow:
            await uow.add_statements([replace(statement, statement_id="st-2")], NOW)
            await uow.commit()
    assert await backend.statements() == {c: statement}


# --------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------


async def test_status_history_in_version_order_without_plain_updates(backend: Backend) -> None:
    c, quiet, none = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t = [NOW + timedelta(hours=i) for i in range(5)]
    async with backend.uow() as uow:
        await uow.add_history(
            [
                history(c, 1, Status.DRAFT, t[0]),
                history(c, 2, None, t[1]),  # an edit: no status reached
                history(quiet, 1, Status.DRAFT, t[0]),
            ]
        )
        await uow.commit()
    async with backend.uow() as uow:
        await uow.add_history([history(c, 3, Status.SUBMITTED, t[2])])
        await uow.add_history(
            [history(c, 4, Status.BOOKED, t[3]), history(c, 5, Status.LIVE, t[4])]
        )
        await uow.add_history([])
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.status_history([c, quiet, none]) == {
            c: [
                (t[0], Status.DRAFT),
                (t[2], Status.SUBMITTED),
                (t[3], Status.BOOKED),
                (t[4], Status.LIVE),
            ],
            quiet: [(t[0], Status.DRAFT)],
            none: [],
        }
        assert await uow.status_history([]) == {}


# --------------------------------------------------------------------------------------
# The scheduler's claims
# --------------------------------------------------------------------------------------


def due_campaigns() -> dict[str, Campaign]:
    h = timedelta(hours=1)
    return {
        "booked, start passed": campaign_in(Status.BOOKED, start_at=NOW - 3 * h, end_at=NOW + h),
        "live, end passed": campaign_in(Status.LIVE, start_at=NOW - 9 * h, end_at=NOW - 2 * h),
        "paused, end passed": campaign_in(Status.PAUSED, start_at=NOW - 9 * h, end_at=NOW - h),
        "booked, both passed": campaign_in(Status.BOOKED, start_at=NOW - 5 * h, end_at=NOW - 4 * h),
        "booked, start due now": campaign_in(Status.BOOKED, start_at=NOW, end_at=NOW + h),
        # never due
        "booked, start ahead": campaign_in(Status.BOOKED, start_at=NOW + h, end_at=NOW + 2 * h),
        "live, end ahead": campaign_in(Status.LIVE, start_at=NOW - h, end_at=NOW + h),
        "closed, end passed": campaign_in(Status.CLOSED, start_at=NOW - 9 * h, end_at=NOW - h),
        "draft, start passed": campaign_in(Status.DRAFT, start_at=NOW - 9 * h, end_at=NOW + h),
        "cancelled": campaign_in(Status.CANCELLED, start_at=NOW - 9 * h, end_at=NOW - h),
    }


async def test_claim_due_starts_and_ends_earliest_first_up_to_the_limit(
    backend: Backend,
) -> None:
    cs = due_campaigns()
    await save(backend, *cs.values())
    expected = [
        DueTrigger(cs["booked, both passed"].id, "start", cs["booked, both passed"].start_at),
        DueTrigger(cs["booked, start passed"].id, "start", cs["booked, start passed"].start_at),
        DueTrigger(cs["live, end passed"].id, "end", cs["live, end passed"].end_at),
        DueTrigger(cs["paused, end passed"].id, "end", cs["paused, end passed"].end_at),
        DueTrigger(cs["booked, start due now"].id, "start", NOW),
    ]
    async with backend.uow() as uow:
        assert await uow.claim_due(NOW, 100) == expected
    async with backend.uow() as uow:
        assert await uow.claim_due(NOW, 3) == expected[:3]
    async with backend.uow() as uow:
        assert await uow.claim_due(NOW - timedelta(days=30), 100) == []


async def test_claim_due_breaks_ties_by_campaign_id(backend: Backend) -> None:
    same = [
        campaign_in(Status.LIVE, start_at=NOW - timedelta(days=2), end_at=NOW - timedelta(days=1))
        for _ in range(5)
    ]
    await save(backend, *same)
    async with backend.uow() as uow:
        got = await uow.claim_due(NOW, 100)
    assert [d.campaign_id for d in got] == sorted(c.id for c in same)


@pytest.mark.integration
async def test_claim_due_skips_rows_another_unit_of_work_holds(
    sql_engine: tuple[AsyncEngine, str],
) -> None:
    backend = sql_backend(*sql_engine)
    due = [
        campaign_in(Status.LIVE, start_at=NOW - timedelta(days=3), end_at=NOW - timedelta(hours=i))
        for i in range(1, 5)
    ]
    await save(backend, *due)
    ordered = [d.id for d in sorted(due, key=lambda c: c.end_at)]
    async with backend.uow() as first:
        taken = await first.claim_due(NOW, 2)
        assert [d.campaign_id for d in taken] == ordered[:2]
        async with backend.uow() as second:
            assert [d.campaign_id for d in await second.claim_due(NOW, 10)] == ordered[2:]
        # `first` ends without commit: its rows are free again
    async with backend.uow() as third:
        assert [d.campaign_id for d in await third.claim_due(NOW, 10)] == ordered


# --------------------------------------------------------------------------------------
# Outbox and notifications
# --------------------------------------------------------------------------------------


async def test_outbox_keeps_order_bytes_and_headers(backend: Backend) -> None:
    first = [
        OutboxMessage("campaign.events", f"k{i}".encode(), f'{{"n":{i}}}'.encode())
        for i in range(5)
    ]
    second = [
        OutboxMessage("campaign.dlq", None, b"\x00\xff raw", (("x", b"\xff\x00"), ("y", b""))),
        OutboxMessage("campaign.notifications", b"k", b"{}", ()),
    ]
    async with backend.uow() as uow:
        await uow.add_outbox(first)
        await uow.commit()
    async with backend.uow() as uow:
        await uow.add_outbox(second)
        await uow.add_outbox([])
        await uow.commit()
    assert await backend.outbox() == first + second


async def test_notifications_are_unique_per_cause_recipient_and_kind(backend: Backend) -> None:
    a, b = notification("cause-1"), notification("cause-1", "campaign_ended")
    async with backend.uow() as uow:
        assert await uow.add_notifications([a, b, a]) == [a, b]
        await uow.commit()
    c = notification("cause-2")
    async with backend.uow() as uow:
        assert await uow.add_notifications([b, c]) == [c]
        assert await uow.add_notifications([]) == []
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.add_notifications([a, b, c]) == []
