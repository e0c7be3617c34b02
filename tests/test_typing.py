"""``make lint`` type-checks the package with mypy (django-stubs, celery-types), and CI runs it.

The configuration lives in ``pyproject.toml``; the check itself is ``make lint`` (it is not
repeated here). These tests keep the wiring honest: the target runs mypy on the package, CI runs
the target before the suite, and the configuration catches a model-typed error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_make_lint_runs_ruff_and_mypy_on_the_package():
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "lint", f"PYTHON={sys.executable}", "VENV=.venv-x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.endswith("ruff check .") for line in lines)
    assert any(line.endswith("ruff format --check .") for line in lines)
    assert ".venv-x/bin/python -m mypy backpain_report" in lines
    assert lines[-1] == ".venv-x/bin/lint-imports"  # the layers (issue 23)


def test_ci_lints_before_the_suite():
    lines = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert lines.index("make lint") < lines.index("make test")


@pytest.mark.slow
def test_the_configuration_types_models_and_catches_an_error(tmp_path):
    """The django-stubs plugin is on (a field has its Python type, a reverse relation exists:
    without the plugin both are errors) and a type error fails the check."""
    pytest.importorskip("mypy")
    pytest.importorskip("mypy_django_plugin")  # django-stubs: Python 3.11+
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from backpain_report.models import Subscriber\n"
        "reveal_type(Subscriber().email)\n"
        "reveal_type(Subscriber().deliveries)\n"
        "Subscriber().email + 1\n"
        "def untyped():\n"  # no annotations: mypy skips its body unless check_untyped_defs
        "    return Subscriber().name + 1\n"
    )
    result = subprocess.run(  # its own process: the plugin sets Django up with tests.settings
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Revealed type is "str"' in result.stdout
    assert "RelatedManager[backpain_report.models.Delivery]" in result.stdout
    assert result.stdout.count('Unsupported operand types for + ("str" and "int")') == 2
