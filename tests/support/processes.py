"""Worker processes started the way operators start them (`campaign-worker run`)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from campaign_worker.dev.services import free_port
from tests.support.util import eventually, http_get

CLI = [sys.executable, "-m", "campaign_worker.entrypoints.cli"]


class WorkerProcess:
    def __init__(self, harness: Any, **env: str) -> None:
        self.port = free_port()
        defaults = {
            "DATABASE_URL": harness.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": harness.kafka,
            "CAMPAIGN_WORKER_TOPIC_PREFIX": harness.prefix,
            "CAMPAIGN_WORKER_GROUP_ID": f"cw-{harness.prefix}",
            "CAMPAIGN_WORKER_HTTP_PORT": str(self.port),
            "CAMPAIGN_WORKER_TOPIC_PARTITIONS": "3",
            "CAMPAIGN_WORKER_RELAY_POLL_INTERVAL_S": "0.05",
        }
        self.env = {**os.environ, **defaults, **env}  # a test may override any default
        self.proc: asyncio.subprocess.Process | None = None
        self.log = bytearray()
        self._drain: asyncio.Task[None] | None = None

    async def start(self, *, migrate: bool = False) -> None:
        args = ["run"] if migrate else ["run", "--no-migrate"]
        self.proc = await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._drain = asyncio.create_task(self._read())

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, _ = await asyncio.to_thread(http_get, self.port, "/readyz")
            except OSError:
                return False
            return status == 200

        await eventually(ready, timeout=60, interval=0.2)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.log.extend(chunk)

    def tail(self, n: int = 3000) -> str:
        return self.log[-n:].decode(errors="replace")

    async def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)
        return self.proc.returncode if self.proc.returncode is not None else -1
