"""Every mistake a person makes with the CLI ends in one clear line and a non-zero exit.

No server is needed: the unreachable addresses are closed local ports, and every other
mistake is refused before anything is contacted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaign_worker.entrypoints.cli import EXAMPLES, main, validation_problem

CAMPAIGN = "6b1a0f8e-3c2d-4e5f-8a9b-0c1d2e3f4a5b"
CLOSED = "127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture(autouse=True)
def _no_dev_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No dev settings file, no address from the developer's environment."""
    monkeypatch.setenv("CAMPAIGN_WORKER_DEV_DIR", str(tmp_path / "dev"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", CLOSED)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:secret@{CLOSED}/db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("campaign-worker: error: ")
    return code, lines[0].removeprefix("campaign-worker: error: ")


def test_unknown_topic_lists_the_contract_topics(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(capsys, "publish", "campaign.command", "{}")
    assert code == 2
    assert line.startswith("unknown topic 'campaign.command'; the contract's topics: ")
    assert "campaign.commands" in line and "campaign.catalog" in line and "campaign.dlq" in line


def test_a_file_that_does_not_exist_is_not_published_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, line = run(capsys, "publish", "campaign.commands", "create.json")
    assert code == 2
    assert line == "no such file: create.json (give inline JSON, a file, or -)"


def test_a_file_is_read_and_validated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "submit.json"
    path.write_text(json.dumps({**EXAMPLES["submit"], "subject": "not-a-uuid"}))
    code, line = run(capsys, "publish", "campaign.commands", str(path))
    assert code == 2
    assert "subject must be a campaign UUID, got 'not-a-uuid'" in line
    assert line.endswith("(--no-validate sends it anyway)")


def test_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(capsys, "publish", "campaign.commands", "{type: submit}")
    assert code == 2
    assert line.startswith("the message is not JSON: ")


@pytest.mark.parametrize(
    ("topic", "change", "expected"),
    [
        (
            "campaign.commands",
            {"data": {"title": "x"}, "type": "campaign.create"},
            "invalid data for campaign.create: advertiser_id: Field required",
        ),
        ("campaign.commands", {"type": "campaign.sumbit"}, "unknown type 'campaign.sumbit'"),
        (
            "campaign.reviews",
            {},
            "type 'campaign.submit' belongs on campaign.commands, not campaign.reviews",
        ),
        ("campaign.commands", {"actorrole": None}, "actorrole is required"),
        ("campaign.commands", {"source": ""}, "not a valid CloudEvent: source"),
    ],
)
def test_a_payload_the_worker_would_refuse_is_not_sent(
    capsys: pytest.CaptureFixture[str], topic: str, change: dict[str, object], expected: str
) -> None:
    message = {k: v for k, v in {**EXAMPLES["submit"], **change}.items() if v is not None}
    code, line = run(capsys, "publish", topic, json.dumps(message))
    assert code == 2
    assert line.startswith("the worker would dead-letter this message: ")
    assert expected in line


def test_no_validate_sends_it_anyway_so_the_broker_is_what_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = {**EXAMPLES["submit"], "subject": "not-a-uuid"}
    code, line = run(capsys, "publish", "campaign.commands", json.dumps(message), "--no-validate")
    assert code == 3
    assert line.startswith(f"cannot reach Kafka at {CLOSED} (KAFKA_BOOTSTRAP_SERVERS): ")


def test_every_example_passes_the_worker_models() -> None:
    from campaign_worker.entrypoints.cli import EXAMPLE_TOPICS

    for name, event in EXAMPLES.items():
        assert validation_problem(EXAMPLE_TOPICS[name], {**event, "id": "x-1"}) is None, name


@pytest.mark.parametrize(
    "argv",
    [
        ("campaign", "show", CAMPAIGN),
        ("campaign", "statement", CAMPAIGN),
        ("dlq", "list"),
    ],
)
def test_unreachable_database_names_the_setting_and_the_address(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, line = run(capsys, *argv)
    assert code == 3
    assert line == f"cannot reach Postgres at {CLOSED}/db (DATABASE_URL): connection refused"
    assert "secret" not in line


def test_a_database_url_that_is_not_postgres(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    code, line = run(capsys, "campaign", "show", CAMPAIGN)
    assert code == 2
    assert line.startswith("invalid setting DATABASE_URL: ")
    assert "got scheme 'mysql'" in line


@pytest.mark.parametrize(
    "argv",
    [
        ("publish", "campaign.commands", "--example", "submit"),
        ("lag", "--samples", "1"),
        ("events", "tail", "--idle-exit", "1"),
    ],
)
def test_unreachable_kafka_names_the_setting_and_the_address(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, line = run(capsys, *argv)
    assert code == 3
    assert line == (
        f"cannot reach Kafka at {CLOSED} (KAFKA_BOOTSTRAP_SERVERS): "
        "no broker answered (refused, unknown host or timed out)"
    )


def test_missing_settings_point_at_the_dev_mode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:p@{CLOSED}/db")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    code, line = run(capsys, "publish", "campaign.commands", "--example", "submit")
    assert code == 3
    assert "(KAFKA_BOOTSTRAP_SERVERS is unset, this is its default; is `make run` running?)" in line


def test_the_dev_settings_file_is_read_when_the_variable_is_unset(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "dev.env").write_text("# test\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:2\n")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    code, line = run(capsys, "publish", "campaign.commands", "--example", "submit")
    assert code == 3
    assert line.startswith(
        f"cannot reach Kafka at 127.0.0.1:2 (KAFKA_BOOTSTRAP_SERVERS from {dev / 'dev.env'}): "
    )


@pytest.mark.parametrize("argv", [("campaign", "show", "42"), ("campaign", "statement", "x")])
def test_campaign_show_of_something_that_is_not_a_uuid(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, line = run(capsys, *argv)
    assert code == 2
    assert line == f"{argv[2]!r} is not a campaign id (a UUID, like {CAMPAIGN})"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("campaign", "show"), "the following arguments are required: ID"),
        (("publish", "campaign.commands", "--example", "nope"), "argument --example: invalid"),
        (("frobnicate",), "argument COMMAND: invalid choice: 'frobnicate'"),
        (("publish", "campaign.commands"), "give the message as inline JSON"),
    ],
)
def test_usage_mistakes_are_one_line_too(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    code, line = run(capsys, *argv)
    assert code == 2
    assert line.startswith(expected)


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from campaign_worker.entrypoints.cli_ops import CliError

    with pytest.raises(CliError, match="is not a campaign id"):
        main(["campaign", "show", "42", "--debug"])
    with pytest.raises(CliError, match="unknown topic"):
        main(["--debug", "publish", "campaign.x", "{}"])


def test_schemas_check_works_from_any_directory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["schemas", "--check"]) == 0
    assert main(["schemas"]) == 0
    out = capsys.readouterr().out
    assert out.count("schemas matches the code") == 2


def test_version_and_help_for_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from campaign_worker.entrypoints.cli import build_parser

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("campaign-worker 0.")

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{path} {choice.dest}: no description"
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            else:
                assert action.help, f"{path} {action.option_strings or action.dest}: no help"

    walk(build_parser(), "campaign-worker")
    with pytest.raises(SystemExit):
        main(["publish", "--help"])
    text = capsys.readouterr().out
    assert all(t in text for t in ("campaign.commands", "campaign.catalog", "campaign.dlq"))
    assert all(name in text for name in EXAMPLES)
