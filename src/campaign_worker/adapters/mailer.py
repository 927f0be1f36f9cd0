"""Emails: `email.message.EmailMessage` built from template files, sent with aiosmtplib.

* One template pair per notification kind, `templates/<kind>.txt` and `templates/<kind>.html`
  (`string.Template` placeholders such as `$title`): every email has a plain-text part and an
  HTML alternative. Values are made single-line and bounded; in the HTML part they are also
  escaped.
* No header can be injected: the subject and every value that reaches a header goes through
  `one_line` (CR, LF and other control characters become spaces), the recipient must parse
  as exactly one `local@domain` address (anything else is a permanent failure, never sent),
  and the envelope names that one recipient explicitly, so no header can add another.
* The whole exchange (connect, STARTTLS, login, MAIL/RCPT/DATA, QUIT) is bounded by one
  `asyncio.timeout`: aiosmtplib's own timeout is per socket operation only.
* Failures are classified (`classify`): timeouts, disconnects, refused connections and 4xx
  replies are transient (retried by the notifier); 5xx replies and recipients refused with a
  5xx are permanent. aiosmtplib's `send_message` *returns* recipients it could not deliver
  to (when some others were accepted) instead of raising: those count as failures too.
  Authentication and TLS problems are configuration errors: transient, so that fixing the
  settings still delivers what is pending (within the attempt limit).
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import logging
import ssl
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from importlib import resources
from typing import Any, Protocol

import aiosmtplib

from campaign_worker.service.notifications import KINDS, SUBJECT_MAX, one_line

log = logging.getLogger(__name__)

VALUE_MAX = 2000  # characters of one template value in a body
ADDRESS_MAX = 254  # RFC 5321 path limit


class SendError(Exception):
    """A delivery that did not happen; `permanent` says whether trying again can help."""

    permanent = False

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientSendError(SendError):
    permanent = False


class PermanentSendError(SendError):
    permanent = True


class InvalidAddress(ValueError):
    pass


def checked_address(value: str) -> Address:
    """Exactly one `local@domain` address, or `InvalidAddress`. A value with CR/LF, a
    second address, a display name or a group never passes."""
    if not isinstance(value, str) or not value or len(value) > ADDRESS_MAX:
        raise InvalidAddress(f"recipient address is empty or longer than {ADDRESS_MAX}")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidAddress("recipient address contains white space or control characters")
    try:
        address = Address(addr_spec=value)
    except Exception as error:  # ValueError, email.errors.HeaderParseError, ...
        raise InvalidAddress(f"recipient address does not parse: {error}") from None
    if not address.username or not address.domain or "@" in address.domain:
        raise InvalidAddress("recipient address must be local@domain")
    if address.addr_spec != value:
        raise InvalidAddress("recipient address is not in its plain local@domain form")
    return address


@dataclass(frozen=True)
class Outgoing:
    """One notification to send, as the notifier read it from its row."""

    notification_id: str
    kind: str
    to: str
    subject: str
    message_id: str
    template_data: Mapping[str, Any]
    created_at: datetime


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return one_line(value, VALUE_MAX)


class Templates:
    """The template files of every kind, read once (a missing one fails at start)."""

    def __init__(self, package: str = "campaign_worker", folder: str = "templates") -> None:
        root = resources.files(package) / folder
        self._text: dict[str, string.Template] = {}
        self._html: dict[str, string.Template] = {}
        for kind in KINDS:
            self._text[kind] = string.Template((root / f"{kind}.txt").read_text("utf-8"))
            self._html[kind] = string.Template((root / f"{kind}.html").read_text("utf-8"))

    def render(self, kind: str, data: Mapping[str, Any]) -> tuple[str, str]:
        """(plain text, HTML) for `kind`; missing values render empty."""
        plain = _Blank({k: _text(v) for k, v in data.items()})
        escaped = _Blank({k: html.escape(v) for k, v in plain.items()})
        return self._text[kind].substitute(plain), self._html[kind].substitute(escaped)


def build_message(n: Outgoing, *, sender: str, templates: Templates) -> EmailMessage:
    """The email for `n`. Raises `InvalidAddress` (or `KeyError` for an unknown kind)."""
    to = checked_address(n.to)
    text, html_part = templates.render(n.kind, n.template_data)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = one_line(n.subject, SUBJECT_MAX)
    msg["Date"] = email.utils.format_datetime(n.created_at)  # the same on every attempt
    msg["Message-ID"] = one_line(n.message_id, 250)  # stable: a resend is recognisable
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Campaign-Worker-Notification"] = one_line(n.notification_id, 100)
    msg.set_content(text)
    msg.add_alternative(html_part, subtype="html")
    return msg


def classify(error: BaseException) -> SendError:
    """Transient or permanent, with a short description (see the module docstring)."""
    described = f"{type(error).__name__}: {error}"[:1000]
    if isinstance(error, SendError):
        return error
    if isinstance(error, InvalidAddress):
        return PermanentSendError(f"invalid recipient: {error}")
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in error.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
        code = max(codes) if codes else None
        if codes and all(500 <= c < 600 for c in codes):
            return PermanentSendError(f"recipient refused: {detail}"[:1000], code=code)
        return TransientSendError(f"recipient refused: {detail}"[:1000], code=code)
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return TransientSendError(described, code=error.code)  # configuration: retried
    if isinstance(error, aiosmtplib.SMTPResponseException):
        if 500 <= error.code < 600:
            return PermanentSendError(described, code=error.code)
        return TransientSendError(described, code=error.code)
    if isinstance(error, TimeoutError):  # our bound, or aiosmtplib's per-operation one
        return TransientSendError(f"timeout: {described}")
    # disconnects, refused connections, TLS and other network errors, STARTTLS not offered
    return TransientSendError(described)


def refused(errors: Mapping[str, Any]) -> SendError | None:
    """What `send_message`'s returned refusals (recipient -> SMTPResponse) mean, if any."""
    if not errors:
        return None
    codes = [int(r.code) for r in errors.values()]
    detail = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items())[:1000]
    if all(500 <= c < 600 for c in codes):
        return PermanentSendError(f"recipient refused: {detail}", code=max(codes))
    return TransientSendError(f"recipient refused: {detail}", code=max(codes))


class SmtpClient(Protocol):
    """What the mailer uses of `aiosmtplib.SMTP` (tests pass a fake)."""

    @property
    def is_connected(self) -> bool: ...
    async def connect(self) -> Any: ...
    async def send_message(
        self, message: EmailMessage, *, sender: str, recipients: list[str]
    ) -> tuple[dict[str, Any], str]: ...
    async def quit(self) -> Any: ...
    def close(self) -> None: ...


ClientFactory = Callable[..., SmtpClient]


class Mailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 30.0,
        cafile: str | None = None,
        templates: Templates | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        # a bad SMTP_FROM fails at start, not per email
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in sender):
            raise InvalidAddress("SMTP_FROM contains control characters")
        name, envelope_from = email.utils.parseaddr(sender)
        checked_address(envelope_from)
        self._host, self._port = host, port
        self._sender = email.utils.formataddr((name, envelope_from))
        self._envelope_from = envelope_from
        self._username, self._password = username or None, password
        self._starttls = starttls
        self._timeout_s = timeout_s
        self._tls_context = ssl.create_default_context(cafile=cafile) if cafile else None
        self._templates = templates or Templates()
        self._client_factory: ClientFactory = client_factory or aiosmtplib.SMTP

    def build(self, n: Outgoing) -> EmailMessage:
        return build_message(n, sender=self._sender, templates=self._templates)

    def _client(self) -> SmtpClient:
        kwargs: dict[str, Any] = {
            "hostname": self._host,
            "port": self._port,
            "timeout": self._timeout_s,  # per socket operation; the whole send is bounded below
            "start_tls": self._starttls,  # True: required; False: never (no silent fallback)
            "username": self._username,
            "password": self._password,
        }
        if self._tls_context is not None:
            kwargs["tls_context"] = self._tls_context
        return self._client_factory(**kwargs)

    async def send(self, n: Outgoing) -> None:
        """Deliver `n` to its one recipient, or raise `TransientSendError` /
        `PermanentSendError`. Returns once the server accepted the message."""
        try:
            message = self.build(n)
        except InvalidAddress as error:
            raise PermanentSendError(f"invalid recipient: {error}"[:1000]) from error
        except (KeyError, ValueError) as error:
            raise PermanentSendError(f"cannot build the email: {error!r}"[:1000]) from error
        smtp = self._client()
        accepted: tuple[dict[str, Any], str] | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                await smtp.connect()
                # the envelope names the one checked recipient: headers cannot add any
                accepted = await smtp.send_message(
                    message, sender=self._envelope_from, recipients=[n.to]
                )
                await smtp.quit()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if accepted is None:
                raise classify(error) from error
            log.debug("QUIT failed after the message was accepted: %r", error)
        finally:
            if smtp.is_connected:
                smtp.close()
        assert accepted is not None
        problem = refused(accepted[0])
        if problem is not None:
            raise problem
