"""Log lines a person can read at 3 a.m.: no colour codes, no partition lists, a commit
refused after a rebalance is one WARNING saying what happens next."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest
from aiokafka.errors import CommitFailedError

from campaign_worker.logs import setup_logging, summarize_partitions


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("INFO", "text")
    yield stream
    root.handlers[:], root.level = saved[0], saved[1]
    for name in ("faststream", "faststream.access.kafka"):
        logging.getLogger(name).filters.clear()


def test_a_partition_assignment_is_a_count() -> None:
    listed = ", ".join(
        f"TopicPartition(topic='campaign.{t}', partition={p})"
        for t in ("commands", "reviews", "payments")
        for p in range(12)
    )
    line = summarize_partitions(f"Consumer cw-1 assigned to partitions: ({listed})")
    assert line == "Consumer cw-1 assigned to partitions: 36 partitions of 3 topics"


def test_faststream_lines_are_plain_text_through_our_handler(captured: io.StringIO) -> None:
    # FastStream's logger brings a handler that colours its output even into a file
    from faststream._internal.logger.formatter import ColourizedFormatter

    logger = logging.getLogger("faststream.access.kafka")
    own = logging.StreamHandler(captured)
    own.setFormatter(ColourizedFormatter("%(levelname)s %(message)s", use_colors=True))
    logger.addHandler(own)
    logger.propagate = False
    try:
        parts = "(TopicPartition(topic='t', partition=0), TopicPartition(topic='t', partition=1))"
        logger.info("Consumer x assigned to partitions: %s", parts)
    finally:
        logger.removeHandler(own)
    text = captured.getvalue()
    assert "\x1b[" not in text
    assert text.count("\n") == 1
    assert (
        "INFO    faststream.access.kafka: Consumer x assigned to partitions: 2 partitions" in text
    )


def test_a_commit_refused_after_a_rebalance_is_one_warning(captured: io.StringIO) -> None:
    log = logging.getLogger("faststream.access.kafka")
    try:
        raise CommitFailedError("group rebalanced")
    except CommitFailedError:
        log.error("Exception in handler", exc_info=True)
    text = captured.getvalue()
    assert text.count("\n") == 1, text
    assert "Traceback" not in text and "ERROR" not in text
    assert " WARNING faststream.access.kafka: offset commit refused after a rebalance " in text
    assert "the batch is redelivered" in text and "inbox" in text


def test_other_errors_keep_their_traceback(captured: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("campaign_worker.x").error("failed", exc_info=True)
    text = captured.getvalue()
    assert "ERROR" in text and "Traceback" in text and "ValueError: boom" in text


def test_a_scheduler_job_cancelled_by_the_shutdown_is_no_error(captured: io.StringIO) -> None:
    import asyncio

    try:
        raise asyncio.CancelledError
    except asyncio.CancelledError:
        logging.getLogger("apscheduler.executors.default").exception(
            'Job "%s" raised an exception', "due-campaigns"
        )
    text = captured.getvalue()
    assert text.count("\n") == 1, text
    assert "ERROR" not in text and "Traceback" not in text
    assert (
        "INFO    apscheduler.executors.default: scheduler job cancelled by the shutdown "
        '(Job "due-campaigns" raised an exception)'
    ) in text
