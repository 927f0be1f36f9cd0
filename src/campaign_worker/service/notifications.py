"""Notifications (spec §10): which changes email the campaign's contact, and the one call a
handler makes to request one.

A handler calls `notify(batch, item, kind, campaign, template_data, creative_id=...)`. The
request is only data on the batch: the processor writes it in the batch's transaction as a
pending `notifications` row (unique per causing message, recipient and kind) together with a
`notification.requested` event in the outbox, and the notifier (adapters/notifier.py) sends
the email later and records `notification.sent` / `notification.failed`. So a notification
exists exactly when the change that caused it was committed, and never twice for one event.

Which status changes notify is decided in `reactions.py` (its table follows spec §1).
"""

from __future__ import annotations

import functools
import string
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from campaign_worker.domain.model import Campaign
from campaign_worker.service.batch import Batch
from campaign_worker.service.envelope import to_wire
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.unit_of_work import NotificationRequest


@dataclass(frozen=True)
class KindSpec:
    subject: str  # str.format over the template data (values already made single-line)
    requires: tuple[str, ...] = ()  # template_data keys the caller must give


# The contract's kinds (extend, never rename). Each has templates/<kind>.txt and .html.
KINDS: Mapping[str, KindSpec] = {
    "campaign_review_approved": KindSpec('Your campaign "{title}" was approved'),
    "campaign_review_rejected": KindSpec('Your campaign "{title}" was not approved', ("reason",)),
    "campaign_started": KindSpec('Your campaign "{title}" is live'),
    "campaign_ended": KindSpec('Your campaign "{title}" has ended', ("outcome",)),
    "creative_review_approved": KindSpec(
        'Creative "{creative_name}" of "{title}" was approved', ("creative_name",)
    ),
    "creative_review_rejected": KindSpec(
        'Creative "{creative_name}" of "{title}" was not approved', ("creative_name", "reason")
    ),
    "billing_error": KindSpec('Payment problem: campaign "{title}" is on hold', ("reason",)),
    "out_of_budget": KindSpec('Campaign "{title}" has spent its budget', ("spent",)),
    # the low-relevance stop (spec §7): the campaign has ended; tips and how to start again
    "low_relevance": KindSpec(
        'Campaign "{title}" was stopped for low relevance: tips for a new one',
        ("impressions", "clicks", "ctr", "compared"),
    ),
    "statement_issued": KindSpec(
        'Statement for campaign "{title}": {final}',
        ("booked", "spent", "penalty", "tax", "refund", "final", "statement_outcome"),
    ),
    "refund_issued": KindSpec(
        'Refund of {amount} for campaign "{title}"', ("amount", "refund_reason")
    ),
    "campaign_cancelled_by_publisher": KindSpec(
        'Your campaign "{title}" was cancelled by the publisher', ("reason", "penalty")
    ),
    "campaign_suspended": KindSpec('Your campaign "{title}" was suspended', ("reason",)),
    "campaign_reinstated": KindSpec('Your campaign "{title}" was reinstated'),
    "review_expired": KindSpec('Your campaign "{title}" expired before its review'),
}

NAMESPACE = uuid.UUID("0b5e7c52-8f0e-4f7a-9d7b-2f3c7a1e9c41")
MESSAGE_ID_DOMAIN = "campaign-worker"
SUBJECT_VALUE_MAX = 120  # characters of one value (e.g. the title) inside a subject
SUBJECT_MAX = 200


# Control characters and line/paragraph separators (CR, LF, NEL, U+2028, ...) become spaces;
# invisible format characters (bidi overrides, zero-width spaces) are dropped.
_SINGLE_LINE = {"Cc": " ", "Zl": " ", "Zp": " ", "Cf": ""}


def one_line(value: object, limit: int) -> str:
    """`value` as one line of at most `limit` characters, runs of white space made one space.
    What goes into a header passes through here, so it can never start a new one."""
    text = "".join(_SINGLE_LINE.get(unicodedata.category(ch), ch) for ch in str(value))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def notification_id(cause_id: str, recipient: str, kind: str) -> uuid.UUID:
    """The same (cause, recipient, kind) always gives the same id (and Message-ID)."""
    return uuid.uuid5(NAMESPACE, f"{cause_id}\n{recipient}\n{kind}")


def message_id_for(nid: uuid.UUID) -> str:
    return f"<{nid}@{MESSAGE_ID_DOMAIN}>"


def _when(instant: datetime, timezone: str | None) -> str:
    text = instant.strftime("%Y-%m-%d %H:%M UTC")
    if timezone:
        local = instant.astimezone(ZoneInfo(timezone))
        text += f" ({local.strftime('%Y-%m-%d %H:%M')} {timezone})"
    return text


def campaign_template_data(c: Campaign, display_status: str) -> dict[str, Any]:
    """What every campaign email may show: title, status (and its display status, from the
    one display table, holds included), dates, budget, contact."""
    return {
        "campaign_id": str(c.id),
        "title": c.title,
        "status": c.status.value,
        "display_status": display_status,
        "start_at": to_wire(c.start_at),
        "end_at": to_wire(c.end_at),
        "timezone": c.timezone,
        "starts": _when(c.start_at, c.timezone),
        "ends": _when(c.end_at, c.timezone),
        "budget": str(c.budget),
        "contact_name": c.contact.name,
        "advertiser_id": c.advertiser_id,
    }


def subject_for(kind: str, template_data: Mapping[str, Any]) -> str:
    values = {
        k: one_line(template_data[k], SUBJECT_VALUE_MAX)
        for k in _subject_fields(kind)
        if k in template_data
    }
    return one_line(KINDS[kind].subject.format_map(_Blank(values)), SUBJECT_MAX)


@functools.cache
def _subject_fields(kind: str) -> frozenset[str]:
    """The template data a kind's subject names (only those are made single-line for it)."""
    return frozenset(f for _, f, _, _ in string.Formatter().parse(KINDS[kind].subject) if f)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def notify(
    batch: Batch,
    item: Inbound,
    kind: str,
    campaign: Campaign,
    template_data: Mapping[str, Any] | None = None,
    *,
    creative_id: str | None = None,
) -> NotificationRequest | None:
    """Request one email to the campaign's contact about `campaign`, caused by `item`.

    `template_data` adds to (or overrides) the campaign's data (`campaign_template_data`);
    the keys `KINDS[kind].requires` must be there. Returns the request, or None when the same
    (message, recipient, kind) was already requested in this batch."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown notification kind {kind!r}")
    data = campaign_template_data(campaign, batch.display(campaign))
    if creative_id is not None:
        data["creative_id"] = creative_id
    data.update(template_data or {})
    missing = [k for k in spec.requires if data.get(k) in (None, "")]
    if missing:
        raise ValueError(f"notification {kind} needs template data {missing}")
    recipient = campaign.contact.email
    nid = notification_id(item.message_id, recipient, kind)
    request = NotificationRequest(
        id=nid,
        cause_id=item.message_id,
        kind=kind,
        recipient=recipient,
        subject=subject_for(kind, data),
        campaign_id=campaign.id,
        creative_id=creative_id,
        template_data=to_wire(data),
        message_id=message_id_for(nid),
        correlation_id=item.correlation_id,
        requested_at=batch.now,
    )
    return request if batch.request(request) else None
