"""`make example`'s console (issue 23, item 5): quiet while nothing happens, and a Ctrl-C that
stops the dev server and the worker cleanly reports it, exit status 0.

One real run of the launcher, ``example_project/run.py`` (as `make example` runs it): setup, then
the dev server and a Celery worker with beat sweeping every second, an invalid sign-up posted by
an API caller, a few idle seconds, then SIGINT to its process group, as a terminal's Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from backpain_report.delivery.publishing import SWEEP_TASK
from example_project import run as launcher
from example_project.quiet import TaskRunsHidden
from tests.example_env import EXAMPLE_SITE_ENV

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "example_project" / "run.py")]
IDLE_SECONDS = 5  # beat sweeps every second meanwhile


@dataclass
class Console:
    before_stop: str  # what the console showed from start-up until Ctrl-C
    after_stop: str
    returncode: int
    signup_status: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post_invalid_signup(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/signup/",
        data=b"email=nope",
        headers={"Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Console:
    ignored = {*EXAMPLE_SITE_ENV, "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env["EXAMPLE_VAR_DIR"] = str(tmp_path_factory.mktemp("example") / "var")
    env["BACKPAIN_SWEEP_EVERY"] = "1"
    setup = subprocess.run([*RUN, "setup"], env=env, capture_output=True, text=True, timeout=180)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    port = _free_port()
    server = subprocess.Popen(
        [*RUN, "serve", "--addr", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: the SIGINT below is a terminal's Ctrl-C
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("ready." in line for line in lines) or not any(
            "Press Ctrl-C" in line for line in lines
        ):
            assert time.monotonic() < deadline and server.poll() is None, "".join(lines)
            time.sleep(0.2)
        signup_status = _post_invalid_signup(port)
        time.sleep(IDLE_SECONDS)
        seen = len(lines)
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    reader.join(timeout=10)
    server.stdout.close()
    return Console("".join(lines[:seen]), "".join(lines[seen:]), server.returncode, signup_status)


@pytest.mark.slow
def test_ctrl_c_reports_the_clean_exit_of_server_and_worker_as_0(console):
    assert "[run] Stopped (web: 0, worker: 0)." in console.after_stop, console.after_stop
    assert console.returncode == 0, console.after_stop


@pytest.mark.slow
def test_the_idle_console_shows_no_sweep(console):
    assert "ready." in console.before_stop
    assert "  . backpain_report.sweep_deliveries\n" in console.before_stop  # the worker's tasks
    # Celery's three lines a run (beat's "Sending due task", the worker's "received" and
    # "succeeded"), every second here, every minute by default.
    lines = console.before_stop.splitlines()
    assert [line for line in lines if "sweep" in line and not line.startswith("  . ")] == []


@pytest.mark.slow
def test_a_readers_form_error_is_no_warning_on_the_console(console):
    assert console.signup_status == 400
    # django.request's "Bad Request: /signup/" (a WARNING; runserver's access line stays).
    assert "Bad Request" not in console.before_stop, console.before_stop


def test_the_first_stop_signal_asks_the_worker_for_a_warm_shutdown():
    """Celery's worker exits 1 after a warm shutdown on SIGINT and 0 on SIGTERM: the
    launcher's first Ctrl-C is a SIGTERM to the worker; the next, a cold shutdown."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        assert launcher.signal_forwarded("worker", sig, first=True) == signal.SIGTERM
        assert launcher.signal_forwarded("worker", sig, first=False) == signal.SIGQUIT
        assert launcher.signal_forwarded("web", sig, first=True) == sig
        assert launcher.signal_forwarded("web", sig, first=False) == sig


def test_the_launcher_exits_0_only_when_every_child_did():
    assert launcher.stopped_exit_code([0, 0]) == 0
    assert launcher.stopped_exit_code([0, 1]) == 1
    assert launcher.stopped_exit_code([-9, 0]) == 1


def test_the_filter_hides_celerys_info_lines_about_one_task_only():
    hidden = TaskRunsHidden(SWEEP_TASK)

    def shown(level: int, message: str, *args: object) -> bool:
        record = logging.LogRecord("celery.app.trace", level, __file__, 1, message, args, None)
        return hidden.filter(record)

    assert not shown(logging.INFO, "Scheduler: Sending due task %s (%s)", "sweep", SWEEP_TASK)
    assert not shown(logging.INFO, f"Task {SWEEP_TASK}[1f] succeeded in 0.01s: None")
    assert shown(logging.ERROR, f"Task {SWEEP_TASK}[1f] raised unexpected: OperationalError")
    assert shown(logging.INFO, "Task backpain_report.deliver_report[2a] succeeded in 0.3s")
    settings = (ROOT / "example_project" / "settings.py").read_text(encoding="utf-8")
    assert f'"task": "{SWEEP_TASK}"' in settings
