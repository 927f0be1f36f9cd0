"""Logging setup: human-readable by default, JSON lines with CAMPAIGN_WORKER_LOG_FORMAT=json.

Records carry the message they are about (campaign id, message id, correlation id, source
coordinates) when known, either passed as `extra={...}` or bound for a block of code with
`log_context(...)`: log shippers can then join a log line to the message and campaign it
concerns. The level comes from CAMPAIGN_WORKER_LOG_LEVEL (Settings.log_level).

Lines are written for a person reading them at 3 a.m.: FastStream's own loggers (which
colour their output even into a file) go through the same plain handler, a partition
assignment is one count instead of a list of every partition, and an offset commit that
fails because the group rebalanced is one WARNING that says what happens next, not an
ERROR with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FIELDS = (
    "campaign_id",
    "message_id",
    "correlation_id",
    "message_type",
    "topic",
    "partition",
    "offset",
    "group",
    "dead_letter_id",
    "error_code",
)

_bound: ContextVar[dict[str, Any] | None] = ContextVar("campaign_worker_log_fields", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields to every record logged inside the block (this task only); None is skipped."""
    current = _bound.get() or {}
    token = _bound.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


class ContextFilter(logging.Filter):
    """Copies the fields bound with `log_context` onto each record (explicit `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_bound.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


_EMAIL = re.compile(r"([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]*@([\w.-]+)")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret replaced by *** and email addresses masked
    (ada@example.com -> a***@example.com)."""
    for secret in secrets or RedactingFilter.secrets:
        if secret:
            text = text.replace(secret, "***")
    return _EMAIL.sub(r"\1***@\2", text)


class RedactingFilter(logging.Filter):
    """Last filter of the handler: no password, no email address leaves in a log line.

    `RedactingFilter.secrets` is filled by the composition root from the settings."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def add_secrets(cls, values: Iterable[str]) -> None:
        found = {*cls.secrets, *(v for v in values if v)}
        cls.secrets = tuple(sorted(found, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for name in FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if (clean := redact(text)) != text:
                record.exc_info, record.exc_text = None, clean
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the known fields, exception."""

    FIELDS = FIELDS

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a traceback the redacting filter already rewrote
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """The human form, with the known fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = record_fields(record)
        if not fields:
            return line
        first, nl, rest = line.partition("\n")
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{first} [{tail}]{nl}{rest}"


_PARTITION_LIST = re.compile(r"\((?:TopicPartition\(topic='[^']*', partition=\d+\)(?:, )?)+,?\)")
_TOPIC = re.compile(r"TopicPartition\(topic='([^']*)'")

COMMIT_AFTER_REBALANCE = (
    "offset commit refused after a rebalance ({error}): the batch is redelivered to the "
    "partition's new owner, and the inbox makes the messages already applied a no-op"
)
_REBALANCE_ERRORS = (
    "CommitFailedError",
    "IllegalGenerationError",
    "RebalanceInProgressError",
    "UnknownMemberIdError",
)


def summarize_partitions(message: str) -> str:
    """`assigned to partitions: (TopicPartition(...), ... 36 of them)` -> a count per topic."""

    def count(match: re.Match[str]) -> str:
        found = _TOPIC.findall(match.group(0))
        return f"{len(found)} partitions of {len(set(found))} topics"

    return _PARTITION_LIST.sub(count, message)


def _rebalance_error(record: logging.LogRecord) -> BaseException | None:
    error = record.exc_info[1] if record.exc_info else None
    while error is not None:
        if type(error).__name__ in _REBALANCE_ERRORS:
            return error
        error = error.__cause__ or error.__context__
    return None


def readable(record: logging.LogRecord) -> logging.LogRecord:
    """The record as a person should read it (see the module doc); changed in place."""
    if (error := _rebalance_error(record)) is not None:
        record.msg = COMMIT_AFTER_REBALANCE.format(error=type(error).__name__)
        record.args = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return record
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, asyncio.CancelledError) and record.name.startswith("apscheduler"):
        # the scheduler's shutdown cancels a tick in flight: its transaction rolls back and
        # the next start applies what is due; not an error
        original = record.getMessage()
        record.msg, record.args = "scheduler job cancelled by the shutdown (%s)", (original,)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return record
    message = record.getMessage()
    if "TopicPartition(" in message:
        record.msg, record.args = summarize_partitions(message), None
    return record


class _Reroute(logging.Filter):
    """On a third-party logger that brings its own (coloured) handler: send the record to our
    root handler instead, and stop it there."""

    def filter(self, record: logging.LogRecord) -> bool:
        root = logging.getLogger()
        if record.levelno >= root.getEffectiveLevel():
            root.handle(readable(record))
        return False


class ReadableFilter(logging.Filter):
    """Handler filter: every record passes, made readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        readable(record)
        return True


_REROUTED = ("faststream", "faststream.access.kafka")


def setup_logging(level: str, fmt: str | None = None) -> None:
    """Root handler on stderr; `fmt` (text or json) defaults to CAMPAIGN_WORKER_LOG_FORMAT."""
    fmt = (fmt or os.environ.get("CAMPAIGN_WORKER_LOG_FORMAT", "text")).lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(ReadableFilter())
    handler.addFilter(RedactingFilter())  # last: sees the message as it will be written
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _REROUTED:  # FastStream adds its handlers later; this filter runs first
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Reroute) for f in logger.filters):
            logger.filters.insert(0, _Reroute())
    # per-poll, per-tick and per-plugin chatter at INFO
    for noisy in ("aiokafka", "apscheduler", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
