"""Every outgoing type has one typed payload class (`service/outbound.py`) tied to the model
that documents it (`entrypoints/messages_out.py`): the same type names, the same fields, and
payloads built from sample values validate against the model and against `schemas/` with no
undocumented field, so what the worker sends cannot drift from what it documents."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from campaign_worker.domain.model import Actor, BillingType, Role, Status
from campaign_worker.domain.money import Money
from campaign_worker.entrypoints import messages_out
from campaign_worker.service import outbound as out
from campaign_worker.service.outbound import OUTGOING, to_outbox
from tests.support.schemas import validate_outgoing

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
CID = uuid.uuid4()
EUR = Money.of(Decimal("12.5"), "EUR")
ACTOR = Actor(Role.PUBLISHER, "pub-1")
SCHEDULE = out.Schedule(NOW, datetime(2030, 2, 1, tzinfo=UTC), "Europe/Berlin")

# Each type with every optional field set, and (where fields are optional) with none set.
SAMPLES: dict[str, list[out.Outgoing]] = {
    "campaign.status_changed": [
        out.CampaignStatusChanged(CID, None, Status.DRAFT, "created", "Draft", 1, ACTOR, SCHEDULE),
        out.CampaignStatusChanged(
            CID,
            Status.LIVE,
            Status.CANCELLED,
            "fraud",
            "Terminated",
            7,
            ACTOR,
            SCHEDULE,
            trigger="cancel",
            penalty=EUR,
            due_at=NOW,
            lateness_seconds=0.25,
        ),
    ],
    "campaign.serving_changed": [
        out.CampaignServingChanged(
            CID, False, ["billing_error"], "Billing error", ["The card charge failed"], 3
        )
    ],
    "campaign.updated": [
        out.CampaignUpdated(CID, {"title": "T", "budget": EUR, "end_at": NOW}, 2, ACTOR, SCHEDULE)
    ],
    "campaign.duplicated": [
        out.CampaignDuplicated(
            CID,
            uuid.uuid4(),
            ["ad_product_id"],
            ["budget"],
            [("cr-2", "rejected")],
            True,
            ["music"],
            [("cr-1", "cr-1-copy")],
        )
    ],
    "creative.status_changed": [
        out.CreativeStatusChanged(CID, "cr-1", None, "UNDER_REVIEW", "registered"),
        out.CreativeStatusChanged(CID, "cr-1", "UNDER_REVIEW", "APPROVED", "approve"),
    ],
    "creative.updated": [out.CreativeUpdated(CID, "cr-1", ["name"], "APPROVED")],
    "creative.deleted": [out.CreativeDeleted(CID, "cr-1")],
    "delivery.recorded": [
        out.DeliveryRecorded(CID, EUR, EUR, "not_live", [(EUR, "not_live")], EUR, 100, 2),
        out.DeliveryRecorded(CID, EUR, Money.zero("EUR"), None, [], EUR, 0, 0),
    ],
    "command.rejected": [
        out.CommandRejected("m-1", "campaign.submit", "not_found", "no such campaign", CID),
        out.CommandRejected("m-1", "catalog.ad_product_upserted", "forbidden", "no", None),
    ],
    "notification.requested": [
        out.NotificationRequested(
            uuid.uuid4(), "campaign_started", "a@b.example", "S", CID, None, {"title": "T"}
        )
    ],
    "notification.sent": [out.NotificationSent(uuid.uuid4(), 1, None)],
    "notification.failed": [out.NotificationFailed(uuid.uuid4(), 10, "550 no such user")],
    "payment.charge_requested": [out.ChargeRequested(CID, "ch-1", EUR)],
    "payment.refund_requested": [
        out.RefundRequested(CID, "rf-1", EUR, "review_rejected"),
        out.RefundRequested(CID, "rf-1", EUR, "review_rejected", attempt=2),
    ],
    "settlement.statement_issued": [
        out.StatementIssued(
            CID, "st-1", BillingType.CARD, EUR, EUR, EUR, EUR, EUR, EUR, "0.10", EUR
        )
    ],
    "campaign.state": [
        out.CampaignState(
            CID,
            4,
            Status.LIVE,
            "Running",
            True,
            [],
            SCHEDULE,
            EUR,
            BillingType.MANUAL,
            Money.zero("EUR"),
            "display-standard",
            "adv-1",
            [out.StateCreative("cr-1", "APPROVED", "banner-300x250")],
            NOW,
        ),
        out.CampaignState(
            CID,
            9,
            Status.CLOSED,
            "Completed",
            False,
            ["no_approved_creatives"],
            out.Schedule(NOW, datetime(2030, 2, 1, tzinfo=UTC), None),
            EUR,
            BillingType.CARD,
            EUR,
            "display-standard",
            "adv-1",
            [],
            NOW,
        ),
    ],
    "dlq.dead_lettered": [
        out.DeadLettered(
            "AA==", "not_json", "bad", "p.campaign.commands", 0, 4, (("h", "AA=="),), "aw=="
        )
    ],
}


def test_one_payload_class_per_outgoing_type_named_after_its_model() -> None:
    assert set(OUTGOING) == set(messages_out.OUTBOUND_TYPES)
    for type_, cls in OUTGOING.items():
        spec = messages_out.OUTBOUND_TYPES[type_]
        assert cls.TOPIC == spec.topic, type_
        model = spec.data.__name__
        expected = "NotificationSent" if type_ == "notification.sent" else model
        expected = "NotificationFailed" if type_ == "notification.failed" else expected
        assert cls.__name__ == expected, f"{type_}: {cls.__name__} documents as {model}"


def test_every_outgoing_type_has_samples_here() -> None:
    assert set(SAMPLES) == set(OUTGOING)
    for type_, payloads in SAMPLES.items():
        assert payloads and all(type(p) is OUTGOING[type_] for p in payloads), type_


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_payloads_carry_exactly_the_documented_fields_and_validate(type_: str) -> None:
    model = messages_out.OUTBOUND_TYPES[type_].data
    documented = {f.alias or name for name, f in model.model_fields.items()}
    required = {f.alias or name for name, f in model.model_fields.items() if f.is_required()}
    written: set[str] = set()
    for payload in SAMPLES[type_]:
        data: dict[str, Any] = payload.data()
        assert required <= set(data), f"{type_} lacks {sorted(required - set(data))}"
        model.model_validate(data)
        envelope = json.loads(
            to_outbox(
                payload, subject=str(CID), now=NOW, causation_id="c", correlation_id="r"
            ).value
        )
        assert envelope["type"] == type_
        validate_outgoing(envelope)
        written |= set(data)
    assert written == documented, (
        f"{type_}: documented but never written {sorted(documented - written)}, "
        f"written but not documented {sorted(written - documented)}"
    )
