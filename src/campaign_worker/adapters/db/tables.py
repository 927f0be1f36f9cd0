"""Postgres tables (SQLAlchemy Core). Alembic migrations are the source of the real schema;
these definitions are what the code reads and writes, and a test checks they agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

# One row per processed inbound message id: the idempotency record. Written in the same
# transaction as the state change and the outbox rows it caused.
inbox = Table(
    "inbox",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# The retention (the relay leader) deletes the oldest rows past CAMPAIGN_WORKER_INBOX_RETENTION_S.
Index("ix_inbox_received_at", inbox.c.received_at)

# Messages waiting to be published. Only the relay reads it; rows are deleted once Kafka
# has acknowledged them. `id` order is publication order. A queue table: autovacuum runs on
# it by dead-row count, unthrottled (storage parameters set by migration 0005).
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("topic", Text, nullable=False),  # contract name; the relay adds the prefix
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every message the worker could not understand, kept for operators (list, show, replay)
# and unique by its source coordinates so a redelivery does not dead-letter it twice.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default="[]"),
    Column("error_code", Text, nullable=False),
    Column("error_message", Text, nullable=False),
    Column("message_id", Text, nullable=True),
    Column("message_type", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("replayed_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_source"),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("advertiser_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("ad_product_id", Text, nullable=False),
    Column("budget_amount", Numeric(20, 4), nullable=False),
    Column("currency", Text, nullable=False),
    Column("billing_type", Text, nullable=False),
    Column("start_at", DateTime(timezone=True), nullable=False),
    Column("end_at", DateTime(timezone=True), nullable=False),
    Column("targeting", JSONB, nullable=False),
    Column("frequency_cap", JSONB, nullable=True),
    Column("contact_name", Text, nullable=False),
    Column("contact_email", Text, nullable=False),
    Column("timezone", Text, nullable=True),
    Column("status", Text, nullable=False),
    Column("paused_from", Text, nullable=True),
    Column("version", Integer, nullable=False),
    Column("rejection_reason", Text, nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Column("penalty_amount", Numeric(20, 4), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_campaigns_advertiser", campaigns.c.advertiser_id)
# The scheduler's claims: due starts of BOOKED and due ends of BOOKED/LIVE/PAUSED campaigns.
Index("ix_campaigns_status_start", campaigns.c.status, campaigns.c.start_at)
Index("ix_campaigns_status_end", campaigns.c.status, campaigns.c.end_at)

# Every accepted change, with who did it and which message caused it (spec §11).
campaign_history = Table(
    "campaign_history",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("from_status", Text, nullable=True),
    Column("to_status", Text, nullable=True),
    Column("trigger", Text, nullable=True),
    Column("details", JSONB, nullable=False, server_default="{}"),
    Column("actor_role", Text, nullable=False),
    Column("actor_id", Text, nullable=True),
    Column("message_id", Text, nullable=False),
    Column("message_type", Text, nullable=False),
    Column("correlation_id", Text, nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("campaign_id", "version", name="uq_campaign_history_version"),
)

ad_products = Table(
    "ad_products",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("unit_ids", JSONB, nullable=False, server_default="[]"),
    Column("unit_set_valid", Boolean, nullable=False),
    Column("buyable", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row per notification (spec §10): unique per causing message, recipient and kind, so a
# notification is requested once per event; written in the transaction of the change that
# caused it, then sent by the notifier (adapters/notifier.py), which records the outcome.
notifications = Table(
    "notifications",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),  # the contract's notification_id
    Column("cause_id", Text, nullable=False),  # id of the message that caused it
    Column("recipient", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
    Column("creative_id", Text, nullable=True),
    Column("correlation_id", Text, nullable=True),
    Column("message_id", Text, nullable=False),  # RFC 5322 Message-ID, the same on every try
    Column("payload", JSONB, nullable=False),  # subject, to, template_data
    Column("status", Text, nullable=False, server_default="pending"),  # pending, sent, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_notifications_status"),
    UniqueConstraint("cause_id", "recipient", "kind", name="uq_notifications_cause"),
    UniqueConstraint("message_id", name="uq_notifications_message_id"),
)
# The notifier's claims: due pending rows, earliest first.
Index(
    "ix_notifications_due",
    notifications.c.next_attempt_at,
    postgresql_where=notifications.c.status == "pending",
)
Index("ix_notifications_campaign", notifications.c.campaign_id)

# Creatives of a campaign (spec §3). Deleted ones stay as tombstones (deleted = true).
creatives = Table(
    "creatives",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("ad_unit_id", Text, nullable=False),
    Column("content", JSONB, nullable=False),
    Column("status", Text, nullable=False),
    Column("rejection_reason", Text, nullable=True),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # paused by the advertiser (kept through a review: a re-approved creative stays PAUSED)
    Column("paused", Boolean, nullable=False, server_default="false"),
)

# Stored holds of a campaign (spec §4; `no_approved_creatives` is derived, never stored) and
# the reason of a suspension.
campaign_holds = Table(
    "campaign_holds",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("holds", JSONB, nullable=False, server_default="[]"),
    Column("suspension_reason", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Targeting categories and groups as the catalog last described them (spec §9).
catalog_categories = Table(
    "catalog_categories",
    metadata,
    Column("id", Text, primary_key=True),
    Column("state", Text, nullable=False),  # active, deactivated, deleted
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_campaigns_product", campaigns.c.ad_product_id)

# The money side of a campaign (spec §5-7): the account document (ledger, charges, refunds,
# statement) is the state the rules work on; three of its fields are also columns, for the
# queries that must not read every document: when a closed campaign's pending statement is
# due (the scheduler's claims, spec §6) and the LIVE impressions and clicks (relevance peers,
# spec §7) ...
campaign_accounts = Table(
    "campaign_accounts",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("account", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("settle_at", DateTime(timezone=True), nullable=True),
    Column("live_impressions", BigInteger, nullable=False, server_default="0"),
    Column("live_clicks", BigInteger, nullable=False, server_default="0"),
)
Index(
    "ix_campaign_accounts_settle_at",
    campaign_accounts.c.settle_at,
    postgresql_where=campaign_accounts.c.settle_at.is_not(None),
)

# ... and every money movement is also a row of its own, with the message that caused it, so
# each number on a statement can be traced without reading documents.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
    Column("kind", Text, nullable=False),  # charge, refund, spend, penalty
    Column("amount", Numeric(20, 4), nullable=False),
    Column("currency", Text, nullable=False),
    Column("ref", Text, nullable=False),
    Column("billable", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("message_id", Text, nullable=False),
)
Index("ix_ledger_entries_campaign", ledger_entries.c.campaign_id, ledger_entries.c.id)

# Exactly one statement per campaign (the unique campaign_id is the last line of defence).
statements = Table(
    "statements",
    metadata,
    Column("statement_id", Text, primary_key=True),
    Column("campaign_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("document", JSONB, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)

# Where an interrupted `state republish --all` goes on from (migration 0008): removed when the
# job completes.
state_republish = Table(
    "state_republish",
    metadata,
    Column("job", Text, primary_key=True),
    Column("after_id", UUID(as_uuid=True), nullable=False),
    Column("written", BigInteger, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
