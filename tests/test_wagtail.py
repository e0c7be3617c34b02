"""The Wagtail test site (tests/wagtail_site/), run with its own settings in a subprocess.

Skipped where Wagtail is not installed (``pip install -e '.[test]'`` installs it). Not marked
slow, so ``make test-compat`` (Django 5.2, Python 3.10) runs it too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds a test: the Wagtail test site in a pytest subprocess; `make test-fast` skips it.
pytestmark = pytest.mark.heavy

pytest.importorskip("wagtail", reason="Wagtail is not installed: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent


def test_the_wagtail_site_renders_the_block_and_delivers_the_report(pytestconfig):
    days = pytestconfig.getoption("--clock-shift-days")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.wagtail_site.settings"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/wagtail_site", "-q", "-p", "no:cacheprovider",
         "--ds", "tests.wagtail_site.settings", "-W", "error", f"--clock-shift-days={days}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
