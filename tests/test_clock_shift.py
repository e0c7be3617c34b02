"""The guard against dates written into tests (issue 20): ``make test-future`` runs the unit
tier with the clock moved ahead (``--clock-shift-days``, tests/clock_shift.py), and CI runs it."""

from __future__ import annotations

import datetime
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import time_machine

ROOT = Path(__file__).resolve().parent.parent

# A test of the kind issue 20 found: an event "now", written in as today's date, must fall in a
# one-day window. It passes today and fails tomorrow; the shifted clock fails it today.
WRITTEN_IN = """
import datetime

import time_machine

EVENT = datetime.datetime.fromisoformat("{today}T00:00:00+00:00")


def test_a_date_written_in():
    now = datetime.datetime.now(datetime.timezone.utc)
    assert now - EVENT < datetime.timedelta(days=2)


def test_a_pinned_clock_wins_over_the_shift():
    with time_machine.travel(EVENT, tick=False):
        assert datetime.datetime.now(datetime.timezone.utc) == EVENT
"""


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-p", "tests.clock_shift", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-c", "/dev/null", "--rootdir", str(folder), *args, str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.heavy
def test_the_shifted_clock_fails_a_date_written_in_and_spares_a_pinned_one(tmp_path):
    # The real date: under make test-future this process's own clock is shifted already.
    hatch = time_machine.escape_hatch
    clock = hatch.datetime.datetime if hatch.is_travelling() else datetime.datetime
    today = clock.now(datetime.timezone.utc).date().isoformat()
    (tmp_path / "test_written_in.py").write_text(textwrap.dedent(WRITTEN_IN.format(today=today)))
    plain = _pytest(tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "2 passed" in plain.stdout
    shifted = _pytest(tmp_path, "--clock-shift-days=1111")
    assert shifted.returncode == 1, shifted.stdout + shifted.stderr
    assert "clock shifted 1111 days ahead" in shifted.stdout
    assert "FAILED" in shifted.stdout and "test_a_date_written_in" in shifted.stdout
    assert "1 failed, 1 passed" in shifted.stdout


def test_ci_runs_the_unit_tier_with_the_clock_moved_ahead():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\ntest-future:", 1)[1].split("\n\n", 1)[0]
    assert '-m "$(UNIT_TIER) and not machine"' in target
    assert "--clock-shift-days=$(CLOCK_SHIFT_DAYS)" in target
    assert "CLOCK_SHIFT_DAYS ?= 1111" in makefile
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(
        r'^(nice -n \d+ )?make test-compat PYTEST_ARGS="--clock-shift-days=1111"', ci, re.M
    )
