"""A hand-written stand-in for `aiosmtplib.SMTP` (no mocks): records what the mailer asks
of it and fails or hangs at the steps a test names."""

from __future__ import annotations

import asyncio
import email.policy
from email.message import EmailMessage
from typing import Any


class FakeSmtp:
    """Stands in for aiosmtplib.SMTP: records what it was asked to do, fails as told."""

    instances: list[FakeSmtp] = []  # noqa: RUF012 - test bookkeeping

    def __init__(self, script: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.script = script or {}
        self.is_connected = False
        self.sent: list[tuple[bytes, str, list[str]]] = []
        self.quits = 0
        FakeSmtp.instances.append(self)

    async def _step(self, name: str) -> Any:
        action = self.script.get(name)
        if isinstance(action, BaseException):
            raise action
        if action == "hang":
            await asyncio.sleep(3600)
        if isinstance(action, float):  # a slow server: seconds
            await asyncio.sleep(action)
        return action

    async def connect(self) -> None:
        await self._step("connect")
        self.is_connected = True

    async def send_message(
        self, message: EmailMessage, *, sender: str, recipients: list[str]
    ) -> tuple[dict[str, Any], str]:
        await self._step("send")
        self.sent.append((message.as_bytes(policy=email.policy.SMTP), sender, list(recipients)))
        refused = self.script.get("refused") or {}
        return refused, "250 OK"

    async def quit(self) -> None:
        self.quits += 1
        await self._step("quit")
        self.is_connected = False

    def close(self) -> None:
        self.is_connected = False
