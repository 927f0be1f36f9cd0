"""Settings from the environment, named exactly as the contract's "Running it" table."""

from __future__ import annotations

import os
import ssl
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


FILE_SETTINGS = {
    "database_url": "DATABASE_URL",
    "database_password": "DATABASE_PASSWORD",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_key_password": "KAFKA_SSL_KEY_PASSWORD",
    "smtp_username": "SMTP_USERNAME",
    "smtp_password": "SMTP_PASSWORD",
}
"""Settings that may also be read from a file named by `<NAME>_FILE` (mounted secrets)."""

POSTGRES_TLS_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
"""libpq's TLS parameters in DATABASE_URL; asyncpg takes them as an SSL context instead."""

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class FileSecretsSource(PydanticBaseSettingsSource):
    """`DATABASE_URL_FILE=/run/secrets/db-url` and the like: the file's content (without the
    trailing newline) is the setting. Setting both `X` and `X_FILE` is an error."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        environ = {k.upper(): v for k, v in os.environ.items()}
        for field_name, env in FILE_SETTINGS.items():
            path = environ.get(f"{env}_FILE")
            if not path:
                continue
            if environ.get(env):
                raise ValueError(f"set either {env} or {env}_FILE, not both")
            try:
                values[field_name] = Path(path).read_text().rstrip("\r\n")
            except OSError as error:
                raise ValueError(
                    f"{env}_FILE={path}: cannot read it ({error.strerror or error})"
                ) from None
        return values


class Settings(BaseSettings):
    """Everything the worker reads from its environment.

    Contract names (`DATABASE_URL`, `KAFKA_*`, `SMTP_*`) are used as they are; the worker's
    own knobs carry the `CAMPAIGN_WORKER_` prefix.
    """

    # hide_input_in_errors: a rejected value (a URL with its password) is never echoed
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    database_url: str = Field(
        "postgresql://campaign_worker:campaign_worker@localhost:5432/campaign_worker",
        validation_alias=_env("DATABASE_URL"),
        repr=False,  # it may hold the password
        description="libpq-style URL; `?sslmode=verify-full&sslrootcert=CA` for TLS "
        "(also sslcert, sslkey for a client certificate).",
    )
    database_password: SecretStr | None = Field(
        None,
        validation_alias=_env("DATABASE_PASSWORD"),
        description="Password for DATABASE_URL's user, when the URL carries none.",
    )

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: str | None = Field(None, validation_alias=_env("KAFKA_SASL_MECHANISM"))
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE"))
    kafka_ssl_certfile: str | None = Field(
        None,
        validation_alias=_env("KAFKA_SSL_CERTFILE"),
        description="Client certificate (PEM) for mutual TLS; with KAFKA_SSL_KEYFILE.",
    )
    kafka_ssl_keyfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_KEYFILE"))
    kafka_ssl_key_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SSL_KEY_PASSWORD")
    )
    kafka_idempotent_producer: bool = Field(
        True,
        validation_alias=_env("CAMPAIGN_WORKER_KAFKA_IDEMPOTENCE"),
        description="Idempotent producer for the outbox relay; off only for brokers that "
        "lack InitProducerId (the Tansu dev broker).",
    )

    smtp_host: str = Field("localhost", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(25, validation_alias=_env("SMTP_PORT"))
    smtp_username: str | None = Field(None, validation_alias=_env("SMTP_USERNAME"))
    smtp_password: SecretStr | None = Field(None, validation_alias=_env("SMTP_PASSWORD"))
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
    startup_backoff_initial_s: float = Field(
        0.5,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_STARTUP_BACKOFF_INITIAL_S"),
        description="First wait between attempts to reach Kafka or Postgres at start.",
    )
    startup_backoff_max_s: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_STARTUP_BACKOFF_MAX_S"),
        description="Longest wait between attempts (the wait doubles up to it).",
    )
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
    publish_state: bool = Field(
        True,
        validation_alias=_env("CAMPAIGN_WORKER_PUBLISH_STATE"),
        description=(
            "Write each changed campaign's whole state to the compacted campaign.state topic "
            "(off only to measure what that record costs: subscribers rely on it)."
        ),
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
    inbox_retention_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_INBOX_RETENTION_S"),
        description="Inbox rows (the ids of processed messages) older than this are deleted; "
        "a message redelivered later than this after its first processing is no longer "
        "recognised as a duplicate. Keep it well above any redelivery or replay window.",
    )
    inbox_prune_interval_s: float = Field(
        60.0,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_INBOX_PRUNE_INTERVAL_S"),
        description="How often the relay leader deletes expired inbox rows.",
    )
    inbox_prune_batch_size: int = Field(
        5000,
        gt=0,
        validation_alias=_env("CAMPAIGN_WORKER_INBOX_PRUNE_BATCH_SIZE"),
        description="Inbox rows deleted per statement (one short transaction each).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            FileSecretsSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        # never echo the value: it may hold the password
        scheme = value.split("://", 1)[0]
        if scheme not in {"postgresql", "postgres", "postgresql+asyncpg"} or "://" not in value:
            raise ValueError(
                "DATABASE_URL must be postgresql://user:pass@host:port/db"
                f"{f', got scheme {scheme!r}' if '://' in value else ''}"
            )
        query = dict(parse_qsl(urlsplit(value).query))
        if query.get("sslmode", "disable") not in _SSLMODES:
            raise ValueError(f"DATABASE_URL sslmode must be one of {', '.join(_SSLMODES)}")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        """The DSN with the asyncpg driver named, as SQLAlchemy wants it: the password of
        DATABASE_PASSWORD put in, libpq's TLS parameters taken out (asyncpg gets them as
        `postgres_connect_args`) except `sslmode`, which asyncpg understands as `ssl`."""
        parts = urlsplit(self.database_url)
        netloc = parts.netloc
        if self.database_password is not None and "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" not in userinfo:
                secret = quote(self.database_password.get_secret_value(), safe="")
                netloc = f"{userinfo}:{secret}@{hostport}"
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in POSTGRES_TLS_PARAMS]
        mode = dict(parse_qsl(parts.query)).get("sslmode")
        if mode is not None:
            query.append(("ssl", mode))
        return urlunsplit(
            ("postgresql+asyncpg", netloc, parts.path, urlencode(query), parts.fragment)
        )

    @property
    def postgres_tls(self) -> dict[str, str]:
        """libpq TLS parameters of DATABASE_URL (sslmode, sslrootcert, sslcert, sslkey)."""
        query = dict(parse_qsl(urlsplit(self.database_url).query))
        return {k: unquote(query[k]) for k in POSTGRES_TLS_PARAMS if k in query}

    @property
    def postgres_connect_args(self) -> dict[str, Any]:
        """asyncpg `connect()` arguments for DATABASE_URL's TLS parameters, with libpq's
        meaning: verify-full checks the chain and the host name, verify-ca the chain only,
        require/prefer/allow encrypt without checking; sslrootcert defaults to
        PGSSLROOTCERT, then the system CAs."""
        tls = self.postgres_tls
        mode = tls.get("sslmode")
        if mode is None or mode == "disable":
            return {}
        if mode in ("allow", "prefer", "require") and "sslcert" not in tls:
            return {"ssl": mode}  # asyncpg's own handling, fallback to plain text included
        cafile = tls.get("sslrootcert") or os.environ.get("PGSSLROOTCERT") or None
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = mode == "verify-full"
        if mode in ("allow", "prefer", "require"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if "sslcert" in tls:
            context.load_cert_chain(tls["sslcert"], tls.get("sslkey"))
        return {"ssl": context}

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for redaction (logs, readiness output)."""
        found: list[str] = []
        for secret in (
            self.database_password,
            self.kafka_sasl_password,
            self.kafka_ssl_key_password,
            self.smtp_password,
        ):
            if secret is not None and secret.get_secret_value():
                found.append(secret.get_secret_value())
        password = urlsplit(self.database_url).password
        if password:
            found += [password, unquote(password)]
        return sorted(set(found), key=len, reverse=True)

    def topic(self, name: str) -> str:
        """Physical topic name for a contract topic name."""
        return f"{self.topic_prefix}{name}"
