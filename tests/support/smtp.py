"""A real SMTP server for e2e tests: aiosmtpd in its own thread, on a port that stays the same
across `down()` / `up()`, recording what it accepted and answering as the test says."""

from __future__ import annotations

import email
import email.policy
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from campaign_worker.dev.services import free_port


@dataclass
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    login: str | None

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


@dataclass
class SmtpServer:
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    tls_context: Any = None  # STARTTLS offered and required when set
    credentials: tuple[str, str] | None = None  # AUTH required when set
    delivered: list[Delivery] = field(default_factory=list)
    rcpt_attempts: list[str] = field(default_factory=list)
    data_attempts: int = 0
    rcpt_reply: dict[str, str] = field(default_factory=dict)  # address -> e.g. "550 ..."
    data_replies: list[str] = field(default_factory=list)  # next DATA answers, e.g. "451 ..."
    on_data: Callable[[Delivery], None] | None = None  # runs before the 250 is sent
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def up(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=True)
        if self.credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="localhost",
            ready_timeout=30,
            **kwargs,
        )
        self._controller.start()

    def down(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.credentials == (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def by_message_id(self) -> Counter[str]:
        with self._lock:
            return Counter(d.message_id for d in self.delivered)

    def to(self, address: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.delivered if address in d.rcpt_tos]


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.s = server

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        with self.s._lock:
            self.s.rcpt_attempts.append(address)
            reply = self.s.rcpt_reply.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.s._lock:
            self.s.data_attempts += 1
            reply = self.s.data_replies.pop(0) if self.s.data_replies else None
        if reply:
            return reply
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        delivery = Delivery(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            message=email.message_from_bytes(raw, policy=email.policy.default),  # type: ignore[arg-type]
            raw=raw,
            tls=session.ssl is not None,
            login=(
                session.auth_data.login.decode()
                if isinstance(session.auth_data, LoginPassword)
                else None
            ),
        )
        with self.s._lock:
            self.s.delivered.append(delivery)
        if self.s.on_data is not None:
            self.s.on_data(delivery)
        return "250 OK"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost made with the openssl CLI: (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
