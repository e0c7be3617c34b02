"""``make test-future`` (tests/clock_shift.py) must pass on a clean tree, and must
move the clock of every test it runs, the Wagtail suite's (run in a subprocess) included."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _shifted_pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--clock-shift-days=1111",
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.heavy
def test_make_test_future_passes_its_own_guard_test():
    """`make test-future` runs the heavy tests too; tests/test_clock_shift.py's heavy test reads
    "today" from the shifted clock, so its plain child passes and its shifted child (real clock
    + 1,111 days = the same "today") passes too: asserting returncode 1 fails, every time."""
    result = _shifted_pytest(
        "tests/test_clock_shift.py::"
        "test_the_shifted_clock_fails_a_date_written_in_and_spares_a_pinned_one"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_wagtail_suite_gets_the_shift(monkeypatch, pytestconfig, request):
    """Under --clock-shift-days the Wagtail suite (tests/wagtail_site, a pytest subprocess of
    tests/test_wagtail.py) must run with the same shift; it runs with the real clock."""
    days = pytestconfig.getoption("--clock-shift-days")
    if not days:
        pytest.skip("checks the shifted run (make test-future); see the test below")
    wagtail_test = pytest.importorskip("tests.test_wagtail")
    seen: dict = {}

    def fake_run(command, **kwargs):
        seen.update(command=list(command), env=dict(kwargs.get("env") or os.environ))
        return subprocess.CompletedProcess(command, 0, " 1 passed", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    test = wagtail_test.test_the_wagtail_site_renders_the_block_and_delivers_the_report
    fixtures = {"pytestconfig": pytestconfig, "request": request}
    test(
        **{name: fixtures[name] for name in inspect.signature(test).parameters if name in fixtures}
    )
    forwarded = f"--clock-shift-days={days}" in seen["command"] or any(
        "CLOCK_SHIFT" in name and value == str(days) for name, value in seen["env"].items()
    )
    assert forwarded, seen["command"]


@pytest.mark.heavy
def test_the_wagtail_suite_gets_the_shift_under_make_test_future():
    pytest.importorskip("wagtail")
    result = _shifted_pytest(f"{__file__}::test_the_wagtail_suite_gets_the_shift")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
