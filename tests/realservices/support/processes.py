"""Child processes with bounded startup waits and guaranteed teardown (whole process groups)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.1) -> object:
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Process:
    """One child in its own session (process group), its output in ``log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log: Path,
        preexec_fn: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:  # a fresh log: old "ready" lines must not count
            self.popen = subprocess.Popen(
                self.argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec_fn,  # e.g. to die with this process (support/varnish.py)
            )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def describe(self, lines: int = 40) -> str:
        state = "running" if self.alive else f"exited with {self.popen.returncode}"
        return f"{self.name} ({state}); last lines of {self.log}:\n{tail(self.log, lines)}"

    def wait_ready(self, check: Callable[[], object], *, timeout: float, what: str) -> None:
        """Wait for ``check()`` to be truthy; raise with the log tail if it never is."""

        def ready() -> object:
            if not self.alive:
                return "dead"
            return check()

        result = wait_until(ready, timeout=timeout, interval=0.2)
        if result is None or result == "dead":
            problem = "died" if result == "dead" else f"not {what} within {timeout:.0f} s"
            self.stop()
            raise RuntimeError(f"{self.name} {problem}: {' '.join(self.argv)}\n{self.describe()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after ``timeout`` seconds."""
        pgid = self.popen.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        # Children (prefork pool, gunicorn workers) may outlive the leader: kill the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def log_contains(path: Path, needle: str) -> bool:
    try:
        return needle in path.read_text(errors="replace")
    except OSError:
        return False


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)


@contextlib.contextmanager
def signals_deferred(signums: Sequence[int] = DEFERRED_SIGNALS) -> Iterator[None]:
    """Run the body (a teardown) without being interrupted by ``signums``: Ctrl-C, SIGTERM, or
    pytest-timeout's SIGALRM (its ``signal`` method raises in whatever runs when it fires).

    A signal that arrives meanwhile is noted and raised again, to its own handler, once the body
    is done. Only the main thread can set handlers; elsewhere the body runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for signum in signums:
        handler = signal.getsignal(signum)
        if handler is not None:  # None: a handler set outside Python, left alone
            previous[signum] = handler
            signal.signal(signum, lambda number, _frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)
