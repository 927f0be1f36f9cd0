"""Kafka connection settings shared by every client the worker builds (FastStream's broker,
the relay's producer, the admin client), and topic creation."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from campaign_worker.config import Settings

log = logging.getLogger(__name__)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for bootstrap, TLS and SASL."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = _ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password
    return kwargs


def faststream_security(settings: Settings) -> BaseSecurity | None:
    context = _ssl_context(settings)
    if not settings.kafka_security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=context) if context else None
    user, password = settings.kafka_sasl_username or "", settings.kafka_sasl_password or ""
    mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
    use_ssl = context is not None
    if mechanism == "PLAIN":
        return SASLPlaintext(user, password, ssl_context=context, use_ssl=use_ssl)
    if mechanism == "SCRAM-SHA-256":
        return SASLScram256(user, password, ssl_context=context, use_ssl=use_ssl)
    if mechanism == "SCRAM-SHA-512":
        return SASLScram512(user, password, ssl_context=context, use_ssl=use_ssl)
    raise ValueError(
        f"KAFKA_SASL_MECHANISM {mechanism!r} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
    )


async def ensure_topics(settings: Settings, names: list[str]) -> list[str]:
    """Create the worker's topics when missing; return the ones created."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            replication = settings.topic_replication_factor
            if replication is None:
                cluster = await admin.describe_cluster()
                replication = max(1, min(3, len(cluster.get("brokers", []))))
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            n,
                            num_partitions=settings.topic_partitions,
                            replication_factor=replication,
                        )
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another replica was quicker
            log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
