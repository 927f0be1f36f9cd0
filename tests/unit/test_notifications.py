"""Notifications without servers (issue 7): which changes request which email, the emails
built from the template files, header injection, and the classification of SMTP failures
with a fake SMTP client."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from campaign_worker.adapters.mailer import (
    InvalidAddress,
    Mailer,
    Outgoing,
    PermanentSendError,
    Templates,
    TransientSendError,
    build_message,
    checked_address,
    classify,
)
from campaign_worker.service.notifications import KINDS, one_line
from campaign_worker.service.processor import Processor, RetryPolicy
from tests.support.fake_smtp import FakeSmtp
from tests.support.schemas import validate_outgoing
from tests.unit.fakes import FakeUnitOfWork, Store, translated

T0 = datetime(2029, 12, 1, tzinfo=UTC)
START = datetime(2030, 1, 1, tzinfo=UTC)
END = datetime(2030, 2, 1, tzinfo=UTC)
EVIL_TITLE = "Winter sale\r\nBcc: x@evil.test"
EXPECTED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "x-campaign-worker-notification",
    "mime-version",
    "content-type",
}

# ------------------------------------------------------------------ requests (handlers)


class World:
    """A processor over a fake unit of work whose clock the test moves."""

    def __init__(self) -> None:
        self.store = Store()
        self.now = T0
        self.offset = 0

    def processor(self) -> Processor:
        return Processor(
            lambda: FakeUnitOfWork(self.store),
            physical_topic=lambda t: t,
            is_transient=lambda e: False,
            retry=RetryPolicy(max_attempts=1),
            clock=lambda: self.now,
        )

    async def send(
        self,
        type_: str,
        cid: str,
        data: dict[str, Any] | None = None,
        *,
        role: str = "advertiser",
        id_: str | None = None,
    ) -> dict[str, Any]:
        event = {
            "specversion": "1.0",
            "id": id_ or str(uuid.uuid4()),
            "source": "/t",
            "type": type_,
            "subject": cid,
            "actorrole": role,
            "actorid": {"advertiser": "adv-1", "publisher": "pub-1", "system": "scheduler"}[role],
            "correlationid": "req-7",
            "data": data or {},
        }
        self.offset += 1
        await self.processor().process([translated(event, self.offset, cid.encode())])
        return event

    async def booked(self, title: str = "Winter sale", email_: str = "ada@example.com") -> str:
        cid = await self.submitted(title, email_)
        await self.send("review.campaign_approved", cid, role="publisher")
        return cid

    async def submitted(self, title: str = "Winter sale", email_: str = "ada@example.com") -> str:
        await self.send(
            "catalog.ad_product_upserted",
            "p",
            {
                "ad_product_id": "p",
                "name": "P",
                "unit_ids": ["u"],
                "unit_set_valid": True,
                "buyable": True,
            },
            role="publisher",
        )
        cid = str(uuid.uuid4())
        await self.send(
            "campaign.create",
            cid,
            {
                "advertiser_id": "adv-1",
                "title": title,
                "ad_product_id": "p",
                "budget": {"amount": "100.00", "currency": "EUR"},
                "billing_type": "manual",
                "start_at": "2030-01-01T00:00:00Z",
                "end_at": "2030-02-01T00:00:00Z",
                "contact": {"name": "Ada", "email": email_},
                "timezone": "Europe/Berlin",
            },
        )
        await self.send("campaign.submit", cid)
        return cid

    def requests(self) -> list[Any]:
        return sorted(self.store.notifications.values(), key=lambda n: n.requested_at)

    def requested_events(self) -> list[dict[str, Any]]:
        return [
            json.loads(m.value)
            for m in self.store.outbox
            if m.topic == "campaign.notifications"
            and json.loads(m.value)["type"] == "notification.requested"
        ]


async def test_review_approved_requests_one_email_and_one_requested_event() -> None:
    w = World()
    cid = await w.booked()
    [n] = w.requests()
    assert (n.kind, n.recipient) == ("campaign_review_approved", "ada@example.com")
    assert n.subject == 'Your campaign "Winter sale" was approved'
    assert n.message_id == f"<{n.id}@campaign-worker>"
    assert n.template_data["title"] == "Winter sale"
    assert n.template_data["starts"] == "2030-01-01 00:00 UTC (2030-01-01 01:00 Europe/Berlin)"
    assert n.template_data["budget"] == "100.00 EUR"
    [ev] = w.requested_events()
    validate_outgoing(ev)
    assert ev["id"] == str(n.id) and ev["subject"] == cid and ev["correlationid"] == "req-7"
    assert ev["data"] == {
        "notification_id": str(n.id),
        "kind": "campaign_review_approved",
        "to": "ada@example.com",
        "subject": 'Your campaign "Winter sale" was approved',
        "campaign_id": cid,
        "creative_id": None,
        "template_data": dict(n.template_data),
    }
    assert ev["causationid"] == n.cause_id  # the review message


async def test_review_rejected_carries_the_reason() -> None:
    w = World()
    cid = await w.submitted(title="T")
    await w.send("review.campaign_rejected", cid, {"reason": "misleading claims"}, role="publisher")
    [n] = w.requests()
    assert n.kind == "campaign_review_rejected"
    assert n.template_data["reason"] == "misleading claims"
    assert n.subject == 'Your campaign "T" was not approved'


async def test_start_and_end_request_started_then_ended_and_a_redelivery_requests_nothing() -> None:
    w = World()
    cid = await w.booked()
    w.now = START + timedelta(seconds=1)
    start = await w.send(
        "schedule.start_due", cid, {"due_at": "2030-01-01T00:00:00Z"}, role="system"
    )
    await w.send(
        "schedule.start_due",
        cid,
        {"due_at": "2030-01-01T00:00:00Z"},
        role="system",
        id_=start["id"],
    )
    w.now = END + timedelta(seconds=1)
    await w.send("schedule.end_due", cid, {"due_at": "2030-02-01T00:00:00Z"}, role="system")
    kinds = [n.kind for n in w.requests()]
    assert kinds == ["campaign_review_approved", "campaign_started", "campaign_ended"]
    ended = w.requests()[-1]
    assert ended.template_data["went_live"] is True
    assert ended.template_data["outcome"] == "It has stopped delivering ads."
    assert [e["data"]["kind"] for e in w.requested_events()] == kinds


async def test_t7_never_live_sends_campaign_ended_saying_so_and_no_started() -> None:
    w = World()
    cid = await w.booked()
    w.now = END + timedelta(seconds=1)  # start and end both passed: T7
    await w.send("schedule.end_due", cid, {"due_at": "2030-02-01T00:00:00Z"}, role="system")
    assert w.store.campaigns[uuid.UUID(cid)].status.value == "CLOSED"
    assert [n.kind for n in w.requests()] == ["campaign_review_approved", "campaign_ended"]
    ended = w.requests()[-1]
    assert ended.template_data["went_live"] is False
    assert "never went live" in ended.template_data["outcome"]


async def test_t9_resume_into_live_sends_started_but_resume_of_a_live_campaign_does_not() -> None:
    w = World()
    booked = await w.booked()
    await w.send("campaign.pause", booked)
    w.now = START + timedelta(hours=1)  # the start passed while paused
    await w.send("campaign.resume", booked)
    assert w.store.campaigns[uuid.UUID(booked)].status.value == "LIVE"
    assert [n.kind for n in w.requests()] == ["campaign_review_approved", "campaign_started"]

    w2 = World()
    live = await w2.booked()
    w2.now = START + timedelta(seconds=1)
    await w2.send("schedule.start_due", live, {"due_at": "2030-01-01T00:00:00Z"}, role="system")
    await w2.send("campaign.pause", live)
    await w2.send("campaign.resume", live)
    assert w2.store.campaigns[uuid.UUID(live)].status.value == "LIVE"
    assert [n.kind for n in w2.requests()] == ["campaign_review_approved", "campaign_started"]


async def test_changes_the_spec_does_not_list_send_nothing() -> None:
    w = World()
    cid = await w.booked()
    await w.send("campaign.pause", cid)
    await w.send("campaign.resume", cid)
    await w.send("campaign.update", cid, {"title": "Renamed"}, role="publisher")
    assert [n.kind for n in w.requests()] == ["campaign_review_approved"]


async def test_publisher_cancel_emails_the_advertiser_with_the_penalty() -> None:
    w = World()
    cid = await w.booked()
    penalty = {"amount": "12.50", "currency": "EUR"}
    await w.send("campaign.cancel", cid, {"reason": "policy", "penalty": penalty}, role="publisher")
    [n] = [n for n in w.requests() if n.kind == "campaign_cancelled_by_publisher"]
    assert (n.template_data["reason"], n.template_data["penalty"]) == ("policy", "12.50 EUR")


async def test_suspension_and_reinstatement_each_email_the_advertiser_once() -> None:
    w = World()
    cid = await w.booked()
    suspend = await w.send("review.campaign_suspended", cid, {"reason": "policy"}, role="publisher")
    await w.send(
        "review.campaign_suspended", cid, {"reason": "policy"}, role="publisher", id_=suspend["id"]
    )  # a redelivery changes nothing
    await w.send("review.campaign_reinstated", cid, role="publisher")
    kinds = [n.kind for n in w.requests()]
    assert kinds == ["campaign_review_approved", "campaign_suspended", "campaign_reinstated"]


async def test_review_expired_emails_the_advertiser() -> None:
    w = World()
    cid = await w.submitted()
    w.now = END
    await w.send("schedule.end_due", cid, {"due_at": "2030-02-01T00:00:00Z"}, role="system")
    assert w.store.campaigns[uuid.UUID(cid)].status.value == "CANCELLED"
    assert [n.kind for n in w.requests()] == ["review_expired"]


async def test_a_title_with_crlf_gives_a_single_line_subject() -> None:
    w = World()
    await w.booked(title=EVIL_TITLE)
    [n] = w.requests()
    assert n.subject == 'Your campaign "Winter sale Bcc: x@evil.test" was approved'
    assert "\r" not in n.subject and "\n" not in n.subject


def test_one_line_removes_every_line_break_and_bounds_the_length() -> None:
    text = "a\rb\nc\x85d\u2028e\u2029f\x00g\u202eh\tI"
    assert one_line(text, 100) == "a b c d e f gh I"
    assert one_line("x" * 500, 10) == "x" * 9 + "…"


# ------------------------------------------------------------------ building the email

CREATED = datetime(2029, 12, 1, 10, 0, tzinfo=UTC)
BASE_DATA: dict[str, Any] = {
    "campaign_id": "6b1a0f8e-3c2d-4e5f-8a9b-0c1d2e3f4a5b",
    "title": "Winter <sale> & more",
    "status": "BOOKED",
    "display_status": "Ready",
    "starts": "2030-01-01 00:00 UTC",
    "ends": "2030-02-01 00:00 UTC",
    "budget": "1000.00 EUR",
    "contact_name": "Ada",
}
EXTRA: dict[str, dict[str, Any]] = {
    "campaign_review_rejected": {"reason": "misleading claims"},
    "campaign_ended": {"outcome": "It has stopped delivering ads.", "went_live": True},
    "creative_review_approved": {"creative_name": "Banner A", "creative_id": "cr-1"},
    "creative_review_rejected": {
        "creative_name": "Banner A",
        "creative_id": "cr-1",
        "reason": "blurry image",
    },
    "billing_error": {"reason": "card declined"},
    "out_of_budget": {"spent": "1000.00 EUR"},
    "low_relevance": {"impressions": 12000, "clicks": 3, "ctr": "0.025%"},
}


def outgoing(kind: str, **over: Any) -> Outgoing:
    values: dict[str, Any] = {
        "notification_id": str(uuid.uuid4()),
        "kind": kind,
        "to": "ada@example.com",
        "subject": f"Subject of {kind}",
        "message_id": "<n-1@campaign-worker>",
        "template_data": {**BASE_DATA, **EXTRA.get(kind, {})},
        "created_at": CREATED,
    }
    values.update(over)
    return Outgoing(**values)


def parts(msg: EmailMessage) -> dict[str, str]:
    return {p.get_content_type(): p.get_content() for p in msg.iter_parts()}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_builds_a_text_and_html_email_from_its_template_files(kind: str) -> None:
    msg = build_message(outgoing(kind), sender="Ads <ads@example.com>", templates=Templates())
    raw = msg.as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == f"Subject of {kind}"
    assert parsed["To"] == "ada@example.com"
    assert parsed["From"] == "Ads <ads@example.com>"
    assert parsed["Message-ID"] == "<n-1@campaign-worker>"
    assert parsed["Date"] == "Sat, 01 Dec 2029 10:00:00 +0000"
    assert parsed.get_content_type() == "multipart/alternative"
    body = parts(parsed)  # type: ignore[arg-type]
    assert set(body) == {"text/plain", "text/html"}
    text, html = body["text/plain"], body["text/html"]
    for part in (text, html):
        assert "$" not in part  # every placeholder was filled
        assert "Hello Ada" in part and "2030-01-01 00:00 UTC" in part and "1000.00 EUR" in part
        for value in EXTRA.get(kind, {}).values():
            if isinstance(value, str):
                assert value in part, (kind, value)
    assert "Winter <sale> & more" in text
    assert "Winter &lt;sale&gt; &amp; more" in html and "<sale>" not in html


def test_low_relevance_email_gives_the_specs_tips() -> None:
    msg = build_message(outgoing("low_relevance"), sender="a@example.com", templates=Templates())
    for part in parts(msg).values():
        assert "refine the targeting" in part
        assert "cover, the title and the price" in part
        assert "ratings and reviews" in part
        assert "12000" in part and "0.025%" in part


def test_rejected_email_shows_the_reason_and_ended_says_whether_it_ran() -> None:
    rejected = parts(
        build_message(outgoing("campaign_review_rejected"), sender="a@x.org", templates=Templates())
    )
    assert "Reason: misleading claims" in rejected["text/plain"]
    ended = outgoing(
        "campaign_ended",
        template_data={**BASE_DATA, "outcome": "It never went live, so no ads were delivered."},
    )
    text = parts(build_message(ended, sender="a@x.org", templates=Templates()))["text/plain"]
    assert "never went live" in text


def test_oversized_values_are_bounded() -> None:
    huge = "x" * 100_000
    n = outgoing("campaign_started", subject=huge, template_data={**BASE_DATA, "title": huge})
    msg = build_message(n, sender="a@x.org", templates=Templates())
    assert len(str(msg["Subject"])) <= 200
    assert len(parts(msg)["text/plain"]) < 10_000


# ------------------------------------------------------------------ header injection


def mailer(script: dict[str, Any] | None = None, timeout_s: float = 5.0) -> Mailer:
    FakeSmtp.instances = []
    return Mailer(
        host="smtp.test",
        port=25,
        sender="Ads <ads@example.com>",
        timeout_s=timeout_s,
        client_factory=lambda **kw: FakeSmtp(script, **kw),
    )


async def test_a_title_with_crlf_bcc_adds_no_header_and_no_recipient() -> None:
    w = World()
    await w.booked(title=EVIL_TITLE)
    [n] = w.requests()
    m = mailer()
    await m.send(
        Outgoing(
            notification_id=str(n.id),
            kind=n.kind,
            to=n.recipient,
            subject=n.subject,
            message_id=n.message_id,
            template_data=n.template_data,
            created_at=n.requested_at,
        )
    )
    [smtp] = FakeSmtp.instances
    [(raw, sender, recipients)] = smtp.sent
    assert recipients == ["ada@example.com"] and sender == "ads@example.com"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert {k.lower() for k in parsed} == EXPECTED_HEADERS
    assert parsed["Bcc"] is None and parsed.get_all("To") == ["ada@example.com"]
    assert b"\r\nBcc:" not in raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert parsed["Subject"] == 'Your campaign "Winter sale Bcc: x@evil.test" was approved'


async def test_even_a_raw_subject_with_crlf_cannot_add_a_header() -> None:
    m = mailer()
    await m.send(outgoing("campaign_started", subject="Hi\r\nBcc: x@evil.test\nX-Evil: 1"))
    [(raw, _, recipients)] = FakeSmtp.instances[0].sent
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert {k.lower() for k in parsed} == EXPECTED_HEADERS
    assert recipients == ["ada@example.com"]


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nBcc: x@evil.test",
        "ada@example.com\nx@evil.test",
        "ada@example.com, x@evil.test",
        "Ada <ada@example.com>",
        "ada@example.com>, <x@evil.test",
        "no-at-sign",
        "@example.com",
        "ada@",
        "a" * 300 + "@example.com",
        "",
    ],
)
async def test_an_invalid_recipient_fails_permanently_and_is_never_sent(address: str) -> None:
    with pytest.raises(InvalidAddress):
        checked_address(address)
    m = mailer()
    with pytest.raises(PermanentSendError, match="recipient"):
        await m.send(outgoing("campaign_started", to=address))
    assert FakeSmtp.instances == []  # not even connected


def test_a_bad_smtp_from_fails_at_start() -> None:
    with pytest.raises(InvalidAddress):
        Mailer(host="h", port=25, sender="ads@example.com\r\nBcc: x@evil.test")


# ------------------------------------------------------------------ failure classification


def r(code: int, message: str = "m") -> aiosmtplib.SMTPResponse:
    return aiosmtplib.SMTPResponse(code, message)


TRANSIENT: list[tuple[str, dict[str, Any]]] = [
    ("connection refused", {"connect": aiosmtplib.SMTPConnectError("refused")}),
    ("connect timeout", {"connect": aiosmtplib.SMTPConnectTimeoutError("slow")}),
    ("read timeout", {"send": aiosmtplib.SMTPReadTimeoutError("slow")}),
    ("disconnect", {"send": aiosmtplib.SMTPServerDisconnected("gone")}),
    ("421 at greeting", {"connect": aiosmtplib.SMTPConnectResponseError(421, "busy")}),
    ("451 at DATA", {"send": aiosmtplib.SMTPDataError(451, "try later")}),
    ("452 at MAIL", {"send": aiosmtplib.SMTPSenderRefused(452, "full", "ads@example.com")}),
    (
        "recipient 450 (greylisted)",
        {
            "send": aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(450, "greylisted", "ada@example.com")]
            )
        },
    ),
    ("returned refusal 451", {"refused": {"ada@example.com": r(451)}}),
    ("bad credentials", {"connect": aiosmtplib.SMTPAuthenticationError(535, "nope")}),
    ("STARTTLS missing", {"connect": aiosmtplib.SMTPException("STARTTLS not supported")}),
    ("OS error", {"connect": OSError("network unreachable")}),
]
PERMANENT: list[tuple[str, dict[str, Any]]] = [
    ("550 at DATA", {"send": aiosmtplib.SMTPDataError(550, "rejected")}),
    ("554 at DATA", {"send": aiosmtplib.SMTPDataError(554, "spam")}),
    ("553 at MAIL", {"send": aiosmtplib.SMTPSenderRefused(553, "no", "ads@example.com")}),
    (
        "recipient 550",
        {
            "send": aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "no such user", "ada@example.com")]
            )
        },
    ),
    ("returned refusal 550", {"refused": {"ada@example.com": r(550, "no such user")}}),
    ("554 at greeting", {"connect": aiosmtplib.SMTPConnectResponseError(554, "go away")}),
]


@pytest.mark.parametrize(("name", "script"), TRANSIENT, ids=[t[0] for t in TRANSIENT])
async def test_transient_failures(name: str, script: dict[str, Any]) -> None:
    with pytest.raises(TransientSendError):
        await mailer(script).send(outgoing("campaign_started"))
    assert not any(s.is_connected for s in FakeSmtp.instances)  # nothing left open


@pytest.mark.parametrize(("name", "script"), PERMANENT, ids=[t[0] for t in PERMANENT])
async def test_permanent_failures(name: str, script: dict[str, Any]) -> None:
    with pytest.raises(PermanentSendError) as info:
        await mailer(script).send(outgoing("campaign_started"))
    assert info.value.code is not None and 500 <= info.value.code < 600


@pytest.mark.parametrize("step", ["connect", "send"])
async def test_the_whole_send_is_bounded_by_one_timeout(step: str) -> None:
    """aiosmtplib's timeout is per socket operation; a server that trickles or hangs is cut
    off by the bound on the whole send."""
    script = {"connect": "hang"} if step == "connect" else {"send": "hang"}
    started = asyncio.get_running_loop().time()
    with pytest.raises(TransientSendError, match="timeout"):
        await mailer(script, timeout_s=0.1).send(outgoing("campaign_started"))
    assert asyncio.get_running_loop().time() - started < 2


async def test_a_failing_quit_after_acceptance_is_a_success() -> None:
    m = mailer({"quit": aiosmtplib.SMTPServerDisconnected("bye")})
    await m.send(outgoing("campaign_started"))
    m2 = mailer({"quit": "hang"}, timeout_s=0.1)
    await m2.send(outgoing("campaign_started"))  # accepted before the bound: sent


async def test_starttls_and_login_come_from_the_settings() -> None:
    FakeSmtp.instances = []
    m = Mailer(
        host="smtp.test",
        port=587,
        sender="ads@example.com",
        username="user",
        password="secret",
        starttls=True,
        client_factory=lambda **kw: FakeSmtp(None, **kw),
    )
    await m.send(outgoing("campaign_started"))
    kw = FakeSmtp.instances[0].kwargs
    assert (kw["hostname"], kw["port"], kw["start_tls"]) == ("smtp.test", 587, True)
    assert (kw["username"], kw["password"]) == ("user", "secret")


def test_classify_covers_plain_exceptions() -> None:
    assert classify(TimeoutError()).permanent is False
    assert classify(ConnectionResetError()).permanent is False
    assert classify(aiosmtplib.SMTPHeloError(501, "bad helo")).permanent is True
