"""The SQL unit of work: one transaction on one connection, one prepared statement per table
touched, so that a batch of messages costs a handful of round trips and no SQL building.

Every statement is a constant written once at import: writes are `INSERT ... SELECT FROM
unnest($1::uuid[], $2::text[], ...)` (one array per column, one execution per batch, with
`ON CONFLICT` and `RETURNING` where the protocol needs them), reads are `= ANY($1)`. They run
on the asyncpg connection under the pooled SQLAlchemy connection, in that connection's
transaction; asyncpg's statement cache keeps them prepared for the life of the connection.
jsonb values travel as JSON text and are cast in the statement; on the way back the engine's
codec decodes them, except a campaign's targeting and frequency cap, read as text and parsed
once per distinct document.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Self
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from campaign_worker.adapters.db.codec import dump, load_as
from campaign_worker.domain.model import (
    AdProduct,
    BillingType,
    Campaign,
    CategoryState,
    Contact,
    Creative,
    CreativeContent,
    CreativeStatus,
    FrequencyCap,
    Status,
    Targeting,
)
from campaign_worker.domain.money import Money, exponent_of
from campaign_worker.domain.serving import Hold
from campaign_worker.domain.settlement import Account, Statement
from campaign_worker.service.envelope import OutboxMessage
from campaign_worker.service.unit_of_work import (
    CampaignExtras,
    DeadLetterEntry,
    DueSettlement,
    DueTrigger,
    HistoryEntry,
    InboxEntry,
    LedgerRow,
    NotificationRequest,
)


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON text of plain values, as `json.dumps` writes it. CPython's C encoder is
    built once here: `dumps` builds it again on every call, which is most of its cost for
    the small documents of a row (4 us against 1.4 us)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(separators=(",", ":")).encode
    chunks = make(
        None,  # no circular-reference check: rows hold trees
        json.JSONEncoder().default,  # raises TypeError for what JSON cannot hold
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        True,
    )
    return lambda value: "".join(chunks(value, 0))


_dumps = _json_encoder()


def encode_headers(headers: Iterable[tuple[str, bytes]]) -> list[list[str]]:
    return [[k, base64.b64encode(v).decode()] for k, v in headers]


def decode_headers(stored: Iterable[Sequence[str]]) -> list[tuple[str, bytes]]:
    return [(k, base64.b64decode(v)) for k, v in stored]


_HEADERS_JSON: dict[tuple[tuple[str, bytes], ...], str] = {}


def _headers_json(headers: tuple[tuple[str, bytes], ...]) -> str:
    """The stored (jsonb) form of a header tuple; the few distinct ones are kept encoded."""
    text = _HEADERS_JSON.get(headers)
    if text is None:
        text = _dumps(encode_headers(headers))
        if len(_HEADERS_JSON) < 256:
            _HEADERS_JSON[headers] = text
    return text


def campaign_to_row(c: Campaign, now: datetime) -> dict[str, Any]:
    return {
        "id": c.id,
        "advertiser_id": c.advertiser_id,
        "title": c.title,
        "ad_product_id": c.ad_product_id,
        "budget_amount": c.budget.amount,
        "currency": c.budget.currency,
        "billing_type": c.billing_type.value,
        "start_at": c.start_at,
        "end_at": c.end_at,
        "targeting": {
            "categories": list(c.targeting.categories),
            "groups": list(c.targeting.groups),
        },
        "frequency_cap": (
            {"impressions": c.frequency_cap.impressions, "per": c.frequency_cap.per}
            if c.frequency_cap
            else None
        ),
        "contact_name": c.contact.name,
        "contact_email": c.contact.email,
        "timezone": c.timezone,
        "status": c.status.value,
        "paused_from": c.paused_from.value if c.paused_from else None,
        "version": c.version,
        "rejection_reason": c.rejection_reason,
        "cancel_reason": c.cancel_reason,
        "penalty_amount": c.penalty.amount if c.penalty else None,
        "updated_at": now,
    }


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount=amount, currency=currency).quantize()


# Row mapping runs for every row of every batch; these keep it to dictionary lookups.
_STATUS: Mapping[str, Status] = {s.value: s for s in Status}
_BILLING: Mapping[str, BillingType] = {b.value: b for b in BillingType}
_CREATIVE_STATUS: Mapping[str, CreativeStatus] = {s.value: s for s in CreativeStatus}
_HOLD: Mapping[str, Hold] = {h.value: h for h in Hold}
_CATEGORY: Mapping[str, CategoryState] = {c.value: c for c in CategoryState}
_QUANTA: dict[str, Decimal] = {}


def _stored_money(amount: Decimal, currency: str) -> Money:
    """`Money(amount, currency).quantize()` (half-up to the minor unit, no negative zero)
    with one Money built instead of two: stored amounts carry the column's four decimals."""
    quantum = _QUANTA.get(currency)
    if quantum is None:
        quantum = _QUANTA[currency] = Decimal(1).scaleb(-exponent_of(currency))
    value = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    if value.is_zero():
        value = value.copy_abs()
    return Money(value, currency)


class _Memo(dict[Any, Any]):
    """A bounded memo of immutable values (cleared when full): most campaigns share a few
    targeting documents and frequency caps."""

    def put(self, key: Any, value: Any) -> Any:
        if len(self) >= 4096:
            self.clear()
        self[key] = value
        return value


_TARGETING_IN: _Memo = _Memo()  # stored JSON text -> Targeting
_CAP_IN: _Memo = _Memo()  # stored JSON text -> FrequencyCap
_TARGETING_OUT: _Memo = _Memo()  # Targeting -> JSON text
_CAP_OUT: _Memo = _Memo()  # FrequencyCap -> JSON text


def _targeting(text: str) -> Targeting:
    found = _TARGETING_IN.get(text)
    if found is None:
        doc = json.loads(text)
        found = _TARGETING_IN.put(
            text,
            Targeting(
                categories=tuple(doc.get("categories", ())), groups=tuple(doc.get("groups", ()))
            ),
        )
    return found  # type: ignore[no-any-return]


def _cap(text: str | None) -> FrequencyCap | None:
    if text is None:
        return None
    found = _CAP_IN.get(text)
    if found is None:
        doc = json.loads(text)
        found = _CAP_IN.put(
            text, FrequencyCap(impressions=doc["impressions"], per=doc["per"]) if doc else None
        )
    return found  # type: ignore[no-any-return]


def _targeting_json(t: Targeting) -> str:
    text = _TARGETING_OUT.get(t)
    if text is None:
        text = _TARGETING_OUT.put(
            t, _dumps({"categories": list(t.categories), "groups": list(t.groups)})
        )
    return text  # type: ignore[no-any-return]


def _cap_json(fc: FrequencyCap | None) -> str | None:
    if fc is None:
        return None
    text = _CAP_OUT.get(fc)
    if text is None:
        text = _CAP_OUT.put(fc, _dumps({"impressions": fc.impressions, "per": fc.per}))
    return text  # type: ignore[no-any-return]


def row_to_campaign(r: Any) -> Campaign:
    """A campaign from a row with attribute access (a SQLAlchemy row of `campaigns`)."""
    fc = r.frequency_cap
    return Campaign(
        id=r.id,
        advertiser_id=r.advertiser_id,
        title=r.title,
        ad_product_id=r.ad_product_id,
        budget=_money(r.budget_amount, r.currency),
        billing_type=BillingType(r.billing_type),
        start_at=r.start_at,
        end_at=r.end_at,
        targeting=Targeting(
            categories=tuple(r.targeting.get("categories", ())),
            groups=tuple(r.targeting.get("groups", ())),
        ),
        frequency_cap=FrequencyCap(impressions=fc["impressions"], per=fc["per"]) if fc else None,
        contact=Contact(name=r.contact_name, email=r.contact_email),
        timezone=r.timezone,
        status=Status(r.status),
        paused_from=Status(r.paused_from) if r.paused_from else None,
        version=r.version,
        rejection_reason=r.rejection_reason,
        cancel_reason=r.cancel_reason,
        penalty=_money(r.penalty_amount, r.currency) if r.penalty_amount is not None else None,
    )


def _campaign(r: Sequence[Any]) -> Campaign:
    """A campaign from the values of `_CAMPAIGN_COLUMNS` (targeting and frequency cap as
    JSON text), in that order."""
    currency, paused_from, penalty = r[5], r[15], r[19]
    return Campaign(
        id=r[0],
        advertiser_id=r[1],
        title=r[2],
        ad_product_id=r[3],
        budget=_stored_money(r[4], currency),
        billing_type=_BILLING[r[6]],
        start_at=r[7],
        end_at=r[8],
        targeting=_targeting(r[9]),
        frequency_cap=_cap(r[10]),
        contact=Contact(name=r[11], email=r[12]),
        timezone=r[13],
        status=_STATUS[r[14]],
        paused_from=_STATUS[paused_from] if paused_from else None,
        version=r[16],
        rejection_reason=r[17],
        cancel_reason=r[18],
        penalty=_stored_money(penalty, currency) if penalty is not None else None,
    )


def row_to_creative(r: Any) -> Creative:
    return Creative(
        id=r.id,
        campaign_id=r.campaign_id,
        name=r.name,
        ad_unit_id=r.ad_unit_id,
        content=CreativeContent(**r.content),
        status=CreativeStatus(r.status),
        rejection_reason=r.rejection_reason,
        deleted=r.deleted,
        deleted_at=r.deleted_at,
        version=r.version,
        paused=r.paused,
    )


def _creative(r: Sequence[Any], campaign_id: UUID | None = None) -> Creative:
    """A creative from the values of `_CREATIVE_COLUMNS`, in that order (content decoded);
    `campaign_id` when the record leaves it out (its first value is then ignored)."""
    return Creative(
        id=r[1],
        campaign_id=r[0] if campaign_id is None else campaign_id,
        name=r[2],
        ad_unit_id=r[3],
        content=CreativeContent(**r[4]),
        status=_CREATIVE_STATUS[r[5]],
        rejection_reason=r[6],
        deleted=r[7],
        deleted_at=r[8],
        version=r[9],
        paused=r[10],
    )


def row_to_product(r: Any) -> AdProduct:
    return AdProduct(
        id=r.id,
        name=r.name,
        unit_ids=tuple(r.unit_ids),
        unit_set_valid=r.unit_set_valid,
        buyable=r.buyable,
        deleted=r.deleted,
    )


def _product(r: Sequence[Any]) -> AdProduct:
    return AdProduct(
        id=r[0],
        name=r[1],
        unit_ids=tuple(r[2]),
        unit_set_valid=r[3],
        buyable=r[4],
        deleted=r[5],
    )


# --------------------------------------------------------------------------------------
# The statements (built once, at import)
# --------------------------------------------------------------------------------------

Columns = Sequence[tuple[str, str]]  # (column, Postgres type); "jsonb" travels as text


def _insert(
    table: str,
    columns: Columns,
    *,
    scalars: Columns = (),
    conflict: str = "",
    returning: str = "",
    ordered: bool = False,
) -> str:
    """`INSERT INTO table (...) SELECT ... FROM unnest($1::t1[], ...)`: one array parameter per
    column, then one scalar parameter per `scalars` column (the same value on every row).
    `ordered` inserts in array order (identity columns then follow it)."""
    n = len(columns)
    arrays = ", ".join(
        f"${i}::{'text' if t == 'jsonb' else t}[]" for i, (_, t) in enumerate(columns, 1)
    )
    aliases = ", ".join(f"c{i}" for i in range(1, n + 1))
    values = [
        f"u.c{i}::jsonb" if t == "jsonb" else f"u.c{i}" for i, (_, t) in enumerate(columns, 1)
    ]
    values += [f"${n + i}::{t}" for i, (_, t) in enumerate(scalars, 1)]
    names = ", ".join(f'"{c}"' for c, _ in (*columns, *scalars))
    source = (
        f"unnest({arrays}) WITH ORDINALITY AS u({aliases}, ord)"
        if ordered
        else f"unnest({arrays}) AS u({aliases})"
    )
    sql = f'INSERT INTO "{table}" ({names}) SELECT {", ".join(values)} FROM {source}'
    if ordered:
        sql += " ORDER BY u.ord"
    if conflict:
        sql += f" ON CONFLICT {conflict}"
    if returning:
        sql += f" RETURNING {returning}"
    return sql


def _upsert(table: str, columns: Columns, keys: Sequence[str], scalars: Columns = ()) -> str:
    """One upsert: every given column but the keys is overwritten on conflict."""
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c, _ in (*columns, *scalars) if c not in keys)
    target = ", ".join(f'"{k}"' for k in keys)
    return _insert(table, columns, scalars=scalars, conflict=f"({target}) DO UPDATE SET {updates}")


def _select(table: str, columns: Sequence[str], as_text: Sequence[str] = ()) -> str:
    """SELECT the columns, those in `as_text` cast to text (jsonb parsed by the caller)."""
    names = [f'"{c}"::text' if c in as_text else f'"{c}"' for c in columns]
    return f'SELECT {", ".join(names)} FROM "{table}"'


_NOW = (("updated_at", "timestamptz"),)

_CAMPAIGN_COLUMNS: Columns = (
    ("id", "uuid"),
    ("advertiser_id", "text"),
    ("title", "text"),
    ("ad_product_id", "text"),
    ("budget_amount", "numeric"),
    ("currency", "text"),
    ("billing_type", "text"),
    ("start_at", "timestamptz"),
    ("end_at", "timestamptz"),
    ("targeting", "jsonb"),
    ("frequency_cap", "jsonb"),
    ("contact_name", "text"),
    ("contact_email", "text"),
    ("timezone", "text"),
    ("status", "text"),
    ("paused_from", "text"),
    ("version", "int4"),
    ("rejection_reason", "text"),
    ("cancel_reason", "text"),
    ("penalty_amount", "numeric"),
)
_SELECT_CAMPAIGNS = _select(
    "campaigns", [c for c, _ in _CAMPAIGN_COLUMNS], as_text=("targeting", "frequency_cap")
)
LOCK_CAMPAIGNS = f"{_SELECT_CAMPAIGNS} WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
LOCK_CAMPAIGNS_OF_PRODUCT = (
    f"{_SELECT_CAMPAIGNS} WHERE ad_product_id = $1"
    f" AND status NOT IN ('{Status.CLOSED.value}', '{Status.CANCELLED.value}')"
    " ORDER BY id FOR UPDATE"
)
SAVE_CAMPAIGNS = _upsert("campaigns", _CAMPAIGN_COLUMNS, ("id",), _NOW)

CLAIM_INBOX = _insert(
    "inbox",
    (
        ("message_id", "text"),
        ("type", "text"),
        ("topic", "text"),
        ("partition", "int4"),
        ("offset", "int8"),
    ),
    conflict="(message_id) DO NOTHING",
    returning="message_id",
)

ADD_DEAD_LETTERS = _insert(
    "dead_letters",
    (
        ("topic", "text"),
        ("partition", "int4"),
        ("offset", "int8"),
        ("key", "bytea"),
        ("value", "bytea"),
        ("headers", "jsonb"),
        ("error_code", "text"),
        ("error_message", "text"),
        ("message_id", "text"),
        ("message_type", "text"),
    ),
    conflict="ON CONSTRAINT uq_dead_letters_source DO NOTHING",
    returning='topic, "partition", "offset"',
    ordered=True,
)

ADD_HISTORY = _insert(
    "campaign_history",
    (
        ("campaign_id", "uuid"),
        ("version", "int4"),
        ("kind", "text"),
        ("from_status", "text"),
        ("to_status", "text"),
        ("trigger", "text"),
        ("details", "jsonb"),
        ("actor_role", "text"),
        ("actor_id", "text"),
        ("message_id", "text"),
        ("message_type", "text"),
        ("correlation_id", "text"),
        ("occurred_at", "timestamptz"),
    ),
    ordered=True,
)
STATUS_HISTORY = (
    "SELECT campaign_id, occurred_at, to_status FROM campaign_history"
    " WHERE campaign_id = ANY($1::uuid[]) AND to_status IS NOT NULL"
    " ORDER BY campaign_id, version"
)

_PRODUCT_COLUMNS: Columns = (
    ("id", "text"),
    ("name", "text"),
    ("unit_ids", "jsonb"),
    ("unit_set_valid", "bool"),
    ("buyable", "bool"),
    ("deleted", "bool"),
)
GET_PRODUCTS = (
    f"{_select('ad_products', [c for c, _ in _PRODUCT_COLUMNS])} WHERE id = ANY($1::text[])"
)
SAVE_PRODUCTS = _upsert("ad_products", _PRODUCT_COLUMNS, ("id",), _NOW)

_CREATIVE_COLUMNS: Columns = (
    ("campaign_id", "uuid"),
    ("id", "text"),
    ("name", "text"),
    ("ad_unit_id", "text"),
    ("content", "jsonb"),
    ("status", "text"),
    ("rejection_reason", "text"),
    ("deleted", "bool"),
    ("deleted_at", "timestamptz"),
    ("version", "int4"),
    ("paused", "bool"),
)
GET_CREATIVES = (
    f"{_select('creatives', [c for c, _ in _CREATIVE_COLUMNS])}"
    " WHERE campaign_id = ANY($1::uuid[]) ORDER BY campaign_id, id"
)
SAVE_CREATIVES = _upsert("creatives", _CREATIVE_COLUMNS, ("campaign_id", "id"), _NOW)

GET_HOLDS = (
    "SELECT campaign_id, holds, suspension_reason FROM campaign_holds"
    " WHERE campaign_id = ANY($1::uuid[])"
)
SAVE_HOLDS = _upsert(
    "campaign_holds",
    (("campaign_id", "uuid"), ("holds", "jsonb"), ("suspension_reason", "text")),
    ("campaign_id",),
    _NOW,
)

GET_ACCOUNTS = (
    "SELECT campaign_id, account FROM campaign_accounts WHERE campaign_id = ANY($1::uuid[])"
)
# Up to this many campaigns, their extras come from one statement (GET_EXTRAS) instead of
# three. Beyond it, three `= ANY` reads cost Postgres less than subqueries per campaign
# (measured on 100,000 campaigns: equal at about 100 ids, 4-5 ms more at 500), and the round
# trips saved are a small part of a large batch.
EXTRAS_IN_ONE_UP_TO = 64

# The creatives (an array of rows, in id order), the holds (a row, or null) and the account of
# each campaign, each a subquery by primary key. It runs after the lock, as its own statement:
# read in the locking statement itself, a batch that waited for another one's lock would see
# that one's extras as they were before it committed (the statement's snapshot).
_CREATIVE_FIELDS = ", ".join(f'cr."{c}"' for c, _ in _CREATIVE_COLUMNS)
GET_EXTRAS = (
    "SELECT w.id,"
    f" ARRAY(SELECT ROW({_CREATIVE_FIELDS}) FROM creatives cr"
    " WHERE cr.campaign_id = w.id ORDER BY cr.id),"
    " (SELECT ROW(h.holds, h.suspension_reason) FROM campaign_holds h"
    " WHERE h.campaign_id = w.id),"
    " (SELECT a.account FROM campaign_accounts a WHERE a.campaign_id = w.id)"
    " FROM unnest($1::uuid[]) AS w(id)"
)
SAVE_ACCOUNTS = _upsert(
    "campaign_accounts",
    (
        ("campaign_id", "uuid"),
        ("account", "jsonb"),
        ("version", "int4"),
        # when the statement is due at the latest (the settlement grace), while it waits
        ("settle_at", "timestamptz"),
        ("live_impressions", "int8"),
        ("live_clicks", "int8"),
    ),
    ("campaign_id",),
    _NOW,
)

ADD_LEDGER_ROWS = _insert(
    "ledger_entries",
    (
        ("campaign_id", "uuid"),
        ("kind", "text"),
        ("amount", "numeric"),
        ("currency", "text"),
        ("ref", "text"),
        ("billable", "bool"),
        ("reason", "text"),
        ("at", "timestamptz"),
        ("message_id", "text"),
    ),
    ordered=True,
)

ADD_STATEMENTS = _insert(
    "statements",
    (("statement_id", "text"), ("campaign_id", "uuid"), ("document", "jsonb")),
    scalars=(("issued_at", "timestamptz"),),
)

GET_CATEGORIES = "SELECT id, state FROM catalog_categories WHERE id = ANY($1::text[])"
SAVE_CATEGORIES = _upsert("catalog_categories", (("id", "text"), ("state", "text")), ("id",), _NOW)

# Due starts (BOOKED, start passed) and due ends (SUBMITTED/BOOKED/LIVE/PAUSED, end passed:
# close, or for an unreviewed campaign T12), earliest
# due first, then by id; a BOOKED campaign is due at its start (it starts before it ends: if
# both passed it starts and closes at once). The candidates come from the two status indexes
# in due order, a few batches' worth, so a claim reads a few thousand index entries however
# many campaigns are due (one query ordering every due row sorted all of them, 70-120 ms for
# 100,000); the rows are then locked skipping those another replica holds, and the due
# conditions are repeated on the locked row so a campaign another replica has just moved on
# is not claimed again. More replicas than CLAIM_DUE_CANDIDATES batches may claim short.
CLAIM_DUE_CANDIDATES = 4
_BOOKED = f"'{Status.BOOKED.value}'"
_ENDING = f"'{Status.SUBMITTED.value}', '{Status.LIVE.value}', '{Status.PAUSED.value}'"
CLAIM_DUE = f"""
SELECT c.id, c.status, c.start_at, c.end_at
FROM campaigns c
JOIN (
    (SELECT id, start_at AS due FROM campaigns
     WHERE status = {_BOOKED} AND start_at <= $1
     ORDER BY start_at, id LIMIT $2 * {CLAIM_DUE_CANDIDATES})
    UNION ALL
    (SELECT id, end_at AS due FROM campaigns
     WHERE status IN ({_ENDING}) AND end_at <= $1
     ORDER BY end_at, id LIMIT $2 * {CLAIM_DUE_CANDIDATES})
    UNION ALL
    (SELECT id, end_at AS due FROM campaigns
     WHERE status = {_BOOKED} AND end_at <= $1 AND start_at > $1
     ORDER BY end_at, id LIMIT $2 * {CLAIM_DUE_CANDIDATES})
) d ON d.id = c.id
WHERE (c.status = {_BOOKED} AND c.start_at <= $1)
   OR (c.status IN ({_BOOKED}, {_ENDING}) AND c.end_at <= $1)
ORDER BY d.due, c.id
LIMIT $2
FOR UPDATE OF c SKIP LOCKED
"""

# Closed campaigns whose statement is due by the settlement grace, earliest first.
CLAIM_SETTLEMENTS = """
SELECT a.campaign_id, a.settle_at
FROM campaign_accounts a JOIN campaigns c ON c.id = a.campaign_id
WHERE a.settle_at IS NOT NULL AND a.settle_at <= $1
ORDER BY a.settle_at, a.campaign_id
LIMIT $2
FOR UPDATE OF c SKIP LOCKED
"""

# The LIVE impressions and clicks of the campaigns of some products that have enough of them.
RELEVANCE_PEERS = """
SELECT c.ad_product_id, a.campaign_id, a.live_impressions, a.live_clicks
FROM campaigns c JOIN campaign_accounts a ON a.campaign_id = c.id
WHERE c.ad_product_id = ANY($1::text[]) AND a.live_impressions >= $2
"""

ADD_OUTBOX = _insert(
    "outbox",
    (("topic", "text"), ("key", "bytea"), ("value", "bytea"), ("headers", "jsonb")),
    ordered=True,  # id order is publication order
)

ADD_NOTIFICATIONS = _insert(
    "notifications",
    (
        ("id", "uuid"),
        ("cause_id", "text"),
        ("recipient", "text"),
        ("kind", "text"),
        ("campaign_id", "uuid"),
        ("creative_id", "text"),
        ("correlation_id", "text"),
        ("message_id", "text"),
        ("payload", "jsonb"),
        ("next_attempt_at", "timestamptz"),  # requested_at, three times:
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    conflict="DO NOTHING",
    returning="id",
    ordered=True,
)

# every statement, for the test that prepares each one against the migrated schema
STATEMENTS: Mapping[str, str] = {
    "CLAIM_INBOX": CLAIM_INBOX,
    "ADD_DEAD_LETTERS": ADD_DEAD_LETTERS,
    "LOCK_CAMPAIGNS": LOCK_CAMPAIGNS,
    "LOCK_CAMPAIGNS_OF_PRODUCT": LOCK_CAMPAIGNS_OF_PRODUCT,
    "SAVE_CAMPAIGNS": SAVE_CAMPAIGNS,
    "ADD_HISTORY": ADD_HISTORY,
    "STATUS_HISTORY": STATUS_HISTORY,
    "GET_PRODUCTS": GET_PRODUCTS,
    "SAVE_PRODUCTS": SAVE_PRODUCTS,
    "GET_CREATIVES": GET_CREATIVES,
    "SAVE_CREATIVES": SAVE_CREATIVES,
    "GET_HOLDS": GET_HOLDS,
    "SAVE_HOLDS": SAVE_HOLDS,
    "GET_ACCOUNTS": GET_ACCOUNTS,
    "GET_EXTRAS": GET_EXTRAS,
    "SAVE_ACCOUNTS": SAVE_ACCOUNTS,
    "ADD_LEDGER_ROWS": ADD_LEDGER_ROWS,
    "ADD_STATEMENTS": ADD_STATEMENTS,
    "GET_CATEGORIES": GET_CATEGORIES,
    "SAVE_CATEGORIES": SAVE_CATEGORIES,
    "CLAIM_DUE": CLAIM_DUE,
    "CLAIM_SETTLEMENTS": CLAIM_SETTLEMENTS,
    "RELEVANCE_PEERS": RELEVANCE_PEERS,
    "ADD_OUTBOX": ADD_OUTBOX,
    "ADD_NOTIFICATIONS": ADD_NOTIFICATIONS,
}


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one (its transaction, its statement cache)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


class SqlUnitOfWork:
    """A pooled connection and one transaction on it: the asyncpg transaction of that
    connection, started on entry, committed by `commit`, rolled back otherwise."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._pg: Any = None  # asyncpg.Connection
        self._tx: Any = None  # asyncpg Transaction, until commit is tried

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._conn

    @property
    def pg(self) -> Any:
        """The asyncpg connection the statements run on."""
        if self._pg is None:
            raise RuntimeError("unit of work used outside 'async with'")
        return self._pg

    async def __aenter__(self) -> Self:
        conn = await self._engine.connect()
        try:
            pg = await driver_connection(conn)
            tx = pg.transaction()
            await tx.start()
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        self._conn, self._pg, self._tx = conn, pg, tx
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, pg, tx = self._conn, self._pg, self._tx
        self._conn = self._pg = self._tx = None
        if conn is None:
            return
        try:
            if not pg.is_closed():
                if tx is not None:
                    await tx.rollback()
                elif pg.is_in_transaction():  # a commit that failed half-way
                    await pg.execute("ROLLBACK")
        except BaseException:
            await conn.invalidate()
            raise
        finally:
            if pg.is_closed():
                await conn.invalidate()  # lost: the pool must not hand it out again
            await conn.close()

    async def commit(self) -> None:
        tx, self._tx = self._tx, None
        if tx is None:
            raise RuntimeError("unit of work used outside 'async with' or committed twice")
        await tx.commit()

    async def claim_inbox(self, entries: Sequence[InboxEntry]) -> set[str]:
        if not entries:
            return set()
        rows = await self.pg.fetch(
            CLAIM_INBOX,
            [e.message_id for e in entries],
            [e.type for e in entries],
            [e.source.topic for e in entries],
            [e.source.partition for e in entries],
            [e.source.offset for e in entries],
        )
        return {r[0] for r in rows}

    async def add_dead_letters(self, entries: Sequence[DeadLetterEntry]) -> list[DeadLetterEntry]:
        if not entries:
            return []
        sources = [e.source for e in entries]
        rows = await self.pg.fetch(
            ADD_DEAD_LETTERS,
            [s.topic for s in sources],
            [s.partition for s in sources],
            [s.offset for s in sources],
            [s.key for s in sources],
            [s.value for s in sources],
            [_dumps(encode_headers(s.headers)) for s in sources],
            [e.code for e in entries],
            [e.message for e in entries],
            [e.message_id for e in entries],
            [e.type for e in entries],
        )
        new = {(r[0], r[1], r[2]) for r in rows}
        stored = []
        for e in entries:  # the first of several entries with one source is the stored one
            k = (e.source.topic, e.source.partition, e.source.offset)
            if k in new:
                new.discard(k)
                stored.append(e)
        return stored

    async def lock_campaigns(self, ids: Iterable[UUID]) -> dict[UUID, Campaign]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = await self.pg.fetch(LOCK_CAMPAIGNS, wanted)
        return {r[0]: _campaign(r) for r in rows}

    async def save_campaigns(self, items: Sequence[Campaign], now: datetime) -> None:
        if not items:
            return
        columns = list(zip(*(_campaign_values(c) for c in items), strict=True))
        await self.pg.execute(SAVE_CAMPAIGNS, *columns, now)

    async def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        columns = list(
            zip(
                *(
                    (
                        e.campaign_id,
                        e.version,
                        e.kind,
                        e.from_status,
                        e.to_status,
                        e.trigger,
                        _dumps(dict(e.details)) if e.details else "{}",
                        e.actor_role,
                        e.actor_id,
                        e.message_id,
                        e.message_type,
                        e.correlation_id,
                        e.occurred_at,
                    )
                    for e in entries
                ),
                strict=True,
            )
        )
        await self.pg.execute(ADD_HISTORY, *columns)

    async def get_products(self, ids: Iterable[str]) -> dict[str, AdProduct]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        return {r[0]: _product(r) for r in await self.pg.fetch(GET_PRODUCTS, wanted)}

    async def save_products(self, products: Sequence[AdProduct], now: datetime) -> None:
        if not products:
            return
        await self.pg.execute(
            SAVE_PRODUCTS,
            [p.id for p in products],
            [p.name for p in products],
            [_dumps(list(p.unit_ids)) for p in products],
            [p.unit_set_valid for p in products],
            [p.buyable for p in products],
            [p.deleted for p in products],
            now,
        )

    async def load_extras(self, campaign_ids: Iterable[UUID]) -> CampaignExtras:
        return await _read_extras(self.pg, campaign_ids)

    @staticmethod
    async def read_extras(conn: AsyncConnection, campaign_ids: Iterable[UUID]) -> CampaignExtras:
        """The extras of some campaigns, read on (the transaction of) a SQLAlchemy connection."""
        return await _read_extras(await driver_connection(conn), campaign_ids)

    async def save_accounts(self, accounts: Sequence[Account], now: datetime) -> None:
        if not accounts:
            return
        await self.pg.execute(
            SAVE_ACCOUNTS,
            [a.campaign_id for a in accounts],
            [_dumps(dump(a)) for a in accounts],
            [a.version for a in accounts],
            [a.settle_at if a.settlement_pending else None for a in accounts],
            [a.live_impressions for a in accounts],
            [a.live_clicks for a in accounts],
            now,
        )

    async def add_ledger_rows(self, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        entries = [r.entry for r in rows]
        await self.pg.execute(
            ADD_LEDGER_ROWS,
            [r.campaign_id for r in rows],
            [e.kind.value for e in entries],
            [e.amount.amount for e in entries],
            [e.amount.currency for e in entries],
            [e.ref for e in entries],
            [e.billable for e in entries],
            [e.reason for e in entries],
            [e.at for e in entries],
            [r.message_id for r in rows],
        )

    async def add_statements(self, items: Sequence[Statement], now: datetime) -> None:
        if not items:
            return
        await self.pg.execute(
            ADD_STATEMENTS,
            [st.statement_id for st in items],
            [st.campaign_id for st in items],
            [_dumps(dump(st)) for st in items],
            now,
        )

    async def status_history(
        self, campaign_ids: Iterable[UUID]
    ) -> dict[UUID, list[tuple[datetime, Status]]]:
        wanted = list(set(campaign_ids))
        result: dict[UUID, list[tuple[datetime, Status]]] = {cid: [] for cid in wanted}
        if not wanted:
            return result
        for r in await self.pg.fetch(STATUS_HISTORY, wanted):
            result[r[0]].append((r[1], _STATUS[r[2]]))
        return result

    async def lock_campaigns_of_product(self, product_id: str) -> dict[UUID, Campaign]:
        rows = await self.pg.fetch(LOCK_CAMPAIGNS_OF_PRODUCT, product_id)
        return {r[0]: _campaign(r) for r in rows}

    async def save_creatives(self, items: Sequence[Creative], now: datetime) -> None:
        if not items:
            return
        await self.pg.execute(
            SAVE_CREATIVES,
            [c.campaign_id for c in items],
            [c.id for c in items],
            [c.name for c in items],
            [c.ad_unit_id for c in items],
            [
                _dumps(
                    {
                        "file_url": c.content.file_url,
                        "destination_url": c.content.destination_url,
                        "text": c.content.text,
                    }
                )
                for c in items
            ],
            [c.status.value for c in items],
            [c.rejection_reason for c in items],
            [c.deleted for c in items],
            [c.deleted_at for c in items],
            [c.version for c in items],
            [c.paused for c in items],
            now,
        )

    async def save_holds(
        self, holds: Mapping[UUID, tuple[frozenset[Hold], str | None]], now: datetime
    ) -> None:
        if not holds:
            return
        await self.pg.execute(
            SAVE_HOLDS,
            list(holds),
            [_dumps(sorted(h.value for h in held)) for held, _ in holds.values()],
            [reason for _, reason in holds.values()],
            now,
        )

    async def get_categories(self, ids: Iterable[str]) -> dict[str, CategoryState]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        return {r[0]: _CATEGORY[r[1]] for r in await self.pg.fetch(GET_CATEGORIES, wanted)}

    async def save_categories(self, states: Mapping[str, CategoryState], now: datetime) -> None:
        if not states:
            return
        await self.pg.execute(
            SAVE_CATEGORIES, list(states), [v.value for v in states.values()], now
        )

    async def claim_due(self, now: datetime, limit: int) -> list[DueTrigger]:
        triggers = []
        booked = Status.BOOKED.value
        for r in await self.pg.fetch(CLAIM_DUE, now, limit):
            if r[1] == booked and r[2] <= now:
                triggers.append(DueTrigger(r[0], "start", r[2]))
            else:
                triggers.append(DueTrigger(r[0], "end", r[3]))
        return triggers

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        if not messages:
            return
        await self.pg.execute(
            ADD_OUTBOX,
            [m.topic for m in messages],
            [m.key for m in messages],
            [m.value for m in messages],
            [_headers_json(m.headers) for m in messages],
        )

    async def add_notifications(
        self, requests: Sequence[NotificationRequest]
    ) -> list[NotificationRequest]:
        if not requests:
            return []
        requested_at = [n.requested_at for n in requests]
        rows = await self.pg.fetch(
            ADD_NOTIFICATIONS,
            [n.id for n in requests],
            [n.cause_id for n in requests],
            [n.recipient for n in requests],
            [n.kind for n in requests],
            [n.campaign_id for n in requests],
            [n.creative_id for n in requests],
            [n.correlation_id for n in requests],
            [n.message_id for n in requests],
            [
                _dumps(
                    {
                        "subject": n.subject,
                        "to": n.recipient,
                        "template_data": dict(n.template_data),
                    }
                )
                for n in requests
            ],
            requested_at,
            requested_at,
            requested_at,
        )
        new = {r[0] for r in rows}
        stored = []
        for n in requests:  # the first of several requests with one id is the stored one
            if n.id in new:
                new.discard(n.id)
                stored.append(n)
        return stored

    async def claim_settlements(self, now: datetime, limit: int) -> list[DueSettlement]:
        # The campaign row is what is locked (as by claim_due and every message batch), so
        # a tick and a batch never lock the same campaign's rows in opposite orders.
        rows = await self.pg.fetch(CLAIM_SETTLEMENTS, now, limit)
        return [DueSettlement(r[0], r[1]) for r in rows]

    async def relevance_peers(
        self, product_ids: Iterable[str], min_impressions: int
    ) -> dict[str, dict[UUID, tuple[int, int]]]:
        wanted = sorted(set(product_ids))
        result: dict[str, dict[UUID, tuple[int, int]]] = {p: {} for p in wanted}
        if not wanted:
            return result
        for r in await self.pg.fetch(RELEVANCE_PEERS, wanted, min_impressions):
            result[r[0]][r[1]] = (r[2], r[3])
        return result


def _campaign_values(c: Campaign) -> tuple[Any, ...]:
    """The values of `_CAMPAIGN_COLUMNS` for one campaign, in that order."""
    return (
        c.id,
        c.advertiser_id,
        c.title,
        c.ad_product_id,
        c.budget.amount,
        c.budget.currency,
        c.billing_type.value,
        c.start_at,
        c.end_at,
        _targeting_json(c.targeting),
        _cap_json(c.frequency_cap),
        c.contact.name,
        c.contact.email,
        c.timezone,
        c.status.value,
        c.paused_from.value if c.paused_from else None,
        c.version,
        c.rejection_reason,
        c.cancel_reason,
        c.penalty.amount if c.penalty else None,
    )


async def _read_extras(pg: Any, campaign_ids: Iterable[UUID]) -> CampaignExtras:
    wanted = list(set(campaign_ids))
    extras = CampaignExtras(
        creatives={cid: {} for cid in wanted},
        holds=dict.fromkeys(wanted, frozenset()),
        suspension_reasons=dict.fromkeys(wanted),
    )
    if not wanted:
        return extras
    if len(wanted) <= EXTRAS_IN_ONE_UP_TO:
        for r in await pg.fetch(GET_EXTRAS, wanted):
            cid, held = r[0], r[2]  # held: (holds, suspension reason), or None without a row
            extras.creatives[cid] = {cr[1]: _creative(cr, cid) for cr in r[1]}
            if held is not None:
                extras.holds[cid] = frozenset(_HOLD[h] for h in held[0])
                extras.suspension_reasons[cid] = held[1]
            if r[3] is not None:
                extras.accounts[cid] = load_as(Account, r[3])
        return extras
    for r in await pg.fetch(GET_CREATIVES, wanted):
        extras.creatives[r[0]][r[1]] = _creative(r)
    for r in await pg.fetch(GET_HOLDS, wanted):
        extras.holds[r[0]] = frozenset(_HOLD[h] for h in r[1])
        extras.suspension_reasons[r[0]] = r[2]
    for r in await pg.fetch(GET_ACCOUNTS, wanted):
        extras.accounts[r[0]] = load_as(Account, r[1])
    return extras


__all__ = [
    "SqlUnitOfWork",
    "campaign_to_row",
    "decode_headers",
    "encode_headers",
    "row_to_campaign",
    "row_to_creative",
    "row_to_product",
]
