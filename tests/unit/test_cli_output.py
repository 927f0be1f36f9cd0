"""What the CLI prints for a person: one readable line per event, money as `1100.00 EUR`,
never a Python repr (`{'amount': ...}`, `None`)."""

from __future__ import annotations

from campaign_worker.entrypoints.cli import _history_what, _text
from campaign_worker.entrypoints.cli_ops import event_line


def test_an_event_is_one_line_with_the_fields_that_matter() -> None:
    line = event_line(
        "campaign.events",
        {
            "type": "campaign.status_changed",
            "subject": "6b1a0f8e-3c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "time": "2026-12-01T10:00:00Z",
            "data": {
                "campaign_id": "6b1a0f8e-3c2d-4e5f-8a9b-0c1d2e3f4a5b",
                "from": "BOOKED",
                "to": "CANCELLED",
                "reason": "cancel",
                "penalty": {"amount": "50.00", "currency": "EUR"},
                "actor": {"role": "publisher", "id": None},
                "trigger": None,
            },
        },
    )
    assert "\n" not in line
    assert line.startswith("2026-12-01T10:00:00Z")
    assert "campaign.status_changed" in line and "BOOKED -> CANCELLED" in line
    assert "penalty=50.00 EUR" in line and "reason=cancel" in line
    assert "None" not in line and "{" not in line and "actor" not in line


def test_a_notification_keeps_its_recipient_and_lists_are_joined() -> None:
    line = event_line(
        "campaign.notifications",
        {
            "type": "notification.requested",
            "subject": "c-1",
            "data": {"to": "ada@example.com", "kind": "campaign_started", "holds": ["a", "b"]},
        },
    )
    assert "to=ada@example.com" in line and "->" not in line and "holds=a,b" in line
    assert event_line("campaign.dlq", {"type": None, "data": None}).split()[1] == "(campaign.dlq)"


def test_values_for_people() -> None:
    assert _text({"amount": "1100.00", "currency": "EUR"}) == "1100.00 EUR"
    assert _text(None) == "-" and _text([]) == "none" and _text(True) == "yes"
    assert _text(["a", "b"]) == "a, b"
    held = {"kind": "holds_changed", "details": {"added": ["suspended"], "removed": []}}
    assert _history_what(held) == "holds +suspended -none"
