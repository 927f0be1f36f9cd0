"""Prometheus metrics of the worker (FastStream's middleware adds its own to the same registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from campaign_worker.service.processor import BatchReport


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "campaign_worker_messages_total",
            "Inbound messages by topic, type and outcome "
            "(applied, rejected, duplicate, dead_lettered).",
            ["topic", "type", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "campaign_worker_dead_letters_total",
            "Messages sent to the dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.transitions = Counter(
            "campaign_worker_transitions_total",
            "Campaign status transitions (from is empty for created campaigns).",
            ["from_status", "to_status"],
            registry=r,
        )
        self.refusals = Counter(
            "campaign_worker_refusals_total", "Commands refused, by code.", ["code"], registry=r
        )
        self.deliveries_after_settlement = Counter(
            "campaign_worker_deliveries_after_settlement",
            "Delivery reports that arrived after their campaign's statement (recorded as "
            "non-billable, never changing the statement).",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "campaign_worker_batch_duration_seconds",
            "Time to process and commit one inbound batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_size = Histogram(
            "campaign_worker_batch_size",
            "Records per inbound batch.",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
            registry=r,
        )
        self.batch_failures = Counter(
            "campaign_worker_batch_failures_total",
            "Inbound batches whose transaction failed, by kind (transient or error).",
            ["kind"],
            registry=r,
        )
        self.outbox_published = Counter(
            "campaign_worker_outbox_published_total",
            "Outbox messages published to Kafka, by topic.",
            ["topic"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "campaign_worker_outbox_backlog",
            "Outbox rows waiting to be published (as last seen by the relay).",
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "campaign_worker_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (as last seen by the relay).",
            registry=r,
        )
        self.relay_failures = Counter(
            "campaign_worker_outbox_relay_failures_total",
            "Relay rounds that failed to publish (rows stay and are retried).",
            registry=r,
        )
        self.inbox_pruned = Counter(
            "campaign_worker_inbox_pruned_total",
            "Inbox rows deleted by the retention (older than CAMPAIGN_WORKER_INBOX_RETENTION_S).",
            registry=r,
        )

        # Consumer lag of the worker's own group (adapters/lag.py; topic = contract name).
        tp = ["topic", "partition"]
        self.consumer_lag = Gauge(
            "campaign_worker_consumer_lag_messages",
            "Offset lag of the group: end offset - committed offset (log start if none).",
            tp,
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "campaign_worker_consumer_lag_seconds",
            "Age of the oldest unconsumed message: now - timestamp of the record at the "
            "committed offset (0 when caught up, NaN when unreadable).",
            tp,
            registry=r,
        )
        self.consumer_committed_offset = Gauge(
            "campaign_worker_consumer_committed_offset",
            "Offset committed by the group (absent until it commits).",
            tp,
            registry=r,
        )
        self.consumer_end_offset = Gauge(
            "campaign_worker_consumer_end_offset", "End offset (high watermark).", tp, registry=r
        )
        self.consumer_partition_status = Gauge(
            "campaign_worker_consumer_partition_status",
            "1 for the partition's current lag status (OK, WARN, REWIND, STALL, STOP, ERR).",
            [*tp, "status"],
            registry=r,
        )
        self.consumer_group_status = Gauge(
            "campaign_worker_consumer_group_status",
            "1 for the group's current lag status (its worst partition status).",
            ["group", "status"],
            registry=r,
        )
        self.consumer_group_status_code = Gauge(
            "campaign_worker_consumer_group_status_code",
            "The group's lag status by severity: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR.",
            ["group"],
            registry=r,
        )
        self.consumer_group_members = Gauge(
            "campaign_worker_consumer_group_members",
            "Members of the consumer group at the last lag sample.",
            ["group"],
            registry=r,
        )
        self.lag_probe_runs = Counter(
            "campaign_worker_lag_probe_runs_total",
            "Consumer lag samples taken, by result (ok, error).",
            ["result"],
            registry=r,
        )

        self.schedule_lateness = Histogram(
            "campaign_worker_schedule_lateness_seconds",
            "How late a time-driven transition was applied after its start or end time.",
            ["trigger"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
            registry=r,
        )
        self.scheduler_ticks = Counter(
            "campaign_worker_scheduler_ticks_total",
            "Scheduler ticks by outcome (ok, failed).",
            ["outcome"],
            registry=r,
        )

        # Notifications (service/notifications.py, adapters/notifier.py).
        self.notifications = Counter(
            "campaign_worker_notifications_total",
            "Notifications by kind and outcome: requested, sent, failed (permanent error or "
            "attempts exhausted), retried (transient error, tried again later).",
            ["kind", "outcome"],
            registry=r,
        )
        self.notification_send_seconds = Histogram(
            "campaign_worker_notification_send_seconds",
            "Duration of one SMTP send attempt, by result (sent, transient, permanent).",
            ["result"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.notifier_failures = Counter(
            "campaign_worker_notifier_failures_total",
            "Notifier rounds that failed on the database (the rows stay pending).",
            registry=r,
        )

    # ProcessingObserver: every count is read from what the batch produced
    def batch_committed(self, report: BatchReport) -> None:
        self.batch_seconds.observe(report.seconds)
        self.batch_size.observe(report.size)
        for item in report.applied:
            self.messages.labels(item.source.topic, item.type, "applied").inc()
        for item, code in report.rejected:
            self.messages.labels(item.source.topic, item.type, "rejected").inc()
            self.refusals.labels(code).inc()
        for dup in report.duplicates:
            self.messages.labels(dup.source.topic, dup.type, "duplicate").inc()
        for dead in report.dead_lettered:
            self.messages.labels(dead.source.topic, dead.type or "", "dead_lettered").inc()
            self.dead_letters.labels(dead.source.topic, dead.code).inc()
        for h in report.history:
            if h.kind == "created" and h.to_status is not None:
                self.transitions.labels("", h.to_status).inc()
            elif h.kind == "status_changed" and h.from_status and h.to_status:
                self.transitions.labels(h.from_status, h.to_status).inc()
            lateness = h.details.get("lateness_seconds")
            if lateness is not None and h.trigger is not None:
                self.schedule_lateness.labels(h.trigger).observe(float(lateness))
            if h.kind == "delivery_after_settlement":
                self.deliveries_after_settlement.inc()
        for note in report.notifications:
            self.notifications.labels(note.kind, "requested").inc()

    def batch_failed(self, error: BaseException, transient: bool) -> None:
        self.batch_failures.labels("transient" if transient else "error").inc()
