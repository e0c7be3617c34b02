"""The repository's layout is what the docs say: product commands in the package, dev tools
in ``benchmarks/devtools/``, and ``tests/realservices/`` split into tests and a harness."""

from __future__ import annotations

import re
from pathlib import Path

from .docs_text import docs_page

ROOT = Path(__file__).resolve().parent.parent
REALSERVICES = ROOT / "tests" / "realservices"


def modules(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}


def table_commands(text: str) -> set[str]:
    return set(re.findall(r"^\| `(backpain_\w+)", text, re.MULTILINE))


def test_the_docs_list_the_package_commands_and_the_dev_commands_apart() -> None:
    section = docs_page("reference/commands")
    product, dev = section.split("| dev command |")
    assert table_commands(product) == modules(ROOT / "backpain_report" / "management" / "commands")
    assert table_commands(dev) == modules(
        ROOT / "benchmarks" / "devtools" / "management" / "commands"
    )
    assert not (ROOT / "backpain_report" / "populate.py").exists()


def test_realservices_holds_only_tests_and_the_support_package() -> None:
    assert {p.name for p in REALSERVICES.iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        "support"
    }
    assert all(name.startswith("test_") for name in modules(REALSERVICES) - {"conftest"})
    assert not any(name.startswith("test_") for name in modules(REALSERVICES / "support"))


def test_the_docs_name_every_harness_module() -> None:
    tests_page = docs_page("development/tests")
    paragraph = tests_page[tests_page.index("`tests/realservices/support/`") :].split("\n\n")[0]
    named = set(re.findall(r"`(\w+)`", paragraph))
    assert modules(REALSERVICES / "support") <= named


def test_the_site_and_its_services_start_in_one_place() -> None:
    """The tiers and ``benchmarks/`` start gunicorn, Celery, Redis and PostgreSQL clusters only
    through the harness's ``stack`` and ``services`` modules (benchmarks/README.md)."""
    starters = {REALSERVICES / "support" / "stack.py", REALSERVICES / "support" / "services.py"}
    command = re.compile(r'"-m", "(gunicorn|celery)"|"redis-server", "--port"|"initdb", "-D"')
    found = [
        str(path.relative_to(ROOT))
        for folder in (ROOT / "benchmarks", REALSERVICES)
        for path in sorted(folder.rglob("*.py"))
        if path not in starters and command.search(path.read_text())
    ]
    assert found == []
    assert "no service or site is started here any other way" in " ".join(
        (ROOT / "benchmarks" / "README.md").read_text().split()
    )
