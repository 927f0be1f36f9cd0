"""Secrets in settings (SecretStr, `*_FILE`), DATABASE_URL's TLS parameters, and the log
redaction filter; no server needed."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from campaign_worker.config import Settings
from campaign_worker.logs import JsonFormatter, RedactingFilter, TextFormatter, redact


def test_passwords_come_from_files_and_never_show_in_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (
        ("KAFKA_SASL_PASSWORD", "kafka-s3cret"),
        ("SMTP_PASSWORD", "smtp-s3cret"),
        ("DATABASE_URL", "postgresql://app:db-s3cret@db:5432/cw"),
    ):
        path = tmp_path / name
        path.write_text(value + "\n")
        monkeypatch.setenv(f"{name}_FILE", str(path))
    settings = Settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "kafka-s3cret"
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "smtp-s3cret"
    assert settings.database_url == "postgresql://app:db-s3cret@db:5432/cw"
    shown = repr(settings) + str(settings)
    assert "s3cret" not in shown
    assert set(settings.secret_values()) >= {"kafka-s3cret", "smtp-s3cret", "db-s3cret"}


def test_a_setting_and_its_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p").write_text("x")
    monkeypatch.setenv("SMTP_PASSWORD", "y")
    monkeypatch.setenv("SMTP_PASSWORD_FILE", str(tmp_path / "p"))
    with pytest.raises(ValueError, match="either SMTP_PASSWORD or SMTP_PASSWORD_FILE"):
        Settings()


def test_an_unreadable_secret_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/secret")
    with pytest.raises(ValueError, match="KAFKA_SASL_PASSWORD_FILE=/nonexistent/secret"):
        Settings()


def test_a_bad_database_url_error_does_not_echo_the_password() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(database_url="mysql://app:db-s3cret@db/cw")
    assert "must be postgresql://" in str(error.value)
    assert "db-s3cret" not in str(error.value)


def test_database_password_and_libpq_tls_parameters(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://app@db:5432/cw?sslmode=verify-full&sslrootcert=/ca.pem",
        database_password="p@ss/word",
    )
    assert (
        settings.sqlalchemy_url
        == "postgresql+asyncpg://app:p%40ss%2Fword@db:5432/cw?ssl=verify-full"
    )
    assert settings.postgres_tls == {"sslmode": "verify-full", "sslrootcert": "/ca.pem"}
    assert "p@ss/word" in settings.secret_values()


def test_verify_full_builds_a_checking_context(tmp_path: Path) -> None:
    from tests.support.servers import TestPki

    pki = TestPki(tmp_path)
    full = Settings(database_url=f"postgresql://a@h/d?sslmode=verify-full&sslrootcert={pki.ca}")
    context = full.postgres_connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    ca = Settings(database_url=f"postgresql://a@h/d?sslmode=verify-ca&sslrootcert={pki.ca}")
    assert not ca.postgres_connect_args["ssl"].check_hostname
    assert Settings(database_url="postgresql://a@h/d?sslmode=require").postgres_connect_args == {
        "ssl": "require"
    }
    assert Settings(database_url="postgresql://a@h/d").postgres_connect_args == {}
    with pytest.raises(ValidationError, match="sslmode must be one of"):
        Settings(database_url="postgresql://a@h/d?sslmode=sometimes")


def test_redact_masks_secrets_and_addresses() -> None:
    assert redact("login as bob with hunter2", ["hunter2"]) == "login as bob with ***"
    assert redact("sent to ada.lovelace@example.com") == "sent to a***@example.com"


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_the_filter_scrubs_messages_arguments_and_tracebacks(
    formatter: logging.Formatter,
) -> None:
    RedactingFilter.add_secrets(["tr0ub4dor"])
    try:
        raise RuntimeError("connect with password tr0ub4dor failed")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "user %s pass %s", ("ada@example.com", "tr0ub4dor"),
        exc_info,
    )  # fmt: skip
    assert RedactingFilter().filter(record)
    line = formatter.format(record)
    assert "tr0ub4dor" not in line
    assert "ada@example.com" not in line and "a***@example.com" in line
