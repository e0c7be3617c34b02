"""The text of the documentation's pages (``docs/``), for tests that tie a sentence of the docs
to the code: the docs, not the README, hold the manual since issue 23."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def docs_page(name: str) -> str:
    """The Markdown of ``docs/<name>.md``, e.g. ``docs_page("reference/checks")``."""
    return (DOCS / f"{name}.md").read_text(encoding="utf-8")


def docs_section(name: str, heading: str) -> str:
    """The text of page ``name`` under the heading whose text is ``heading`` (any level), up to
    the next heading of the same level or above."""
    text = docs_page(name)
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"docs/{name}.md has no heading {heading!r}")
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, match.end())
    return text[match.end() : end.start() if end else None]


def docs_pages() -> dict[str, str]:
    """Every page of the docs, by its path under ``docs/`` without ``.md``."""
    return {
        path.relative_to(DOCS).with_suffix("").as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(DOCS.rglob("*.md"))
        if "_build" not in path.relative_to(DOCS).parts
    }
