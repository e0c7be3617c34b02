"""The compatibility matrix (noxfile.py) against what the docs, setup.cfg, the Makefile and
.ci/run say about it; and the `heavy` marker that `make test-fast` skips."""

from __future__ import annotations

import ast
import configparser
import re
from itertools import groupby
from pathlib import Path

from .docs_text import docs_page

ROOT = Path(__file__).resolve().parent.parent


def _matrix() -> list[tuple[str, str, bool, list[str]]]:
    """noxfile.MATRIX, read without importing the noxfile (it puts pyenv on PATH)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "MATRIX":
            return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py has no MATRIX")


def _noxfile_constant(name: str) -> str:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py has no {name}")


def matrix_line(matrix: list[tuple[str, str, bool, list[str]]]) -> str:
    """The docs' sentence for ``matrix`` (docs/reference/compatibility.md)."""
    pairs = []
    for django, rows in groupby(matrix, key=lambda row: row[0]):
        pythons = [
            f"{python}{' (every lower bound)' if lowest else ''}" for _, python, lowest, _ in rows
        ]
        pairs.append(f"Django {django} on Python {' and '.join(pythons)}")
    oldest, newest = matrix[0], matrix[-1]
    return (
        "Tested: the unit tier, every warning an error, by `make test-matrix`: "
        + ", ".join(pairs)
        + "; `.ci/run` runs the corners, "
        + f"Django {oldest[0]} on Python {oldest[1]} at the lower bounds (`make test-compat`) and "
        + f"Django {newest[0]} on Python {newest[1]} (`make test`, every tier)."
    )


def test_the_docs_state_the_matrix_that_nox_runs():
    page = " ".join(docs_page("reference/compatibility").split())
    assert matrix_line(_matrix()) in page


def test_the_oldest_pair_is_the_lower_bounds_and_make_test_compat_runs_it():
    matrix = _matrix()
    oldest = matrix[0]
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    assert parser.get("options", "python_requires") == f">={oldest[1]}"
    assert f"Django>={oldest[0]}," in parser.get("options", "install_requires")
    # Only the oldest pair pins the lower bounds, and it alone is tagged `compat`.
    assert [row[2] for row in matrix] == [True] + [False] * (len(matrix) - 1)
    assert [row for row in matrix if "compat" in row[3]] == [oldest]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ntest-compat:", 1)[1].split("\n\n", 1)[0]
    assert "$(NOX) $(NOX_ARGS) -t compat" in recipe
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M)
    # Alongside make test, reniced, its status waited for and checked (tests/test_test_split.py).
    assert re.search(
        r'^(nice -n \d+ )?make test-compat( PYTEST_ARGS="[^"]*")?( <\S+)?( >\S+ 2>&1 &)?$',
        ci,
        re.M,
    )


def test_every_pair_is_a_declared_classifier():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    classifiers = parser.get("metadata", "classifiers")
    for django, python, _lowest, _tags in _matrix():
        assert f"Framework :: Django :: {django}" in classifiers
        assert f"Programming Language :: Python :: {python}" in classifiers
        if django >= "6":
            assert python >= "3.12", "Django 6 needs Python 3.12+"


def test_nox_make_test_fast_and_the_markers_agree_on_the_unit_tier():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    unit_tier = re.search(r"^UNIT_TIER := (.+)$", makefile, re.M).group(1)
    assert _noxfile_constant("UNIT_TIER") == unit_tier
    fast = makefile.split("\ntest-fast:", 1)[1].split("\n\n", 1)[0]
    assert '-m "$(UNIT_TIER) and not heavy and not machine"' in fast
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    markers = parser.get("tool:pytest", "markers")
    assert re.search(r"^heavy: .*`make test-fast` skips it$", markers, re.M)
