"""The layers of DESIGN.md hold (issue 23): ``lint-imports`` keeps every contract in setup.cfg,
and a deliberate bad import breaks the one it should."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the contracts in ``cwd``'s setup.cfg, on the package found there."""
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", command],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_layer_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        (
            "report/pdf.py",
            "from ..services import subscribers  # noqa",
            "Rendering makes bytes and never decides who gets them BROKEN",
        ),
        ("config/validators.py", "from .. import models  # noqa", "Settings sit below"),
        ("services/content.py", "from .. import forms  # noqa", "Services never call their"),
        ("urls.py", "import example_project  # noqa", "never imports contrib, the example"),
        ("views.py", "import benchmarks.devtools  # noqa", "never imports contrib, the example"),
        (
            "migrations/0001_initial.py",
            "from backpain_report.services import subscribers  # noqa",
            "Migrations use the models",
        ),
    ],
)
def test_a_bad_import_breaks_its_contract(tmp_path, module, bad_import, contract):
    shutil.copy(ROOT / "setup.cfg", tmp_path)
    shutil.copytree(
        ROOT / "backpain_report",
        tmp_path / "backpain_report",
        ignore=shutil.ignore_patterns("static", "templates", "locale", "fonts", "__pycache__"),
    )
    target = tmp_path / "backpain_report" / module
    future = "from __future__ import annotations\n"
    text = target.read_text()
    if future in text:
        head, _, rest = text.partition(future)
        target.write_text(f"{head}{future}{bad_import}\n{rest}")
    else:
        target.write_text(f"{text}\n{bad_import}\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert contract in " ".join(result.stdout.split())
