"""The three registries of an inbound message, held together: its wire type (and payload
model, `entrypoints/messages.py`), the command class it is translated into
(`entrypoints/translate.py`, `domain/commands.py`) and that command's one handler
(`service/routing.py`). A type without a command or a command without a handler fails here and
stops the worker at start, never on a message."""

from __future__ import annotations

import json
import typing
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from campaign_worker.domain.commands import Command
from campaign_worker.entrypoints.messages import INBOUND_TYPES
from campaign_worker.entrypoints.translate import translate
from campaign_worker.service.handlers.route import Route
from campaign_worker.service.inbound import Inbound, Source
from campaign_worker.service.routing import ROUTES, RoutingError, _table, check_routes

MONEY = {"amount": "10.00", "currency": "EUR"}
CREATIVE = {"creative_id": "cr-1"}
CONTENT = {
    "file_url": "https://a.example/x.png",
    "destination_url": "https://a.example",
    "text": "t",
}

# One valid `data` per inbound type: adding a type means adding its sample here.
SAMPLES: dict[str, dict[str, Any]] = {
    "campaign.create": {
        "advertiser_id": "adv-1",
        "title": "T",
        "ad_product_id": "p",
        "budget": MONEY,
        "billing_type": "card",
        "start_at": "2030-01-01T00:00:00Z",
        "end_at": "2030-02-01T00:00:00Z",
        "contact": {"name": "A", "email": "a@example.com"},
    },
    "campaign.update": {"title": "New"},
    "campaign.submit": {},
    "campaign.pause": {},
    "campaign.resume": {},
    "campaign.extend_end": {"end_at": "2030-03-01T00:00:00Z"},
    "campaign.cancel": {"reason": "r"},
    "campaign.duplicate": {"new_campaign_id": str(uuid.uuid4())},
    "creative.create": {**CREATIVE, "name": "n", "ad_unit_id": "u", "content": CONTENT},
    "creative.update": {**CREATIVE, "name": "n2"},
    "creative.delete": CREATIVE,
    "creative.pause": CREATIVE,
    "creative.resume": CREATIVE,
    "review.creative_approved": CREATIVE,
    "review.creative_rejected": {**CREATIVE, "reason": "r"},
    "review.campaign_suspended": {"reason": "policy"},
    "review.campaign_reinstated": {},
    "review.landing_page_status": {"available": False},
    "review.campaign_approved": {},
    "review.campaign_rejected": {"reason": "r"},
    "refund.retry": {"refund_id": "rf-1"},
    "payment.charge_succeeded": {"charge_id": "ch-1", "amount": MONEY},
    "payment.charge_failed": {"charge_id": "ch-1", "reason": "declined"},
    "payment.refund_succeeded": {"refund_id": "rf-1", "amount": MONEY},
    "payment.refund_failed": {"refund_id": "rf-1", "reason": "r"},
    "delivery.reported": {
        "period_start": "2030-01-01T00:00:00Z",
        "period_end": "2030-01-01T01:00:00Z",
        "impressions": 10,
        "clicks": 1,
        "spend": MONEY,
    },
    "delivery.final": {},
    "campaign.retry_charge": {},
    "schedule.start_due": {"due_at": "2030-01-01T00:00:00Z"},
    "schedule.end_due": {"due_at": "2030-02-01T00:00:00Z"},
    "catalog.ad_product_upserted": {
        "ad_product_id": "p",
        "name": "P",
        "unit_ids": ["u"],
        "unit_set_valid": True,
        "buyable": True,
    },
    "catalog.ad_product_deleted": {"ad_product_id": "p"},
    "catalog.category_upserted": {"category_id": "c", "active": True},
    "catalog.category_deleted": {"category_id": "c"},
}


def _commands() -> set[type]:
    def flat(t: object) -> set[type]:
        args = typing.get_args(t)
        return set().union(*(flat(a) for a in args)) if args else {t}  # type: ignore[arg-type]

    return flat(Command)


def test_every_inbound_type_has_a_sample_here() -> None:
    assert set(SAMPLES) == set(INBOUND_TYPES)


def test_every_inbound_type_names_a_command_and_every_command_has_one_handler() -> None:
    declared = {spec.command for spec in INBOUND_TYPES.values()}
    assert declared == _commands(), "INBOUND_TYPES and domain.commands.Command disagree"
    assert set(ROUTES) == _commands(), "service/routing.py and domain.commands.Command disagree"
    check_routes()
    check_routes(declared)


@pytest.mark.parametrize("type_", sorted(INBOUND_TYPES))
def test_each_inbound_type_is_translated_into_its_declared_command(type_: str) -> None:
    spec = INBOUND_TYPES[type_]
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/t",
        "type": type_,
        "subject": "p" if not spec.campaign_scoped else str(uuid.uuid4()),
        "actorrole": "publisher",
        "data": SAMPLES[type_],
    }
    item = translate(
        Source(spec.topic, 0, 0, b"k", json.dumps(envelope).encode()), max_bytes=100_000
    )
    assert isinstance(item, Inbound), item
    assert item.refusal is None
    assert type(item.payload) is spec.command
    assert type(item.payload) in ROUTES


@dataclass(frozen=True)
class Unrouted:
    campaign_id: uuid.UUID


def test_a_command_without_a_handler_stops_the_worker_at_start() -> None:
    with pytest.raises(RoutingError, match="Unrouted"):
        check_routes([*_commands(), Unrouted])


def test_a_handler_for_a_command_that_does_not_exist_stops_the_worker_at_start() -> None:
    with pytest.raises(RoutingError, match="handlers of unknown"):
        check_routes(_commands() - {next(iter(ROUTES))})


def test_two_handlers_for_one_command_are_refused() -> None:
    def handle(*_: object) -> None:
        pass

    with pytest.raises(RoutingError, match="two handlers"):
        _table([Route((Unrouted,), handle), Route((Unrouted,), handle)])
