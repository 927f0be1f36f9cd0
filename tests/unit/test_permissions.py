"""The permission table (`domain/permissions.py`): one row per inbound type and per action the
worker takes itself, consistent with the message registry, the transition table, the topics
and the Kafka ACLs; and every inbound type sent by every role (the owning advertiser, another
advertiser, the publisher, the system) through translation and the processor's real handlers
is `forbidden` exactly when the table says so, and otherwise applied or refused for another
reason."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from campaign_worker import topics
from campaign_worker.domain.commands import (
    ApproveCampaign,
    CancelCampaign,
    EndDue,
    PauseCampaign,
    RejectCampaign,
    ResumeCampaign,
    StartDue,
    SubmitCampaign,
)
from campaign_worker.domain.errors import Refusal, RefusalCode
from campaign_worker.domain.lifecycle import ACTIONS as LIFECYCLE_ACTIONS
from campaign_worker.domain.lifecycle import TRANSITIONS
from campaign_worker.domain.model import Actor, Role, Trigger
from campaign_worker.domain.permissions import OWN_ACTIONS, PERMISSIONS, TOPICS, check
from campaign_worker.entrypoints.messages import INBOUND_TYPES
from campaign_worker.service.inbound import Inbound
from tests.unit.fakes import Store, translated
from tests.unit.test_processor import processor
from tests.unit.test_routing import SAMPLES

ACLS = Path(__file__).resolve().parents[2] / "deploy" / "kafka-acls.sh"


# ------------------------------------------------------------------ the table itself


def test_one_row_per_inbound_type_and_per_own_action() -> None:
    assert set(PERMISSIONS) == set(INBOUND_TYPES) | OWN_ACTIONS
    assert not OWN_ACTIONS & set(INBOUND_TYPES)
    for action, row in PERMISSIONS.items():
        assert row.roles, action
        assert row.what.strip(), action
        # ownership means something only where advertisers are allowed
        assert not row.owner or Role.ADVERTISER in row.roles, action


def test_every_type_an_advertiser_may_send_is_about_its_own_campaign() -> None:
    for type_, spec in INBOUND_TYPES.items():
        row = PERMISSIONS[type_]
        if Role.ADVERTISER in row.roles and spec.campaign_scoped:
            assert row.owner, type_


# Which triggers each transition command may fire (spec §1).
TRIGGERS = {
    SubmitCampaign: {Trigger.SUBMIT, Trigger.RESUBMIT},
    ApproveCampaign: {Trigger.APPROVE},
    RejectCampaign: {Trigger.REJECT},
    StartDue: {Trigger.START},
    EndDue: {Trigger.END},
    PauseCampaign: {Trigger.PAUSE},
    ResumeCampaign: {Trigger.RESUME},
    CancelCampaign: {Trigger.CANCEL},
}


@pytest.mark.parametrize("command", list(TRIGGERS), ids=lambda c: c.__name__)
def test_the_transition_table_agrees_with_the_permission_table(command: type) -> None:
    """A command's row allows exactly the roles of some transition it can fire; which of them
    may fire it from a given status (T11: only the publisher cancels a BOOKED campaign) is
    the transition table's finer say."""
    roles = {r for t in TRANSITIONS.values() if t.trigger in TRIGGERS[command] for r in t.roles}
    assert PERMISSIONS[LIFECYCLE_ACTIONS[command]].roles == roles


def test_the_low_relevance_stop_is_the_systems_like_its_transition() -> None:
    stops = {r for t in TRANSITIONS.values() if t.trigger is Trigger.STOP for r in t.roles}
    assert PERMISSIONS["relevance.stop"].roles == stops


# ------------------------------------------------------------------ check()

OWNER = Actor(Role.ADVERTISER, "adv-1")
OTHER = Actor(Role.ADVERTISER, "adv-2")
PUBLISHER = Actor(Role.PUBLISHER, "pub-1")
SYSTEM = Actor(Role.SYSTEM, "scheduler")


def refusal(action: str, actor: Actor, owner: str | None = "adv-1") -> Refusal:
    with pytest.raises(Refusal) as info:
        check(action, actor, owner, "campaign c-1")
    assert info.value.code is RefusalCode.FORBIDDEN
    return info.value


def test_check_names_who_may_and_whose_campaign_it_is() -> None:
    assert refusal("campaign.submit", PUBLISHER).message == (
        "the publisher may not submit a campaign (campaign.submit comes only from: advertiser)"
    )
    assert refusal("payment.charge_succeeded", OWNER).message == (
        "an advertiser may not report a payment result "
        "(payment.charge_succeeded comes only from: system)"
    )
    assert refusal("campaign.pause", OTHER).message == (
        "advertiser adv-2 may act only on its own campaigns; "
        "campaign c-1 belongs to another advertiser"
    )
    for blank in (None, " "):
        assert (
            "must carry its advertiser id"
            in refusal("campaign.pause", Actor(Role.ADVERTISER, blank)).message
        )


def test_check_lets_through_what_the_table_allows() -> None:
    check("campaign.pause", OWNER, "adv-1")
    check("campaign.pause", PUBLISHER, "adv-1")  # the publisher owns nothing and may
    check("review.landing_page_status", SYSTEM, "adv-1")
    check("catalog.ad_product_upserted", OTHER, None)  # catalog rows ask no owner


# ------------------------------------------------------------------ topics and the ACLs


def test_each_inbound_topic_carries_exactly_the_roles_of_its_types() -> None:
    assert set(TOPICS) == set(topics.INBOUND)
    for topic, inbound in TOPICS.items():
        roles = {
            r for t, s in INBOUND_TYPES.items() if s.topic == topic for r in PERMISSIONS[t].roles
        }
        assert roles == inbound.roles, topic


def acl_writes() -> dict[str, set[str]]:
    """topic -> the principals deploy/kafka-acls.sh lets write it (default names)."""
    script = ACLS.read_text()
    defaults = dict(re.findall(r"^(\w+)=\$\{\1:-User:([\w-]+)\}", script, re.M))
    writes: dict[str, set[str]] = {}
    # one `acl` call per logical line (backslash continuations joined)
    for call in re.findall(r"^acl (.*?)(?<!\\)$", script.replace("\\\n", " "), re.M | re.S):
        if "--operation Write" not in call:
            continue
        principal = defaults[re.search(r'--allow-principal "\$(\w+)"', call)[1]]  # type: ignore[index]
        for name in re.findall(r"\$\(t (\w+)\)", call):
            writes.setdefault(f"campaign.{name}", set()).add(principal)
    return writes


def test_the_acls_let_each_inbound_topic_be_written_by_its_writer_and_the_worker_only() -> None:
    writes = acl_writes()
    for topic, inbound in TOPICS.items():
        # the worker's principal writes every inbound topic: `dlq replay` republishes a dead
        # letter through the outbox relay to the topic it came from (README "Security")
        assert writes[topic] == {inbound.writer, "campaign-worker"}, topic
    for topic in topics.OUTBOUND:
        if topic in writes:
            assert writes[topic] == {"campaign-worker"}, topic


# ------------------------------------------------------------------ through the handlers

ACTORS: dict[str, tuple[str, str | None]] = {
    "owner": ("advertiser", "adv-1"),
    "other_advertiser": ("advertiser", "adv-2"),
    "publisher": ("publisher", "pub-1"),
    "system": ("system", "scheduler"),
}


def expect_forbidden(type_: str, who: str) -> bool:
    row = PERMISSIONS[type_]
    role = Role(ACTORS[who][0])
    if role not in row.roles:
        return True
    return row.owner and who == "other_advertiser"


def event(type_: str, subject: str, data: dict[str, Any], who: str) -> dict[str, Any]:
    role, actor_id = ACTORS[who]
    e = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/t",
        "type": type_,
        "subject": subject,
        "actorrole": role,
        "data": data,
    }
    if actor_id is not None:
        e["actorid"] = actor_id
    return e


async def outcome_of(type_: str, who: str) -> str:
    """Send `type_` as `who` at an existing campaign of adv-1 with a creative (or, for
    campaign.create, at a new one) and return what became of it."""
    store = Store()
    cid = str(uuid.uuid4())
    setup = [
        event(
            "catalog.ad_product_upserted", "p", SAMPLES["catalog.ad_product_upserted"], "publisher"
        ),
        event("campaign.create", cid, SAMPLES["campaign.create"], "owner"),
        event("creative.create", cid, SAMPLES["creative.create"], "owner"),
    ]
    for n, e in enumerate(setup):
        report = await processor(store).process([translated(e, n)])
        assert len(report.applied) == 1, (e["type"], report.rejected)
    data = dict(SAMPLES[type_])
    if type_ == "campaign.duplicate":
        data["new_campaign_id"] = str(uuid.uuid4())
    subject = str(uuid.uuid4()) if type_ == "campaign.create" else cid
    msg = translated(event(type_, subject, data, who), 10)
    assert isinstance(msg, Inbound), msg
    report = await processor(store).process([msg])
    assert not report.dead_lettered and not report.duplicates
    if report.rejected:
        [(_, code)] = report.rejected
        return code
    assert report.applied == [msg]
    return "applied"


CASES = [(t, who) for t in sorted(INBOUND_TYPES) for who in ACTORS]


@pytest.mark.parametrize(("type_", "who"), CASES, ids=[f"{t}-{w}" for t, w in CASES])
async def test_every_type_from_every_role_is_forbidden_exactly_as_the_table_says(
    type_: str, who: str
) -> None:
    got = await outcome_of(type_, who)
    if expect_forbidden(type_, who):
        assert got == "forbidden", (type_, who, got)
    else:
        assert got != "forbidden", (type_, who, got)


def test_the_cases_are_not_vacuous() -> None:
    """Every type is allowed to someone and, except the catalog's, forbidden to someone."""
    for type_ in INBOUND_TYPES:
        verdicts = {expect_forbidden(type_, who) for who in ACTORS}
        assert False in verdicts, type_
        if not type_.startswith("catalog."):
            assert True in verdicts, type_
