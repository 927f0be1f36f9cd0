"""Nothing an inbound record says can hurt the worker: generated envelopes and data, valid in
shape and hostile (huge strings, deep nesting, wrong types, NUL and lone surrogates, numbers
at their extremes, missing and extra fields, bad UUIDs, instants at the edges of the calendar,
amounts with many digits, bytes that are not JSON), go through `translate` and the processor on
real Postgres (the SQL unit of work). Each one ends applied, refused (`command.rejected`), as a
duplicate or dead-lettered, in one committed transaction: translation never raises and the
processor never fails (which in production ends as `processing_failed`).

Each example first brings a campaign of its own into a chosen state (draft to closed, card or
manual, with or without a creative) through ordinary messages, then sends the generated one at
it (mostly at that campaign, sometimes at no campaign). `HOSTILE_EXAMPLES=2000` (with
`--timeout 1200`) searches longer than the default 250 examples (about 20 s)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from campaign_worker import topics
from campaign_worker.adapters.db.errors import is_transient
from campaign_worker.adapters.db.uow import SqlUnitOfWork
from campaign_worker.config import Settings
from campaign_worker.entrypoints import messages as m
from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.inbound import Inbound, Source, Undecodable
from campaign_worker.service.processor import BatchReport, Processor

pytestmark = pytest.mark.integration

T0 = datetime(2031, 3, 1, 12, tzinfo=UTC)
MAX_BYTES = 1_048_576
STATES = ("draft", "submitted", "booked", "live", "paused", "cancelled", "closed", "none")
# The clock of the generated message, per state of its campaign.
CLOCK = {"live": T0 + timedelta(minutes=90), "paused": T0 + timedelta(minutes=90)}
CLOCK["closed"] = T0 + timedelta(hours=4)

# Placeholders a generated value may hold, replaced by this example's real ids.
CID, CHARGE, REFUND, ID = "@cid@", "@charge@", "@refund@", "@id@"
PROD, CAT = "@prod@", "@cat@"  # each example has a product and a category of its own
DEEP = re.compile(rb'"@deep-(\d+)@"')
BIG = re.compile(rb'"@big-(\d+)@"')


# ------------------------------------------------------------------ values


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


OFFSETS = st.sampled_from([0, 60, -300, 345, 14 * 60, -12 * 60, 23 * 60 + 59, -(23 * 60 + 59)])
EXOTIC = st.lists(
    st.sampled_from(
        [
            "\x00",
            "\ud800",
            "\udfff",
            "\u202e",
            "\u200b",
            "\ufeff",
            "\u00e9",
            "e\u0301",
            "\U0001f600",
            "\n",
            "\\",
            '"',
            "a",
        ]
    ),
    min_size=1,
    max_size=8,
).map("".join)
SHORT_TEXT = st.one_of(st.text(max_size=30), EXOTIC, st.text(min_size=1, max_size=5).map(str.strip))


def _instants(local: bool, hostile: bool = True) -> st.SearchStrategy[str]:
    near = st.integers(-3 * 24 * 60, 90 * 24 * 60).map(lambda mins: T0 + timedelta(minutes=mins))
    edge = st.sampled_from(
        [
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(2999, 12, 31, 23, 59, tzinfo=UTC),
            datetime(3000, 1, 1, tzinfo=UTC),
            datetime(2031, 3, 30, 2, 30, tzinfo=UTC),  # a spring-forward gap in Europe
            datetime(2031, 10, 26, 2, 30, tzinfo=UTC),  # a fall-back fold in Europe
        ]
    )
    anywhere = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda d: d.replace(tzinfo=UTC)
    )

    def shown(d: datetime, minutes: int) -> str:
        if local:
            return d.replace(tzinfo=None).isoformat()
        text = d.replace(tzinfo=_offset(minutes)).isoformat()
        return text.replace("+00:00", "Z")

    broken = st.sampled_from(
        ["2031-02-30T00:00:00Z", "yesterday", "2031-03-01", "2031-03-01T12:00:00+25:00", ""]
    )
    if not hostile:
        return st.builds(shown, near, OFFSETS)
    return st.one_of(st.builds(shown, st.one_of(near, near, edge, anywhere), OFFSETS), broken)


AMOUNTS = st.one_of(
    st.from_regex(r"\A-?\d{1,15}(\.\d{1,6})?\Z"),
    st.sampled_from(
        ["0", "0.00", "100.00", "-1.00", "0.001", "999999999999999.999999", "1e5", "NaN", " 1"]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str),
)
NAMED: dict[str, st.SearchStrategy[Any]] = {
    "advertiser_id": st.sampled_from(["adv-1", "adv-2", " adv-1 "]),
    "ad_product_id": st.sampled_from([PROD, PROD, "prod-none"]),
    "creative_id": st.sampled_from(["cr-1", "cr-2"]),
    "ad_unit_id": st.sampled_from(["unit-a", "unit-b", "unit-z"]),
    "charge_id": st.sampled_from([CHARGE, "ch-unknown"]),
    "refund_id": st.sampled_from([REFUND, "rf-unknown"]),
    "category_id": st.sampled_from([CAT, "cat-2"]),
    "email": st.sampled_from(["ada@example.com", "not-an-email", "a@b", "x@" + "y" * 300]),
    "timezone": st.sampled_from(
        ["Europe/Berlin", "UTC", "America/New_York", "Europe", "../../etc/passwd", "Mars/Base"]
    ),
    "per": st.sampled_from(["day", "week", "hour", "month", "fortnight", ""]),
    "file_url": st.sampled_from(
        ["https://cdn.example.com/b.png", "http://[::1", "javascript:alert(1)", "b.png"]
    ),
    "destination_url": st.sampled_from(["https://shop.example.com/", "ftp://x/", "https://"]),
    "amount": AMOUNTS,
    "currency": st.sampled_from(["EUR", "USD", "JPY", "BHD", "XXX", "ABC", "eur"]),
    "new_campaign_id": st.one_of(st.uuids().map(str), st.just(CID)),
    "unit_ids": st.lists(st.sampled_from(["unit-a", "unit-b"]), max_size=3),
    "categories": st.lists(st.sampled_from([CAT, "cat-2", "cat-gone"]), max_size=3),
}

HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            0,
            -1,
            2**63,
            -(2**63) - 1,
            10**40,
            1e308,
            -0.0,
            1.5,
            "",
            " ",
            [],
            {},
            [None],
            {"": None},
            "not-a-uuid",
            str(uuid.UUID(int=0)),
        ]
    ),
    EXOTIC,
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([201, 1001, 5001, 70_000, MAX_BYTES + 1]).map(lambda n: f"@big-{n}@"),
    st.sampled_from([5, 200, 999, 1500, 50_000]).map(lambda n: f"@deep-{n}@"),
    st.lists(st.text(max_size=3), min_size=501, max_size=600),
    st.sampled_from(["1.0", "0.3", "campaign.submit", "advertiser", "publisher", "system"]),
    st.deferred(lambda: _instants(local=False)),
    st.deferred(lambda: _instants(local=True)),
)


def _value(
    name: str, schema: dict[str, Any], defs: dict[str, Any], hostile: bool
) -> st.SearchStrategy[Any]:
    """Values of the right shape for a JSON Schema node; plausible ones unless `hostile`
    (and even plausible ones break rules often: that is the point)."""

    def value(n: str, s: dict[str, Any]) -> st.SearchStrategy[Any]:
        return _value(n, s, defs, hostile)

    if "$ref" in schema:
        return value(name, defs[schema["$ref"].rsplit("/", 1)[-1]])
    if "anyOf" in schema:
        return st.one_of([value(name, s) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if name in NAMED and kind in ("string", "array"):
        return st.one_of(NAMED[name], NAMED[name], SHORT_TEXT) if hostile else NAMED[name]
    if kind == "string":
        if schema.get("format") == "date-time":
            return _instants(local=name.endswith("_local"), hostile=hostile)
        if schema.get("format") == "uuid":
            return st.one_of(st.uuids().map(str), st.just("not-a-uuid"))
        plausible = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
        if not hostile:
            return plausible
        limit = schema.get("maxLength", 50)
        return st.one_of(
            SHORT_TEXT, plausible, st.sampled_from([limit, limit + 1]).map(lambda n: "x" * n)
        )
    if kind == "integer":
        if not hostile:
            return st.integers(0, 20_000)
        return st.one_of(st.integers(0, 10_000), st.integers(), st.just(2**63))
    if kind == "number":
        return st.floats()
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(value(name, schema.get("items", {})), max_size=4)
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: value(k, v) for k, v in props.items() if k in required},
            optional={k: value(k, v) for k, v in props.items() if k not in required},
        )
    return HOSTILE


def _data_of(spec: m.InboundType, hostile: bool) -> st.SearchStrategy[dict[str, Any]]:
    schema = spec.data.model_json_schema(mode="validation")
    return _value("data", schema, schema.get("$defs", {}), hostile)


PLAUSIBLE = {t: _data_of(spec, False) for t, spec in m.INBOUND_TYPES.items()}
ANY_DATA = {t: _data_of(spec, True) for t, spec in m.INBOUND_TYPES.items()}
Who = tuple[str | None, str | None]  # actorrole, actorid
ROLES: list[Who] = [("advertiser", "adv-1"), ("advertiser", "adv-2"), ("publisher", "pub-1")]
ROLES += [("system", "billing"), ("system", None)]
# who usually sends each kind of message
_ADV: list[Who] = [("advertiser", "adv-1"), ("publisher", "pub-1")]
NATURAL: dict[str, list[Who]] = {
    "campaign": _ADV,
    "creative": _ADV,
    "refund": [("publisher", "pub-1")],
}
NATURAL |= {"review": [("publisher", "pub-1")], "catalog": [("publisher", "pub-1")]}
NATURAL |= {k: [("system", "billing")] for k in ("payment", "delivery", "schedule")}
HOSTILE_ROLES: list[Who] = [
    (None, None),
    ("advertiser", None),
    ("admin", "root"),
    ("publisher", ""),
]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value where a hostile value can go."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, k)
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*path, i)
            yield from _paths(v, (*path, i))


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """One generated inbound record (placeholders for this example's ids), and the state its
    campaign is brought into first. Three in five are plausible messages that may break rules;
    the rest are hostile anywhere, envelope included."""
    hostile = draw(st.sampled_from([False, False, False, True, True]))
    type_ = draw(st.sampled_from(sorted(m.INBOUND_TYPES)))
    if hostile:
        type_ = draw(st.one_of(st.just(type_), st.just(type_), SHORT_TEXT))
    spec = m.INBOUND_TYPES.get(type_)
    natural = st.sampled_from(NATURAL.get(str(type_).split(".")[0], ROLES))
    role, actor_id = draw(st.one_of(natural, st.sampled_from(ROLES)))
    if hostile and draw(st.integers(0, 4)) == 0:
        role, actor_id = draw(st.sampled_from(HOSTILE_ROLES))
    some_text = SHORT_TEXT if hostile else st.text(min_size=1, max_size=20)
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.sampled_from([ID, ID, ID, "0", str(uuid.UUID(int=0))] if hostile else [ID])),
        "source": draw(st.sampled_from(["/ad-platform/web", "/payments", "/ad-server"])),
        "type": type_,
        "subject": draw(
            st.one_of(st.just(CID), st.just(CID), st.just(CID), st.uuids().map(str), some_text)
            if hostile
            else st.sampled_from([CID] * 7 + [str(uuid.UUID(int=1))])
        ),
        "time": draw(st.one_of(st.none(), _instants(local=False, hostile=False))),
        "actorrole": role,
        "actorid": actor_id,
        "correlationid": draw(st.one_of(st.none(), some_text)),
        "data": draw(
            (ANY_DATA if hostile else PLAUSIBLE)[type_]
            if spec is not None
            else st.dictionaries(st.text(), HOSTILE)
        ),
    }
    data = event["data"]
    if type_ in ("campaign.create", "campaign.update") and isinstance(data, dict):
        if draw(st.booleans()):  # local wall-clock times in a zone instead of instants
            for name in ("start", "end"):
                data.pop(f"{name}_at", None)
                data[f"{name}_local"] = draw(_instants(local=True, hostile=hostile))
            data["timezone"] = draw(NAMED["timezone"])
    for key in [k for k, v in event.items() if v is None]:
        if draw(st.booleans()):
            del event[key]
    # hostile: 1-3 changes anywhere (replace a value, delete it, or add a field)
    for _ in range(draw(st.integers(1, 3)) if hostile else 0):
        paths = list(_paths(event))
        in_data = [p for p in paths if p[0] == "data" and len(p) > 1]
        where = draw(st.sampled_from(in_data if in_data and not draw(st.booleans()) else paths))
        parent: Any = event
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(HOSTILE)
        else:
            parent[where[-1]] = draw(HOSTILE)
    topic = spec.topic if spec is not None else topics.COMMANDS
    if hostile:
        topic = draw(st.one_of(st.just(topic), st.sampled_from(topics.INBOUND)))
    raw = (
        ["json", "json", "deep", "huge", "truncated", "not-utf-8", "list"] if hostile else ["json"]
    )
    return {
        "event": event,
        "topic": topic,
        "raw": draw(st.sampled_from(raw)),
        "state": draw(st.sampled_from(STATES)),
        "billing": draw(st.sampled_from(["manual", "card"])),
        "creative": draw(st.booleans()),
        "hostile": hostile,
    }


def _substitute(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, real in ids.items():
            value = value.replace(placeholder, real)
        return value
    if isinstance(value, list):
        return [_substitute(v, ids) for v in value]
    if isinstance(value, dict):
        return {_substitute(k, ids): _substitute(v, ids) for k, v in value.items()}
    return value


def encode(record: dict[str, Any], ids: dict[str, str]) -> bytes:
    event = _substitute(record["event"], ids)
    raw = json.dumps(event).encode()  # lone surrogates are escaped, as any JSON encoder does
    raw = DEEP.sub(lambda g: b"[" * int(g[1]) + b"]" * int(g[1]), raw)
    raw = BIG.sub(lambda g: b'"' + b"x" * int(g[1]) + b'"', raw)
    match record["raw"]:
        case "deep":  # nested deeper than any parser's stack, in a record far below the limit
            return raw[:-1] + b', "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        case "huge":
            return raw[:-1] + b', "extra": "' + b"x" * MAX_BYTES + b'"}'
        case "truncated":
            return raw[: len(raw) // 2]
        case "not-utf-8":
            return json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
        case "list":
            return b"[" + raw + b"]"
    return raw


# ------------------------------------------------------------------ the world of one example


def ce(type_: str, cid: str, data: dict[str, Any], role: str, actor: str | None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/tests",
        "type": type_,
        "subject": cid,
        "actorrole": role,
        "actorid": actor,
        "data": data,
    }


def iso(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


ADV, PUB, SYS = ("advertiser", "adv-1"), ("publisher", "pub-1"), ("system", "scheduler")


def prelude(
    state: str, billing: str, creative: bool, ids: dict[str, str]
) -> list[tuple[datetime, Any]]:
    """(clock, event) steps that bring campaign `ids[CID]` into `state`, its product and
    category first."""
    cid, product, category = ids[CID], ids[PROD], ids[CAT]
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    steps: list[tuple[datetime, Any]] = [(T0, e) for e in catalog(product, category)]
    if state == "none":
        return steps

    def at(clock: datetime, type_: str, data: dict[str, Any], who: tuple[str, Any]) -> None:
        steps.append((clock, ce(type_, cid, data, *who)))

    create = {
        "advertiser_id": "adv-1",
        "title": "Spring sale",
        "ad_product_id": product,
        "budget": {"amount": "100.00", "currency": "EUR"},
        "billing_type": billing,
        "start_at": iso(start),
        "end_at": iso(end),
        "targeting": {"categories": [category]},
        "contact": {"name": "Ada", "email": "ada@example.com"},
    }
    at(T0, "campaign.create", create, ADV)
    if creative:
        content = {
            "file_url": "https://cdn.example.com/a.png",
            "destination_url": "https://shop.example.com/",
            "text": "Spring",
        }
        at(
            T0,
            "creative.create",
            {"creative_id": "cr-1", "name": "A", "ad_unit_id": "unit-a", "content": content},
            ADV,
        )
    if state == "draft":
        return steps
    at(T0, "campaign.submit", {}, ADV)
    if state == "cancelled":
        at(T0, "campaign.cancel", {"reason": "changed plans"}, ADV)
    if state in ("submitted", "cancelled"):
        return steps
    at(T0, "review.campaign_approved", {}, PUB)
    if creative:
        at(T0, "review.creative_approved", {"creative_id": "cr-1"}, PUB)
    if state == "booked":
        return steps
    if state == "closed":
        at(CLOCK["closed"], "schedule.end_due", {"due_at": iso(end)}, SYS)
        return steps
    at(CLOCK["live"], "schedule.start_due", {"due_at": iso(start)}, SYS)
    if state == "paused":
        at(CLOCK["paused"], "campaign.pause", {}, ADV)
    return steps


def catalog(product_id: str, category: str) -> list[dict[str, Any]]:
    product = {
        "ad_product_id": product_id,
        "name": "Banner",
        "unit_ids": ["unit-a", "unit-b"],
        "unit_set_valid": True,
        "buyable": True,
    }
    return [
        ce("catalog.ad_product_upserted", product_id, product, *PUB),
        ce("catalog.category_upserted", category, {"category_id": category, "active": True}, *PUB),
    ]


class World:
    """The processor on the SQL unit of work, with a clock the example sets."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.now = T0
        self.processor = Processor(
            lambda: SqlUnitOfWork(engine),
            physical_topic=lambda t: f"hostile.{t}",
            is_transient=is_transient,
            clock=lambda: self.now,
        )
        self.offset = 0

    def source(self, topic: str, value: bytes) -> Source:
        self.offset += 1
        return Source(topic, 0, self.offset, b"key", value, (("content-type", b"x"),))

    async def send(self, event: dict[str, Any], topic: str | None = None) -> BatchReport:
        spec = m.INBOUND_TYPES[event["type"]]
        item = translate(
            self.source(topic or spec.topic, json.dumps(event).encode()), max_bytes=MAX_BYTES
        )
        report = await self.processor.process([item])
        assert report.applied, (event["type"], report.rejected, report.dead_lettered)
        return report

    async def money_ids(self, ids: dict[str, str]) -> dict[str, str]:
        """`ids` with the charge and refund ids the worker asked the payment service for."""
        cid = ids[CID]
        ids = {**ids, CHARGE: "ch-none", REFUND: "rf-none"}
        async with SqlUnitOfWork(self.engine) as uow:
            rows = await uow.pg.fetch(
                "SELECT value FROM outbox WHERE topic = $1 AND key = $2 ORDER BY id",
                topics.SETTLEMENTS,
                cid.encode(),
            )
        for row in rows:
            body = json.loads(row["value"])
            if body["type"] == "payment.charge_requested":
                ids[CHARGE] = body["data"]["charge_id"]
            elif body["type"] == "payment.refund_requested":
                ids[REFUND] = body["data"]["refund_id"]
        return ids


def outcome(report: BatchReport, item: Inbound | Undecodable) -> str:
    """What became of the one message of a batch."""
    if report.dead_lettered:
        assert isinstance(item, Undecodable) and len(report.dead_lettered) == 1
        assert report.dead_lettered[0].code != "processing_failed"
        return f"dead:{report.dead_lettered[0].code}"
    assert isinstance(item, Inbound)
    if report.duplicates:
        return "duplicate"
    if report.rejected:
        [(_, code)] = report.rejected
        return f"rejected:{code}"
    assert report.applied == [item]
    return "applied"


@pytest.fixture
def engine_url(database_url: str) -> str:
    return Settings(database_url=database_url).sqlalchemy_url


def test_no_record_crashes_translation_or_the_processor(engine_url: str) -> None:
    outcomes: Counter[str] = Counter()
    with asyncio.Runner() as runner:
        engine = create_async_engine(engine_url, pool_size=2)
        world = World(engine)

        @settings(
            max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "250")),
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(record=records())
        def one(record: dict[str, Any]) -> None:
            outcomes[runner.run(_example(world, record))] += 1

        try:
            one()
        finally:
            runner.run(engine.dispose())
    print("outcomes:", ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items())))
    # not vacuous: every kind of outcome happened, and many distinct ones
    kinds = {o.split(":")[0] for o in outcomes}
    assert {"applied", "rejected", "dead"} <= kinds, outcomes
    assert sum(n for o, n in outcomes.items() if o.startswith("dead:")) < sum(outcomes.values())
    assert len(outcomes) >= 8, outcomes


async def _example(world: World, record: dict[str, Any]) -> str:
    n = uuid.uuid4()
    ids = {CID: str(n), ID: str(uuid.uuid4()), PROD: f"prod-{n.hex[:8]}", CAT: f"cat-{n.hex[:8]}"}
    for clock, event in prelude(record["state"], record["billing"], record["creative"], ids):
        world.now = clock
        await world.send(event)
    world.now = CLOCK.get(record["state"], T0)
    raw = encode(record, await world.money_ids(ids))
    item = translate(world.source(record["topic"], raw), max_bytes=MAX_BYTES)
    report = await world.processor.process([item])
    return outcome(report, item)


# ------------------------------------------------------------------ what it found, pinned


def _event(type_: str, data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**ce(type_, CID, data, *ADV), **fields}


FOUND = {
    # a NUL in the type of an unknown message went into the dead-letter row: Postgres refused
    # it, so the dead letter could not be stored, and the batch failed on every retry
    "nul-in-type": {"event": _event("\x00", {}), "raw": "json"},
    "nul-in-id": {"event": _event("campaign.submit", {}, id="a\x00"), "raw": "json"},
    # RecursionError out of translate
    "deep": {"event": _event("campaign.submit", {}), "raw": "deep"},
    # IsADirectoryError out of translate
    "zone-folder": {
        "event": _event(
            "campaign.update", {"start_local": "2031-03-02T09:00:00", "timezone": "Europe"}
        ),
        "raw": "json",
    },
    # OverflowError in the processor
    "year-1": {
        "event": _event("campaign.update", {"start_at": "0001-01-01T00:00:00+14:00"}),
        "raw": "json",
    },
}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nul-in-type", "dead:not_cloudevent"),
        ("nul-in-id", "dead:not_cloudevent"),
        ("deep", "dead:not_json"),
        ("zone-folder", "rejected:validation_failed"),
        ("year-1", "dead:invalid_data"),
    ],
)
async def test_what_the_property_test_found_stays_fixed(
    engine_url: str, case: str, expected: str
) -> None:
    engine = create_async_engine(engine_url)
    try:
        world = World(engine)
        record: dict[str, Any] = {**FOUND[case], "topic": topics.COMMANDS}
        record |= {"state": "draft", "billing": "manual", "creative": False}
        assert await _example(world, record) == expected
    finally:
        await engine.dispose()
