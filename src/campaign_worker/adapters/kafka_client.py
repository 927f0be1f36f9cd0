"""Kafka connection settings shared by every client the worker builds (FastStream's broker,
the relay's producer, the admin client), and topic creation."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from campaign_worker import topics
from campaign_worker.config import Settings

log = logging.getLogger(__name__)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for SSL and SASL_SSL: the broker's chain and host name checked against
    KAFKA_SSL_CAFILE (system CAs when unset), and a client certificate for mutual TLS."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        key_password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
            password=key_password.get_secret_value() if key_password else None,
        )
    return context


def _sasl_password(settings: Settings) -> str:
    secret = settings.kafka_sasl_password
    return secret.get_secret_value() if secret is not None else ""


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
        kwargs["sasl_plain_password"] = _sasl_password(settings)
    return kwargs


def faststream_security(settings: Settings) -> BaseSecurity | None:
    context = _ssl_context(settings)
    if not settings.kafka_security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=context) if context else None
    user, password = settings.kafka_sasl_username or "", _sasl_password(settings)
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


COMPACT = {"cleanup.policy": "compact"}


async def ensure_topics(settings: Settings, names: list[str]) -> list[str]:
    """Create the worker's topics when missing (the compacted ones with
    `cleanup.policy=compact`); return the ones created. A compacted topic that exists with
    another policy is left as it is, with a warning: its old records would expire."""
    compacted = {settings.topic(t) for t in topics.COMPACTED}
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
                            topic_configs=dict(COMPACT) if n in compacted else None,
                        )
                        for n in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another replica was quicker
            log.info("created topics %s", ", ".join(missing))
        present = sorted(n for n in names if n in compacted and n in existing)
        if present:
            await _warn_unless_compacted(admin, present)
        return missing
    finally:
        await admin.close()


async def topic_policies(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, str]:
    """`cleanup.policy` of each named topic (as the broker reports it)."""
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None}) for n in names]
    )
    policies: dict[str, str] = {}
    for response in responses:
        for _code, _message, _type, name, entries in response.resources:
            for entry in entries:
                if entry[0] == "cleanup.policy":
                    policies[name] = entry[1]
    return policies


async def _warn_unless_compacted(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    try:
        policies = await topic_policies(admin, names)
    except KafkaError as error:  # the broker may refuse DescribeConfigs (ACLs): not fatal
        log.info("could not read the cleanup.policy of %s: %s", ", ".join(names), error)
        return
    for name in names:
        policy = policies.get(name)
        if policy is not None and "compact" not in policy:
            log.warning(
                "topic %s has cleanup.policy=%s, not compact: records older than its retention "
                "are deleted, and a subscriber reading it from the beginning misses the "
                "campaigns that did not change since (set it with kafka-configs.sh "
                "--alter --add-config cleanup.policy=compact)",
                name,
                policy,
            )


def describe_error(error: BaseException) -> str:
    """One line naming what went wrong, for operators (authentication, certificate, refused)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {error.verify_message or error.reason}"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    if isinstance(
        error, SaslAuthenticationFailed | AuthenticationFailedError | UnsupportedSaslMechanismError
    ):
        return f"SASL authentication failed: {error}"
    if isinstance(error, KafkaUnreachable):
        return str(error)
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def probe(settings: Settings, timeout_s: float = 10.0) -> None:
    """Open one authenticated connection to a bootstrap server (TLS handshake and SASL
    included), so that a wrong password or an untrusted certificate is named as such
    instead of aiokafka's generic "Unable to bootstrap". Raises KafkaUnreachable."""
    kwargs = client_kwargs(settings)
    kwargs.pop("bootstrap_servers")
    problems: list[str] = []
    for host, port, _ in collect_hosts(settings.kafka_bootstrap_servers):
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(
                    host,
                    port,
                    client_id="campaign-worker-probe",
                    request_timeout_ms=int(timeout_s * 1000),
                    **kwargs,
                )
                try:
                    await conn.send(MetadataRequest([]))
                finally:
                    conn.close()
        except KafkaConnectionError as error:
            # With TLS 1.3 the client's handshake completes before the broker checks the
            # client certificate; a refused one shows as the connection closing at the
            # first request.
            if settings.kafka_security_protocol == "SSL" and "closed" in str(error):
                problems.append(
                    f"{host}:{port}: the broker closed the connection after the TLS "
                    + (
                        "handshake: it does not accept this client certificate (KAFKA_SSL_CERTFILE)"
                        if settings.kafka_ssl_certfile
                        else "handshake: it wants a client certificate (KAFKA_SSL_CERTFILE)"
                    )
                )
            else:
                problems.append(f"{host}:{port}: {describe_error(error)}")
            continue
        except (OSError, KafkaError, TimeoutError) as error:
            problems.append(f"{host}:{port}: {describe_error(error)}")
            continue
        return
    raise KafkaUnreachable("; ".join(problems) or "no bootstrap server configured")


class KafkaUnreachable(ConnectionError):
    """No bootstrap server took an authenticated connection."""
