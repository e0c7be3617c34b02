"""`make test`'s runner (tools/test_split.sh): the unit tiers beside the real-service tiers, and
a failure, or a tier that collected nothing, of either is a failure of the whole."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
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


# --- Signals: Ctrl-C or SIGTERM stops both runs, and what they started -------------------------

#: Runs the command with SIGINT at its default, as a terminal's shell starts it (a process that
#: starts with SIGINT ignored, as a background job's children do, passes that on).
WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

#: A server a test started: SIGINT at its default (as Python's subprocesses have it), then its
#: pid in the file argv[1] names, then a minute's sleep.
GRANDCHILD = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
    "os.replace(sys.argv[1] + '.tmp', sys.argv[1]); os.execv('/bin/sleep', ['sleep', '60'])"
)

#: Stands in for the venv's python under a signal: ``-m pytest ...`` starts a grandchild whose
#: pid goes to ``$STATE/<tier>``, and waits; a SIGINT ends it as pytest's KeyboardInterrupt
#: does, saying so (its teardown), a SIGTERM without a word.
LONG_PYTHON = """#!/bin/bash
case "$*" in *"not services"*) tier=unit ;; *) tier=services ;; esac
trap 'echo "$tier interrupted"; exit 2' INT
"$REAL_PYTHON" -c "$GRANDCHILD" "$STATE/$tier" &
wait
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie (a grandchild orphaned to a reaper that has not reaped it yet)."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _start_long_split(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """tools/test_split.sh on LONG_PYTHON, in a session of its own (a terminal's foreground
    group); returns once both runs have started their grandchild."""
    python = tmp_path / "python"
    python.write_text(LONG_PYTHON)
    python.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    split = subprocess.Popen(
        [sys.executable, "-c", WITH_DEFAULT_SIGINT, str(SPLIT), str(python)],
        env={
            **os.environ,
            "STATE": str(state),
            "REAL_PYTHON": sys.executable,
            "GRANDCHILD": GRANDCHILD,
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tiers = ("unit", "services")
    assert _wait_for(lambda: all((state / tier).exists() for tier in tiers))
    return split, {tier: int((state / tier).read_text()) for tier in tiers}


def _stopped(split: subprocess.Popen[str], grandchildren: dict[str, int]) -> tuple[int, str]:
    try:
        out, _ = split.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(split.pid, signal.SIGKILL)
        out, _ = split.communicate()
        pytest.fail(f"tools/test_split.sh went on after the signal:\n{out}")
    finally:
        for pid in grandchildren.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return split.returncode, out


@pytest.mark.heavy
def test_sigterm_stops_both_runs_at_once_and_what_they_started(tmp_path):
    """make passes its SIGTERM to the script: it used to wait for the service tiers to end
    (minutes), and gave the unit tiers a SIGTERM (no teardown)."""
    split, grandchildren = _start_long_split(tmp_path)
    split.send_signal(signal.SIGTERM)
    returncode, out = _stopped(split, grandchildren)
    assert returncode == 128 + signal.SIGTERM, out
    assert "unit interrupted" in out and "services interrupted" in out  # SIGINT first
    assert "the unit tiers (run alongside)" in out  # their report so far
    assert _wait_for(lambda: not any(map(_alive, grandchildren.values())), 5), grandchildren


@pytest.mark.heavy
def test_ctrl_c_stops_both_runs_and_what_they_started(tmp_path):
    """A terminal's Ctrl-C: the unit tiers got a SIGTERM (no teardown: their database and
    files left in var/, the servers their tests started in sessions of their own running)."""
    split, grandchildren = _start_long_split(tmp_path)
    os.killpg(split.pid, signal.SIGINT)
    returncode, out = _stopped(split, grandchildren)
    assert returncode == 128 + signal.SIGINT, out
    assert "unit interrupted" in out and "services interrupted" in out
    assert _wait_for(lambda: not any(map(_alive, grandchildren.values())), 5), grandchildren


@pytest.mark.heavy
def test_a_run_that_ignores_sigint_gets_sigterm_after_the_grace_period(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/bash\ntrap '' INT\nexec sleep 60\n")
    python.chmod(0o755)
    split = subprocess.Popen(
        [str(SPLIT), str(python)],
        env={**os.environ, "TEST_SPLIT_GRACE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    time.sleep(0.5)
    split.send_signal(signal.SIGTERM)
    returncode, out = _stopped(split, {})
    assert returncode == 128 + signal.SIGTERM, out


def test_a_run_ended_by_a_signal_fails_and_says_so(fake_python):
    """A pytest killed (the OOM killer's SIGKILL) is a failure, named as one."""
    fake_python.write_text('#!/bin/sh\ncase "$*" in *"not services"*) kill -9 $$ ;; esac\nexit 0\n')
    done = subprocess.run(
        [str(SPLIT), str(fake_python)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "pytest was ended by signal 9 (SIGKILL) (the unit tiers)" in done.stderr


# --- .ci/run: make test-compat beside make test -------------------------------------------------

#: ``make`` for .ci/run's tests section: ``make test`` exits $TEST_RC after $TEST_SLEEP seconds;
#: ``make test-compat`` starts a grandchild (its pid in $STATE/compat: a server a test started,
#: which ignores SIGINT), prints its report and exits $COMPAT_RC, after that grandchild when
#: $COMPAT_WAIT is set; a SIGINT (pytest's teardown) it notes in $STATE/compat-interrupted.
FAKE_MAKE = """#!/bin/bash
case "$1" in
lint) exit 0 ;;
test) sleep "${TEST_SLEEP:-0}"; echo "make test ran"; exit "${TEST_RC:-0}" ;;
test-compat)
    trap 'echo interrupted > "$STATE/compat-interrupted"; exit 2' INT
    sleep 60 &
    echo $! > "$STATE/compat.tmp" && mv "$STATE/compat.tmp" "$STATE/compat"
    echo "compat report: $*"
    if [ -n "${COMPAT_WAIT:-}" ]; then wait; else kill $!; fi
    exit "${COMPAT_RC:-0}" ;;
esac
exit 99
"""


@pytest.fixture
def ci_tests(tmp_path):
    """.ci/run's head (shell options, the wall-time trap) and its tests section, with a fake
    ``make`` first on PATH: ``ci_tests(**env)`` starts it (a Popen)."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    head = text.split("\n# --- OS packages", 1)[0]
    tests = text.split("\n# --- Tests", 1)[1]
    assert "set -euo pipefail" in head and "make test-compat" in tests
    script = tmp_path / "repo" / ".ci" / "run"
    script.parent.mkdir(parents=True)
    script.write_text(f"{head}\n# --- Tests{tests}")
    script.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()

    def start(**env: str) -> subprocess.Popen[str]:
        environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(state)}
        return subprocess.Popen(
            [str(script)],
            env={**environ, "TMPDIR": str(tmp_path), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    start.state = state
    return start


@pytest.mark.parametrize(
    ("test_rc", "compat_rc", "ok"), [("0", "0", True), ("2", "0", False), ("0", "3", False)]
)
def test_ci_fails_when_either_fails_and_always_shows_the_compat_report(
    ci_tests, test_rc, compat_rc, ok
):
    """Both passing used to fail CI: the EXIT trap's ``kill`` of the compat run, long reaped,
    failed, and under ``set -e`` that was the script's exit status."""
    ci = ci_tests(TEST_RC=test_rc, COMPAT_RC=compat_rc)
    out, _ = ci.communicate(timeout=30)
    assert (ci.returncode == 0) is ok, out
    assert "compat report: test-compat PYTEST_ARGS=--clock-shift-days=1111" in out
    assert f"make test: exit {test_rc}; make test-compat: exit {compat_rc}" in out
    assert "ci: wall time" in out


@pytest.mark.heavy
def test_ci_stopped_by_a_signal_stops_the_whole_compat_run(ci_tests):
    """SIGTERM (a CI timeout) or Ctrl-C of .ci/run: killing the compat run's make left nox's
    pytest running; a SIGTERM of its group gave pytest no teardown (its database and files
    left in var/). SIGINT first, then SIGTERM to what ignores it."""
    ci = ci_tests(TEST_SLEEP="3", COMPAT_WAIT="1")
    compat = ci_tests.state / "compat"
    assert _wait_for(compat.exists)
    grandchild = int(compat.read_text())
    try:
        ci.send_signal(signal.SIGTERM)
        out, _ = ci.communicate(timeout=20)
        assert _wait_for(lambda: not _alive(grandchild), 5), out
        assert (ci_tests.state / "compat-interrupted").exists(), out
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)
