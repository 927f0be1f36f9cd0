"""The README's state diagram is generated from the transition table and must not drift."""

from pathlib import Path

from campaign_worker.entrypoints.cli import render_readme

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_state_diagram_matches_the_transition_table() -> None:
    text = README.read_text()
    assert render_readme(text) == text, "README diagram is stale: run `make docs`"
