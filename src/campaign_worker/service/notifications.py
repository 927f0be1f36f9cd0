"""Notifications (spec §10): which changes email the campaign's contact, and the one call a
handler makes to request one.

A handler calls `notify(ctx, item, kind, campaign, template_data, creative_id=...)`. The
request is only data on the batch: the processor writes it in the batch's transaction as a
pending `notifications` row (unique per causing message, recipient and kind) together with a
`notification.requested` event in the outbox, and the notifier (adapters/notifier.py) sends
the email later and records `notification.sent` / `notification.failed`. So a notification
exists exactly when the change that caused it was committed, and never twice for one event.

Campaign status changes that notify (spec §1):

| rule | change | kind |
|---|---|---|
| T2 | SUBMITTED -> BOOKED (review approved) | `campaign_review_approved` |
| T3 | SUBMITTED -> REJECTED (with the reason) | `campaign_review_rejected` |
| T5 | BOOKED -> LIVE (start time reached) | `campaign_started` |
| T9 | PAUSED -> LIVE, paused while BOOKED and the start passed meanwhile | `campaign_started` |
| T6 | LIVE/PAUSED -> CLOSED (end time reached) | `campaign_ended` |
| T7 | BOOKED -> CLOSED (never went live) | `campaign_ended`, saying it never ran |

T7 sends no "started" email (the spec says so) but does send "campaign ended": §10 lists
"campaign ended" for every ending, the advertiser must learn that the campaign is over (and,
for card billing, that everything is refunded), and a campaign paused while BOOKED that
closes at its end (T6) gets the same email, so T7 would otherwise be the one silent ending.
A resume of a campaign paused while LIVE (back to LIVE) sends nothing: it had started.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from campaign_worker import topics
from campaign_worker.domain.events import CampaignStatusChanged, Event
from campaign_worker.domain.lifecycle import display_status
from campaign_worker.domain.model import Campaign, Status, Trigger
from campaign_worker.service.envelope import OutboxMessage, event, to_wire
from campaign_worker.service.unit_of_work import NotificationRequest

if TYPE_CHECKING:
    from campaign_worker.service.handlers import BatchContext
    from campaign_worker.service.inbound import Inbound


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
    "low_relevance": KindSpec(
        'Campaign "{title}" has low relevance: tips to improve it',
        ("impressions", "clicks", "ctr"),
    ),
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


def campaign_template_data(c: Campaign) -> dict[str, Any]:
    """What every campaign email may show: title, status, dates, budget, contact."""
    return {
        "campaign_id": str(c.id),
        "title": c.title,
        "status": c.status.value,
        "display_status": display_status(c),
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
    values = {k: one_line(v, SUBJECT_VALUE_MAX) for k, v in template_data.items()}
    return one_line(KINDS[kind].subject.format_map(_Blank(values)), SUBJECT_MAX)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def notify(
    ctx: BatchContext,
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
    data = campaign_template_data(campaign)
    if creative_id is not None:
        data["creative_id"] = creative_id
    data.update(template_data or {})
    missing = [k for k in spec.requires if data.get(k) in (None, "")]
    if missing:
        raise ValueError(f"notification {kind} needs template data {missing}")
    recipient = campaign.contact.email
    nid = notification_id(item.message_id, recipient, kind)
    if any(n.id == nid for n in ctx.notifications):
        return None
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
        requested_at=ctx.now,
    )
    ctx.notifications.append(request)
    return request


def notify_status_change(
    ctx: BatchContext, item: Inbound, before: Campaign | None, after: Campaign, ev: Event
) -> None:
    """The campaign emails of spec §1 (see the table in this module's docstring)."""
    if not isinstance(ev, CampaignStatusChanged):
        return
    to, trigger = ev.to_status, ev.trigger
    if trigger is Trigger.APPROVE and to is Status.BOOKED:
        notify(ctx, item, "campaign_review_approved", after)
    elif trigger is Trigger.REJECT and to is Status.REJECTED:
        reason = ev.reason or after.rejection_reason or "no reason given"
        notify(ctx, item, "campaign_review_rejected", after, {"reason": reason})
    elif to is Status.LIVE and (
        trigger is Trigger.START
        or (
            trigger is Trigger.RESUME and before is not None and before.paused_from is Status.BOOKED
        )
    ):
        notify(ctx, item, "campaign_started", after)
    elif trigger is Trigger.END and to is Status.CLOSED:
        went_live = ev.from_status is Status.LIVE or (
            before is not None and before.paused_from is Status.LIVE
        )
        outcome = (
            "It has stopped delivering ads."
            if went_live
            else "It never went live, so no ads were delivered."
        )
        notify(ctx, item, "campaign_ended", after, {"went_live": went_live, "outcome": outcome})


def notification_requested(n: NotificationRequest, now: datetime) -> OutboxMessage:
    """The contract's `notification.requested`; its CloudEvent id is the notification id, so
    consumers that dedupe by id see one request per notification."""
    return event(
        topic=topics.NOTIFICATIONS,
        type="notification.requested",
        subject=str(n.campaign_id),
        data={
            "notification_id": str(n.id),
            "kind": n.kind,
            "to": n.recipient,
            "subject": n.subject,
            "campaign_id": str(n.campaign_id),
            "creative_id": n.creative_id,
            "template_data": dict(n.template_data),
        },
        now=now,
        causation_id=n.cause_id,
        correlation_id=n.correlation_id,
        extra={"id": str(n.id)},
    )


def notification_outcome(
    *,
    sent: bool,
    notification_id: uuid.UUID,
    campaign_id: uuid.UUID,
    attempts: int,
    error: str | None,
    correlation_id: str | None,
    now: datetime,
) -> OutboxMessage:
    """`notification.sent` / `notification.failed`, caused by the request (whose id is the
    notification id)."""
    return event(
        topic=topics.NOTIFICATIONS,
        type="notification.sent" if sent else "notification.failed",
        subject=str(campaign_id),
        data={"notification_id": str(notification_id), "attempts": attempts, "error": error},
        now=now,
        causation_id=str(notification_id),
        correlation_id=correlation_id,
    )
