"""Settings from the environment, named exactly as the contract's "Running it" table."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Everything the worker reads from its environment.

    Contract names (`DATABASE_URL`, `KAFKA_*`, `SMTP_*`) are used as they are; the worker's
    own knobs carry the `CAMPAIGN_WORKER_` prefix.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        "postgresql://campaign_worker:campaign_worker@localhost:5432/campaign_worker",
        validation_alias=_env("DATABASE_URL"),
    )

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: str | None = Field(None, validation_alias=_env("KAFKA_SASL_MECHANISM"))
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: str | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD"))
    kafka_ssl_cafile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE"))
    kafka_idempotent_producer: bool = Field(
        True,
        validation_alias=_env("CAMPAIGN_WORKER_KAFKA_IDEMPOTENCE"),
        description="Idempotent producer for the outbox relay; off only for brokers that "
        "lack InitProducerId (the Tansu dev broker).",
    )

    smtp_host: str = Field("localhost", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(25, validation_alias=_env("SMTP_PORT"))
    smtp_username: str | None = Field(None, validation_alias=_env("SMTP_USERNAME"))
    smtp_password: str | None = Field(None, validation_alias=_env("SMTP_PASSWORD"))
    smtp_starttls: bool = Field(False, validation_alias=_env("SMTP_STARTTLS"))
    smtp_from: str = Field("campaign-worker@localhost", validation_alias=_env("SMTP_FROM"))

    topic_prefix: str = Field("", validation_alias=_env("CAMPAIGN_WORKER_TOPIC_PREFIX"))
    group_id: str = Field("campaign-worker", validation_alias=_env("CAMPAIGN_WORKER_GROUP_ID"))
    http_port: int = Field(8080, validation_alias=_env("CAMPAIGN_WORKER_HTTP_PORT"))
    http_host: str = Field("0.0.0.0", validation_alias=_env("CAMPAIGN_WORKER_HTTP_HOST"))
    log_level: str = Field("INFO", validation_alias=_env("CAMPAIGN_WORKER_LOG_LEVEL"))

    max_message_bytes: int = Field(
        1_048_576,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_MAX_MESSAGE_BYTES"),
        description="Inbound records larger than this are dead-lettered unread.",
    )
    batch_max_records: int = Field(
        500, gt=0, validation_alias=_env("CAMPAIGN_WORKER_BATCH_MAX_RECORDS")
    )
    batch_timeout_ms: int = Field(
        50, ge=0, validation_alias=_env("CAMPAIGN_WORKER_BATCH_TIMEOUT_MS")
    )
    create_topics: bool = Field(True, validation_alias=_env("CAMPAIGN_WORKER_CREATE_TOPICS"))
    topic_partitions: int = Field(
        6, gt=0, validation_alias=_env("CAMPAIGN_WORKER_TOPIC_PARTITIONS")
    )
    topic_replication_factor: int | None = Field(
        None,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_TOPIC_REPLICATION_FACTOR"),
        description="Replication of topics the worker creates; unset: min(3, brokers).",
    )
    processing_max_attempts: int = Field(
        5,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_PROCESSING_MAX_ATTEMPTS"),
        description="Attempts for a message whose processing fails with a non-connection "
        "error before it is dead-lettered (connection errors are retried until they heal).",
    )
    retry_backoff_max_s: float = Field(
        10.0, gt=0, validation_alias=_env("CAMPAIGN_WORKER_RETRY_BACKOFF_MAX_S")
    )
    relay_batch_size: int = Field(
        1000, gt=0, validation_alias=_env("CAMPAIGN_WORKER_RELAY_BATCH_SIZE")
    )
    relay_poll_interval_s: float = Field(
        0.2, gt=0, validation_alias=_env("CAMPAIGN_WORKER_RELAY_POLL_INTERVAL_S")
    )
    scheduler_tick_s: float = Field(
        0.5,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_SCHEDULER_TICK_S"),
        description="How often each replica looks for due starts and ends.",
    )
    scheduler_batch_size: int = Field(
        500, gt=0, validation_alias=_env("CAMPAIGN_WORKER_SCHEDULER_BATCH_SIZE")
    )
    scheduler_enabled: bool = Field(True, validation_alias=_env("CAMPAIGN_WORKER_SCHEDULER"))
    shutdown_timeout_s: float = Field(
        25.0, gt=0, validation_alias=_env("CAMPAIGN_WORKER_SHUTDOWN_TIMEOUT_S")
    )
    relevance_min_impressions: int = Field(
        10_000, gt=0, validation_alias=_env("CAMPAIGN_WORKER_RELEVANCE_MIN_IMPRESSIONS")
    )
    relevance_min_ctr: Decimal = Field(
        Decimal("0.001"),
        ge=0,
        le=1,
        validation_alias=_env("CAMPAIGN_WORKER_RELEVANCE_MIN_CTR"),
        description=(
            "Click-through rate (0.001 = 0.1%) below which a campaign is stopped for low "
            "relevance while fewer than 5 peers can be compared with."
        ),
    )
    relevance_peer_ratio: Decimal = Field(
        Decimal("0.25"),
        ge=0,
        le=1,
        validation_alias=_env("CAMPAIGN_WORKER_RELEVANCE_PEER_RATIO"),
        description=(
            "A campaign is stopped for low relevance when its click-through rate is below this "
            "share of the median rate of the other campaigns of its ad product."
        ),
    )
    settlement_grace_s: float = Field(
        3600.0,
        ge=0,
        validation_alias=_env("CAMPAIGN_WORKER_SETTLEMENT_GRACE_S"),
        description=(
            "How long a closed campaign's statement waits for the ad server's delivery.final "
            "(0: issued at the close)."
        ),
    )
    vat_rate: Decimal = Field(
        Decimal("0.10"), ge=0, le=1, validation_alias=_env("CAMPAIGN_WORKER_VAT_RATE")
    )
    lag_interval_s: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_LAG_INTERVAL_S"),
        description="How often the worker samples its own consumer lag (adapters/lag.py).",
    )
    lag_window: int = Field(
        6,
        ge=2,
        validation_alias=_env("CAMPAIGN_WORKER_LAG_WINDOW"),
        description="Samples in the lag status evaluation window (WARN needs it full).",
    )
    lag_stall_after_s: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_LAG_STALL_AFTER_S"),
        description="Seconds a partition's committed offset must stand still, with messages "
        "waiting and members in the group, before its lag status is STALL.",
    )

    # Notifications (adapters/notifier.py, adapters/mailer.py); SMTP_* above say where to.
    smtp_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_SMTP_TIMEOUT_S"),
        description="Bound on one whole send: connect, STARTTLS, login, MAIL/RCPT/DATA, QUIT.",
    )
    smtp_max_attempts: int = Field(
        10,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_SMTP_MAX_ATTEMPTS"),
        description="Tries of an email failing transiently (timeouts, disconnects, 4xx) "
        "before it ends as notification.failed; 5xx and invalid addresses fail at once.",
    )
    smtp_backoff_initial_s: float = Field(
        5.0, gt=0, validation_alias=_env("CAMPAIGN_WORKER_SMTP_BACKOFF_INITIAL_S")
    )
    smtp_backoff_max_s: float = Field(
        600.0, gt=0, validation_alias=_env("CAMPAIGN_WORKER_SMTP_BACKOFF_MAX_S")
    )
    smtp_cafile: str | None = Field(
        None,
        validation_alias=_env("CAMPAIGN_WORKER_SMTP_CAFILE"),
        description="CA bundle for the SMTP server's certificate (STARTTLS); system CAs if unset.",
    )
    notifier_enabled: bool = Field(True, validation_alias=_env("CAMPAIGN_WORKER_NOTIFIER"))
    notifier_batch_size: int = Field(
        50, gt=0, validation_alias=_env("CAMPAIGN_WORKER_NOTIFIER_BATCH_SIZE")
    )
    notifier_poll_interval_s: float = Field(
        1.0, gt=0, validation_alias=_env("CAMPAIGN_WORKER_NOTIFIER_POLL_INTERVAL_S")
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError(
                f"DATABASE_URL must be postgresql://user:pass@host:port/db, got scheme {scheme!r}"
            )
        return value

    @property
    def sqlalchemy_url(self) -> str:
        """The DSN with the asyncpg driver named, as SQLAlchemy wants it."""
        rest = self.database_url.split("://", 1)[1]
        return f"postgresql+asyncpg://{rest}"

    def topic(self, name: str) -> str:
        """Physical topic name for a contract topic name."""
        return f"{self.topic_prefix}{name}"
