"""A private, stock Varnish in front of a site: Debian's ``varnishd`` with its built-in VCL.

No VCL of our own, on purpose: the built-in one passes a request with ``Cookie`` or
``Authorization`` and any method but GET/HEAD, and stores no response with ``Set-Cookie``,
``Cache-Control: private/no-cache/no-store`` or ``Vary: *``; the rest it keeps for the response's
``max-age`` (less its ``Age``), 120 s when it has none, and serves it stale for 10 s more (its
*grace*) unless the response says ``stale-while-revalidate``. So what it stores, and for how
long, is what the site's headers say to any shared cache.

Each instance has a working directory of its own (``-n``) and a free port, and lives in a
process group of its own with a small watchdog (:data:`WATCHDOG`) that ends the group when the
test process ends, however it ends: even a test run killed with SIGKILL, whose fixtures never
run, leaves no ``varnishd`` behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from .processes import Process, free_port

VARNISHD = shutil.which("varnishd") or "/usr/sbin/varnishd"
VARNISHSTAT = shutil.which("varnishstat") or "/usr/bin/varnishstat"
PR_SET_PDEATHSIG = 1


def varnish_problem() -> str | None:
    """None when ``varnishd`` and ``varnishstat`` are installed, else what is missing."""
    missing = [p for p in (VARNISHD, VARNISHSTAT) if not shutil.which(p)]
    if missing:
        return f"{', '.join(missing)} missing (apt-get install varnish)"
    return None


def _term_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """SIGTERM this process when the thread that started it ends (Linux's parent-death signal;
    kept across the exec of a program that is not set-user-ID)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


# ``python -c WATCHDOG PARENT_PID PROGRAM ARGS...``: runs the program in its own process group
# and SIGKILLs the group (the program, its children, itself) on SIGTERM, which it gets from
# Process.stop or, through the parent-death signal, when the test process ends. varnishd itself
# cannot carry that signal: its manager changes its effective user (the jail), which clears it.
WATCHDOG = """
import os, signal, subprocess, sys
def end(*_):
    os.killpg(os.getpgrp(), signal.SIGKILL)
signal.signal(signal.SIGTERM, end)
if os.getppid() != int(sys.argv[1]):  # the test process was gone before the signal was set
    end()
sys.exit(subprocess.call(sys.argv[2:]))
"""


def _answers_http(port: int) -> bool:
    """Whether something on ``port`` answers a request with an HTTP status line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"HEAD /varnish-ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


class Varnish:
    """``varnishd -F -a 127.0.0.1:PORT -b 127.0.0.1:BACKEND -n WORKDIR -s malloc,64m``."""

    def __init__(self, *, backend_port: int, work_dir: Path, log: Path, port: int = 0) -> None:
        self.port = port or free_port()
        self.backend_port = backend_port
        self.work_dir = work_dir
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = Process(
            f"varnishd :{self.port} -> :{backend_port}",
            [
                sys.executable, "-c", WATCHDOG, str(os.getpid()),
                VARNISHD, "-F",
                "-a", f"127.0.0.1:{self.port}",
                "-b", f"127.0.0.1:{backend_port}",
                "-n", str(work_dir),
                "-s", "malloc,64m",
            ],
            env=dict(os.environ),  # varnishd compiles its VCL with the system's C compiler
            cwd=work_dir.parent,
            log=log,
            preexec_fn=_term_with_parent,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.process.wait_ready(lambda: _answers_http(self.port), timeout=timeout, what="serving")

    def stats(self) -> dict[str, int]:
        """varnishstat's counters (``MAIN.backend_req``, ``MAIN.cache_hit``, ...), by name.

        Worker threads add their counts to these in batches, so they may lag a request by a
        moment: good for a report, not for an exact count."""
        done = subprocess.run(
            [VARNISHSTAT, "-n", str(self.work_dir), "-1", "-j"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        data = json.loads(done.stdout)
        counters = data.get("counters", data)  # varnishstat 7 nests them under "counters"
        return {
            name: int(value["value"])
            for name, value in counters.items()
            if isinstance(value, dict) and "value" in value
        }

    def stop(self) -> None:
        self.process.stop(timeout=10)

    def describe(self, lines: int = 30) -> str:
        return self.process.describe(lines)


def start_varnish(
    *, backend_port: int, work_dir: Path, log: Path, port: int = 0, attempts: int = 3
) -> Varnish:
    """A running :class:`Varnish` on ``port`` (or a free one), or on another free port when
    that one was taken meanwhile."""
    for attempt in range(attempts):
        run_dir = work_dir / f"varnish-{attempt}"
        run_dir.mkdir(parents=True, exist_ok=True)
        varnish = Varnish(
            backend_port=backend_port, work_dir=run_dir, log=log, port=port if not attempt else 0
        )
        try:
            varnish.wait_ready()
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            continue
        return varnish
    raise AssertionError("unreachable")
