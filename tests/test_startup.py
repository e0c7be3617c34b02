"""Start-up cost: ``manage.py check`` (and importing the app's modules) loads no PDF library.

WeasyPrint takes about a second to import and needs Pango; only code that renders a PDF imports
it (the admin's preview, sending, the covers, the PDF cache), inside the function that renders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.example_env import EXAMPLE_SITE_ENV

ROOT = Path(__file__).resolve().parent.parent
PDF_LIBRARIES = ("weasyprint", "pydyf", "pypdfium2", "fontTools")

# Runs `manage.py check` in this process, imports the modules a web process or a worker loads at
# start-up, then prints which PDF libraries ended up in sys.modules.
RUNNER = """
import importlib, json, runpy, sys
sys.argv = ["manage.py", "check"]
try:
    runpy.run_path("example_project/manage.py", run_name="__main__")
except SystemExit as exit:
    assert not exit.code, exit.code
after_check = [m for m in LIBRARIES if m in sys.modules]
for module in MODULES:
    importlib.import_module(module)
after_imports = [m for m in LIBRARIES if m in sys.modules]
print(json.dumps({"after_check": after_check, "after_imports": after_imports}))
"""

STARTUP_MODULES = (
    "backpain_report.admin",
    "backpain_report.checks",
    "backpain_report.tasks",
    "backpain_report.urls",
    "backpain_report.views",
    "backpain_report.delivery.sending",
    "backpain_report.services.subscribers",
    "backpain_report.services.deliveries",
    "backpain_report.services.content",
    "backpain_report.services.privacy",
    "backpain_report.delivery.sweep",
    "backpain_report.report.covers",
    "example_project.urls",
    "example_project.celery",
)


def _run(code: str, tmp_path: Path) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in EXAMPLE_SITE_ENV}
    environ.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        EXAMPLE_VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_manage_py_check_imports_no_pdf_library(tmp_path):
    code = f"LIBRARIES = {PDF_LIBRARIES!r}\nMODULES = {STARTUP_MODULES!r}\n{RUNNER}"
    loaded = _run(code, tmp_path)
    assert loaded == {"after_check": [], "after_imports": []}


def test_the_runner_sees_a_pdf_library_when_one_is_imported(tmp_path):
    """The check above can fail: importing the renderer puts WeasyPrint in sys.modules."""
    modules = (*STARTUP_MODULES, "backpain_report.report.pdf")
    code = f"LIBRARIES = {PDF_LIBRARIES!r}\nMODULES = {modules!r}\n{RUNNER}"
    loaded = _run(code, tmp_path)
    assert loaded["after_check"] == []
    assert "weasyprint" in loaded["after_imports"] and "pydyf" in loaded["after_imports"]
