"""`make example` installs what the example site uses and not the test toolchain (issue 23,
item 5); `make test` installs both.

The Makefile is read with ``make -n`` (nothing is installed); what the example uses is read from
its source: the third-party modules example_project/ and the dev-only ``benchmarks.devtools``
app (on with ``DEBUG``) import, and the apps and middleware its settings name.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SOURCES = [ROOT / "example_project", ROOT / "benchmarks" / "devtools"]
OUR_PACKAGES = {"backpain_report", "example_project", "benchmarks", "tests"}
# The test toolchain: none of it belongs in the example's venv.
TEST_TOOLS = {"playwright", "mypy", "nox", "wagtail", "pytest", "ruff", "hypothesis", "boto3"}

DOTTED = re.compile(r"[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*").fullmatch

needs_make = pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(section: str, key: str) -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    names = set()
    for line in parser.get(section, key).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_normalise(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group(0)))
    return names


def _pip_installs(*args: str) -> list[str]:
    make = ["make", "-n", "--no-print-directory", f"PYTHON={sys.executable}"]
    result = subprocess.run(
        [*make, *args, "VENV=.venv-dry-run-install"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "pip install" in line]


@needs_make
def test_make_example_installs_the_package_and_the_example_extra_only():
    assert [line.split(" -m ", 1)[1].strip() for line in _pip_installs("example")] == [
        "pip install -e '.[example]'"
    ]


@needs_make
def test_make_test_installs_the_test_toolchain_too():
    installs = _pip_installs("test")
    assert len(installs) == 1 and "pip install -e '.[test,example]'" in installs[0]


def test_the_example_extra_holds_no_test_tool():
    example = _requirement_names("options.extras_require", "example")
    assert not example & TEST_TOOLS, example & TEST_TOOLS
    assert _requirement_names("options.extras_require", "test") >= TEST_TOOLS


def _modules_named(path: Path) -> set[str]:
    """Top-level module names ``path`` imports, or names in a string such as an app's or a
    middleware's dotted path (a settings module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED(node.value):
            names.add(node.value.split(".")[0])
    return names


def _distributions_of(module: str, distributions: dict[str, list[str]]) -> list[str]:
    """The distributions providing ``module``; for one whose metadata names no top-level
    module (Python 3.10's importlib finds none for some older wheels, e.g. dj-database-url in
    make test-compat), the distribution named like the module."""
    found = distributions.get(module)
    if found:
        return found
    for name in (module, module.replace("_", "-")):
        try:
            return [importlib.metadata.distribution(name).metadata["Name"]]
        except importlib.metadata.PackageNotFoundError:
            continue
    return []


def test_everything_the_example_imports_is_in_what_make_example_installs():
    distributions = importlib.metadata.packages_distributions()
    used: dict[str, set[str]] = {}
    for source in EXAMPLE_SOURCES:
        for path in source.rglob("*.py"):
            for module in _modules_named(path) - OUR_PACKAGES - set(sys.stdlib_module_names):
                for dist in _distributions_of(module, distributions):
                    used.setdefault(_normalise(dist), set()).add(str(path.relative_to(ROOT)))
    installed = _requirement_names("options", "install_requires") | _requirement_names(
        "options.extras_require", "example"
    )
    # Sanity: the scan sees the packages the settings name only as strings.
    assert {"whitenoise", "crispy-bootstrap5", "dj-database-url", "celery"} <= set(used)
    missing = {dist: sorted(paths) for dist, paths in used.items() if dist not in installed}
    assert not missing, missing
