"""The test side of the webhook receiver: :class:`Receiver` runs
:mod:`~tests.realservices.support.webhook_receiver` as a child process on a free loopback port,
scripts its answers and reads its record.

    with Receiver(secret) as receiver:
        receiver.fail_next(2, status=500)
        ...  # the code under test posts to receiver.url
        receiver.wait_for(lambda records: len(records) == 3)
        assert receiver.accepted_ids() == [webhook_id]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .processes import Process, signals_deferred
from .tls import TlsFiles
from .webhook_receiver import CONTROL_PATH, HOOK_PATH

ROOT = Path(__file__).resolve().parents[3]
SERVER_MODULE = "tests.realservices.support.webhook_receiver"
T = TypeVar("T")


class Receiver:
    """The receiver as a child process, for a test.

    ``with Receiver(secret) as receiver:`` starts it on a free port; ``receiver.url`` is where
    to send webhooks. Leaving the block stops it, promptly even with an answer held back; its
    records stay readable afterwards. Its files (``records.jsonl``, ``receiver.log``) go to
    ``directory``, else to a temporary directory removed on stop. With ``tls`` (see
    :func:`.tls.tls_files_make`) it serves HTTPS with that certificate; a sender must trust
    ``tls.ca`` (``SSL_CERT_FILE``).
    """

    def __init__(
        self, secret: str, *, directory: Path | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.secret = secret
        self.tls = tls
        self.token = secrets.token_urlsafe(16)
        self._directory = directory
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._process: Process | None = None
        self._final: list[dict[str, Any]] | None = None
        self.record_path: Path | None = None
        self.base_url = ""

    @property
    def url(self) -> str:
        """The webhook endpoint: ``http://127.0.0.1:PORT/hook`` (``https://`` with TLS)."""
        return self.base_url + HOOK_PATH

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> None:
        """Start the child and wait until it listens."""
        if self._directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="webhook-receiver-")
            self._directory = Path(self._temporary.name)
        self.record_path = self._directory / "records.jsonl"
        self.record_path.touch()
        argv = [sys.executable, "-m", SERVER_MODULE, f"--secret={self.secret}"]
        # "=" form: a token may begin with "-", which argparse would take for an option
        argv += [f"--record={self.record_path}", f"--control-token={self.token}"]
        argv += [f"--clock={time.time()}"]  # this process's clock, moved or not
        if self.tls is not None:
            argv += [f"--tls-cert={self.tls.cert}", f"--tls-key={self.tls.key}"]
        path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)))
        log = self._directory / "receiver.log"
        self._process = Process("webhook receiver", argv, env=env, cwd=ROOT, log=log)
        try:
            self._process.wait_ready(lambda: self._port(log), timeout=timeout, what="listening")
        except RuntimeError:
            self._cleanup()
            raise
        scheme = "https" if self.tls is not None else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self._port(log)}"

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 5 s) and keep its records."""
        if self._process is not None:
            with signals_deferred():
                self._process.stop(timeout=5)
            self._process = None
            self._final = self._read()
        self._cleanup()

    def records(self) -> list[dict[str, Any]]:
        """Every request recorded so far, in arrival order (fields: :mod:`.webhook_receiver`)."""
        return self._final if self._final is not None else self._read()

    def accepted_ids(self) -> list[str]:
        """The webhook-ids of verified requests answered 2xx without delay, in arrival order
        (an id twice if it was accepted twice). A held-back answer never counts: its sender is
        expected to have given up."""
        return [
            record["webhook_id"]
            for record in self.records()
            if record["verified"] and 200 <= record["status"] < 300 and not record["hang_seconds"]
        ]

    def fail_next(self, count: int, status: int = 500, retry_after: int | None = None) -> None:
        """Answer the next ``count`` verified requests with ``status`` (and ``Retry-After``)."""
        order: dict[str, Any] = {"fail_next": count, "status": status}
        if retry_after is not None:
            order["retry_after"] = retry_after
        self.control(order)

    def hang_next(self, count: int, seconds: float) -> None:
        """Hold back the answer (then 200) to the next ``count`` verified requests."""
        self.control({"hang_next": count, "seconds": seconds})

    def reset(self) -> None:
        """Drop the queued steps: every verified request is answered 200 again."""
        self.control({"reset": True})

    def control(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        """Send one control order; the steps still queued."""
        request = urllib.request.Request(
            f"{self.base_url}{CONTROL_PATH}?token={self.token}",
            data=json.dumps(order).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        context = self.tls.client_context() if self.tls is not None else None
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return json.loads(response.read())["pending"]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], T], timeout: float = 10.0) -> T:
        """The first truthy ``predicate(records)`` within ``timeout`` s; AssertionError if none."""
        deadline = time.monotonic() + timeout
        while not (value := predicate(self.records())) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not value:
            lines = "\n".join(json.dumps(record) for record in self.records()) or "(none)"
            raise AssertionError(f"webhook receiver: not within {timeout} s; records:\n{lines}")
        return value

    def describe(self) -> str:
        """The child's state and log tail, for a failure message."""
        return self._process.describe() if self._process else "webhook receiver (stopped)"

    def _read(self) -> list[dict[str, Any]]:
        if self.record_path is None:
            return []
        try:
            text = self.record_path.read_text()
        except OSError:
            return []
        complete = text[: text.rfind("\n") + 1]  # a line being written is not one yet
        return [json.loads(line) for line in complete.splitlines()]

    @staticmethod
    def _port(log: Path) -> int | None:
        with contextlib.suppress(OSError):
            match = re.search(r"^listening 127\.0\.0\.1 (\d+)$", log.read_text(), re.MULTILINE)
            return int(match.group(1)) if match else None
        return None

    def _cleanup(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
            self._directory = None
