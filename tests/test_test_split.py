"""`make test`'s runner (tools/test_split.sh): the unit tiers beside the real-service tiers, and
a failure, or a tier that collected nothing, of either is a failure of the whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPLIT = ROOT / "tools" / "test_split.sh"


@pytest.fixture
def fake_python(tmp_path):
    """A stand-in for the venv's python: ``-m pytest ...`` exits with the status the test
    chose for that selection (``UNIT``, ``SERVICES`` or ``PLAIN``) and logs its arguments."""
    script = tmp_path / "python"
    script.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$CALLS"\n'
        'case "$*" in\n'
        '  *"not services"*) echo "unit report"; "$REAL_PYTHON" -c "$SIGINT"; exit "$UNIT" ;;\n'
        '  *"-m services"*) exit "$SERVICES" ;;\n'
        '  *) exit "$PLAIN" ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return script


def _run(fake_python, *args: str, unit=0, services=0, plain=0, split="1"):
    calls = fake_python.parent / "calls"
    env = {
        **os.environ,
        "CALLS": str(calls),
        "UNIT": str(unit),
        "SERVICES": str(services),
        "PLAIN": str(plain),
        "TEST_SPLIT": split,
        "REAL_PYTHON": sys.executable,
        "SIGINT": "import signal; print('SIGINT:', signal.getsignal(signal.SIGINT).__name__)",
    }
    done = subprocess.run(
        [str(SPLIT), str(fake_python), *args], env=env, capture_output=True, text=True, timeout=30
    )
    return done, calls.read_text().splitlines()


@pytest.mark.parametrize(
    ("unit", "services", "ok"),
    [(0, 0, True), (1, 0, False), (0, 1, False), (5, 0, False), (0, 5, False)],
)
def test_both_tiers_run_and_either_failing_fails(fake_python, unit, services, ok):
    done, calls = _run(fake_python, unit=unit, services=services)
    assert sorted(calls) == ["-m pytest -m not services", "-m pytest -m services"]
    assert (done.returncode == 0) is ok, done.stdout + done.stderr
    assert "unit report" in done.stdout  # the unit tiers' report is shown, pass or fail
    # Ctrl-C reaches it as from a terminal (a background job of a script starts with SIGINT
    # ignored; tests/test_sweep.py's tests of a second Ctrl-C failed so).
    assert "SIGINT: default_int_handler" in done.stdout
    if 5 in (unit, services):
        assert "pytest collected no tests" in done.stderr


def test_chosen_tests_or_test_split_0_run_one_plain_pytest(fake_python):
    done, calls = _run(fake_python, "tests/test_forms.py", "-k", "email")
    assert calls == ["-m pytest tests/test_forms.py -k email"] and done.returncode == 0
    (fake_python.parent / "calls").unlink()
    done, calls = _run(fake_python, split="0", plain=5)
    assert calls == ["-m pytest"] and done.returncode == 1


def test_ci_starts_test_compat_with_ctrl_c_as_from_a_terminal():
    """.ci/run's background job gets the same job control (see above)."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    launch = ci.split("\nset -m\n", 1)[1].split("\nset +m\n", 1)[0]
    assert "make test-compat" in launch and launch.rstrip().endswith("compat_pid=$!")
