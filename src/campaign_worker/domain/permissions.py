"""Who may do what (spec §8): one table, consulted by every rule that refuses `forbidden`.

`PERMISSIONS` has one row per inbound message type, and one per action the worker takes on its
own (`settlement.due`, the low-relevance stop, the holds it derives from catalog, payment and
delivery facts): the actor roles that may send it, and whether an advertiser must own the
campaign (the campaign's `advertiser_id`; for `campaign.create`, the one it is created for).
Publishers and the system are never owners: the check is for advertisers only.

`check(action, actor, owner)` raises `Refusal(forbidden)` with a message naming the role, what
it may not do and who may ("the publisher may not submit a campaign (campaign.submit comes only
from: advertiser)"), or returns. The rule modules (lifecycle, creatives, serving, duplication,
settlement) and the billing handlers call it at the point where they checked roles before, so
the order of checks (`not_found` first, `forbidden` before the status rules) is unchanged.
Status-dependent refusals stay in their tables: an advertiser cancelling a BOOKED campaign is
`contact_publisher` (T11), an edit outside `EDIT_RIGHTS` is `not_editable`.

`TOPICS` is the other half of the picture: the actorrole inside a message is a claim of
whoever wrote it, so each inbound topic names the one service that writes it (the principal
`deploy/kafka-acls.sh` gives Write, besides the worker's own for dead-letter replay) and the
roles its messages may claim. A unit test checks it against the message registry and the ACL
script.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.model import Actor, Role

__all__ = [
    "OWN_ACTIONS",
    "PERMISSIONS",
    "TOPICS",
    "InboundTopic",
    "Permission",
    "check",
    "permission",
]


@dataclass(frozen=True)
class Permission:
    roles: frozenset[Role]  # who may send it
    owner: bool  # an advertiser must own the campaign (advertiser_id)
    what: str  # the action in words, for the refusal: "the publisher may not <what>"


_A = frozenset({Role.ADVERTISER})
_P = frozenset({Role.PUBLISHER})
_S = frozenset({Role.SYSTEM})
_AP = frozenset({Role.ADVERTISER, Role.PUBLISHER})
_PS = frozenset({Role.PUBLISHER, Role.SYSTEM})
_ANY = frozenset(Role)


def _own(roles: frozenset[Role], what: str) -> Permission:
    """Advertisers among `roles` act only on their own campaigns."""
    return Permission(roles, owner=True, what=what)


def _any(roles: frozenset[Role], what: str) -> Permission:
    return Permission(roles, owner=False, what=what)


PERMISSIONS: Mapping[str, Permission] = MappingProxyType(
    {
        # campaign.commands: the advertiser's and the publisher's actions
        "campaign.create": _own(_AP, "create a campaign"),
        "campaign.update": _own(_AP, "edit a campaign"),
        "campaign.extend_end": _own(_AP, "edit a campaign"),
        "campaign.submit": _own(_A, "submit a campaign"),
        "campaign.pause": _own(_AP, "pause a campaign"),
        "campaign.resume": _own(_AP, "resume a campaign"),
        "campaign.cancel": _own(_AP, "cancel a campaign"),
        "campaign.duplicate": _own(_AP, "duplicate a campaign"),
        "campaign.retry_charge": _own(_A, "retry a campaign's charge"),
        "creative.create": _own(_AP, "register a creative"),
        "creative.update": _own(_AP, "edit a creative"),
        "creative.delete": _own(_AP, "delete a creative"),
        "creative.pause": _own(_AP, "pause a creative"),
        "creative.resume": _own(_AP, "resume a creative"),
        "refund.retry": _any(_P, "retry a refund"),
        # campaign.reviews: decisions of the publisher; the landing-page check also reports
        "review.campaign_approved": _any(_P, "approve a campaign"),
        "review.campaign_rejected": _any(_P, "reject a campaign"),
        "review.creative_approved": _any(_P, "approve a creative"),
        "review.creative_rejected": _any(_P, "reject a creative"),
        "review.campaign_suspended": _any(_P, "suspend a campaign"),
        "review.campaign_reinstated": _any(_P, "reinstate a campaign"),
        "review.landing_page_status": _any(_PS, "report a landing page's status"),
        # facts of the payment service, the ad server and the scheduler
        "payment.charge_succeeded": _any(_S, "report a payment result"),
        "payment.charge_failed": _any(_S, "report a payment result"),
        "payment.refund_succeeded": _any(_S, "report a payment result"),
        "payment.refund_failed": _any(_S, "report a payment result"),
        "delivery.reported": _any(_S, "report delivery"),
        "delivery.final": _any(_S, "report the final delivery"),
        "schedule.start_due": _any(_S, "start a campaign"),
        "schedule.end_due": _any(_S, "end a campaign"),
        # campaign.catalog: reference data; its actorrole is optional and not checked (the
        # topic's writer is what vouches for it)
        "catalog.ad_product_upserted": _any(_ANY, "change the catalog"),
        "catalog.ad_product_deleted": _any(_ANY, "change the catalog"),
        "catalog.category_upserted": _any(_ANY, "change the catalog"),
        "catalog.category_deleted": _any(_ANY, "change the catalog"),
        # what the worker does on its own, as the system
        "settlement.due": _any(_S, "settle a campaign"),
        "relevance.stop": _any(_S, "stop a campaign for low relevance"),
        "hold.product_buyability": _any(_PS, "set or clear a product hold"),
        "hold.billing_error": _any(_S, "set or clear a billing hold"),
        "hold.budget": _any(_S, "set a budget hold"),
        "hold.relevance": _any(_S, "set a relevance hold"),
    }
)

# The actions above that no message carries: the worker takes them itself.
OWN_ACTIONS = frozenset(
    {
        "settlement.due",
        "relevance.stop",
        "hold.product_buyability",
        "hold.billing_error",
        "hold.budget",
        "hold.relevance",
    }
)


def permission(action: str) -> Permission:
    return PERMISSIONS[action]


def _roles_text(roles: Iterable[Role]) -> str:
    return ", ".join(r.value for r in Role if r in set(roles))


_WHO = {
    Role.ADVERTISER: "an advertiser",
    Role.PUBLISHER: "the publisher",
    Role.SYSTEM: "the system",
}


def check(action: str, actor: Actor, owner: str | None = None, what: str | None = None) -> None:
    """Refuse (`forbidden`) unless `actor` may take `action`: its role is in the row, and an
    advertiser, when the row says so, is `owner` (the campaign's advertiser_id). `what` names
    the campaign in the ownership refusal ("campaign <id>")."""
    rule = PERMISSIONS[action]
    if actor.role not in rule.roles:
        raise Refusal(
            RefusalCode.FORBIDDEN,
            f"{_WHO[actor.role]} may not {rule.what} "
            f"({action} comes only from: {_roles_text(rule.roles)})",
        )
    if not rule.owner or actor.role is not Role.ADVERTISER:
        return
    if actor.id is None or not actor.id.strip():
        raise Refusal(RefusalCode.FORBIDDEN, "an advertiser actor must carry its advertiser id")
    if actor.id != owner:
        raise Refusal(
            RefusalCode.FORBIDDEN,
            f"advertiser {actor.id} may act only on its own campaigns; "
            f"{what or 'the campaign'} belongs to another advertiser",
        )


@dataclass(frozen=True)
class InboundTopic:
    writer: str  # the one service that writes it (its default principal in kafka-acls.sh)
    roles: frozenset[Role]  # the actorroles its messages may claim


TOPICS: Mapping[str, InboundTopic] = MappingProxyType(
    {
        "campaign.commands": InboundTopic("ad-platform", _AP),
        "campaign.catalog": InboundTopic("ad-platform", _ANY),
        "campaign.reviews": InboundTopic("moderation", _PS),
        "campaign.payments": InboundTopic("payment-service", _S),
        "campaign.delivery": InboundTopic("ad-server", _S),
        # the scheduler applies due starts and ends itself; nobody else writes this topic
        "campaign.schedule": InboundTopic("campaign-worker", _S),
    }
)
