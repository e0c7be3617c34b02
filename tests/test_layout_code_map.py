"""The code map: each module says in its first line what lives there (docs, "Where the code
lives": docs/reference/code-map.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .docs_text import docs_page

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "backpain_report"


def _modules() -> list[Path]:
    skip = {"migrations", "management", "templatetags", "contrib"}
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not skip.intersection(path.relative_to(PACKAGE).parts)
    ]


def test_every_module_says_in_its_first_line_what_lives_there():
    missing = [
        str(path.relative_to(ROOT))
        for path in _modules()
        if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    ]
    assert missing == []


def test_the_paths_the_docs_name_in_their_code_map_exist():
    section = docs_page("reference/code-map").split("## Module paths named elsewhere")[0]
    paths = set(re.findall(r"`([a-z_/]+(?:\.py|/))`", section))
    assert {"delivery/retry.py", "selectors.py", "services/subscribers.py"} <= paths
    assert {"report/pdfstore.py", "config/", "rights/"} <= paths
    paths.discard("tests/test_layout_code_map.py")  # this test, named in the prose
    assert [path for path in sorted(paths) if not (PACKAGE / path).exists()] == []


def test_the_tree_shows_the_parts():
    """Issue 23: the engine, the page, the report and the rights are packages of their own."""
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert {"config", "delivery", "page", "report", "rights", "services"} <= packages
    top = {path.name for path in PACKAGE.glob("*.py")}
    assert len(top) <= 16, sorted(top)


def test_the_writes_live_in_the_services_package_by_entity():
    services = {path.name for path in (PACKAGE / "services").glob("*.py")}
    assert {"subscribers.py", "deliveries.py", "content.py"} <= services
    for gone in ("operations.py", "subscriptions.py", "privacy.py", "services.py"):
        assert not (PACKAGE / gone).exists(), gone
