"""The README and docs/ link only to files of the repository, and every relative link (and
its #anchor) resolves; the generated parts of the docs match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from campaign_worker.entrypoints.cli import render_readme

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)


def links(page: Path) -> list[str]:
    text = CODE_BLOCK.sub("", page.read_text())
    return LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = CODE_BLOCK.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def test_there_are_docs_and_the_readme_links_them() -> None:
    names = {p.name for p in PAGES}
    assert {"rules.md", "contract.md", "operations.md", "troubleshooting.md"} <= names
    readme_links = links(ROOT / "README.md")
    for name in ("rules.md", "contract.md", "operations.md", "troubleshooting.md"):
        assert f"docs/{name}" in readme_links, f"the README does not link docs/{name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    dead = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if ROOT not in (resolved, *resolved.parents):
            dead.append(f"{target}: outside the repository")
            continue
        if not resolved.exists():
            dead.append(f"{target}: no such file")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            dead.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not dead, f"dead links in {page.relative_to(ROOT)}: {dead}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_outside_the_repository(page: Path) -> None:
    assert "../shared" not in page.read_text()


@pytest.mark.parametrize("name", ["README.md", "docs/rules.md", "docs/contract.md"])
def test_generated_parts_match_the_code(name: str) -> None:
    text = (ROOT / name).read_text()
    assert render_readme(text) == text, f"{name} is stale: run `make docs`"


def test_the_contract_page_has_one_example_per_message_type() -> None:
    from campaign_worker.entrypoints.messages import INBOUND_TYPES
    from campaign_worker.entrypoints.messages_out import OUTBOUND_TYPES

    text = (ROOT / "docs" / "contract.md").read_text()
    for type_ in [*INBOUND_TYPES, *OUTBOUND_TYPES]:
        assert f'"type": "{type_}"' in text, type_


def test_the_link_checker_finds_a_dead_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[ok](#here)\n\n## Here\n\n[gone](missing.md) ![img](x.png)\n```\n[no](a)\n```")
    assert links(page) == ["#here", "missing.md"]
    assert anchors(page) == {"here"}
    assert slug("The two commands") == "the-two-commands"
    assert slug("`campaign show`: what it waits for") == "campaign-show-what-it-waits-for"
