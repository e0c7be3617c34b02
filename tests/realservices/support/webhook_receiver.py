"""A webhook receiver for the tests: a loopback HTTP server that checks Standard Webhooks
signatures, answers as a script says, and writes one JSON line per request it is sent.

    python -m tests.realservices.support.webhook_receiver --secret=whsec_... \\
        --record=records.jsonl --control-token=TOKEN [--port=0] \\
        [--tls-cert=server.pem --tls-key=key.pem]

It binds 127.0.0.1 (``--port 0``, the default, takes a free port) and prints
``listening 127.0.0.1 PORT`` as its first line on stdout. With ``--tls-cert`` and ``--tls-key``
it speaks HTTPS only (the handshake is made in the request's thread, so a client that stalls
in it holds up no other); else plain HTTP. SIGTERM or SIGINT stop it at once, a
hung answer included (that request is closed unanswered).

**Webhooks.** A POST to any path but ``/_control`` is verified with ``standardwebhooks``
(``webhook-id``, ``webhook-timestamp`` within 5 minutes of now, ``webhook-signature`` over
``id.timestamp.body``). Refused: ``401``. Verified but not JSON: ``400``. Verified: the next
step of the script, or ``200`` when none is queued. Any other method: ``405``.

**Record.** Every webhook request (not control ones) appends one line to ``--record``, written
in one ``write`` before the answer is sent (a held-back answer's line is there while it is
held), so a line is there once its answer is:
``path``, ``method``, ``webhook_id``, ``webhook_timestamp`` (the headers as sent, or null),
``verified``, ``reason`` (why it was refused, else null), ``status`` (the answer),
``retry_after``, ``hang_seconds`` (how long the answer was held back, 0 for none), ``body``
(the parsed JSON, null unless verified), ``size`` (body bytes), ``received_monotonic`` (the
system-wide ``time.monotonic()``, comparable with the test process's) and ``received_wall``.

**Control** (not signed; the token is the one from the command line, else ``403``):
``POST /_control?token=TOKEN`` with a JSON object of one or more of

- ``{"fail_next": 3, "status": 500, "retry_after": 2}``: the next 3 verified requests answer
  500 (the default), with ``Retry-After: 2`` if given;
- ``{"hang_next": 1, "seconds": 20}``: the next verified request is answered (``status``,
  default 200) only after 20 s;
- ``{"reset": true}``: the queued steps are dropped (applied first).

Steps queue in the order given. The answer is ``{"pending": [...]}``, the steps still queued.

:class:`~tests.realservices.support.webhook_receiver_client.Receiver` runs it for a test.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import signal
import ssl
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

CONTROL_PATH = "/_control"
HOOK_PATH = "/hook"  # where Receiver.url points; every path but CONTROL_PATH is a webhook


@dataclass(frozen=True)
class Step:
    """How one verified request is answered."""

    status: int = 200
    retry_after: int | None = None
    hang_seconds: float = 0.0


class Script:
    """The queued steps, taken one per verified request (thread-safe)."""

    def __init__(self) -> None:
        self._steps: deque[Step] = deque()
        self._lock = threading.Lock()

    def add(self, count: int, step: Step) -> None:
        with self._lock:
            self._steps.extend([step] * count)

    def take(self) -> Step:
        """The next step, or a plain 200 when none is queued."""
        with self._lock:
            return self._steps.popleft() if self._steps else Step()

    def reset(self) -> None:
        with self._lock:
            self._steps.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(step) for step in self._steps]


def script_apply(script: Script, order: dict[str, Any]) -> None:
    """Apply one control order (see the module docstring); ValueError if it is malformed."""
    unknown = set(order) - {"reset", "fail_next", "hang_next", "status", "retry_after", "seconds"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    if order.get("reset"):
        script.reset()
    if "fail_next" in order:
        retry_after = order.get("retry_after")
        step = Step(
            status=int(order.get("status", 500)),
            retry_after=None if retry_after is None else int(retry_after),
        )
        script.add(int(order["fail_next"]), step)
    if "hang_next" in order:
        step = Step(status=int(order.get("status", 200)), hang_seconds=float(order["seconds"]))
        script.add(int(order["hang_next"]), step)


class Recorder:
    """Appends one JSON line per request to ``path``, each in a single ``write``."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        os.close(self._fd)


class ReceiverServer(ThreadingHTTPServer):
    """The HTTP server with what its handlers share: the verifier, the script, the record."""

    daemon_threads = True  # a held-back answer must not hold up the exit (not joined)

    def __init__(
        self,
        port: int,
        secret: str,
        record: Path,
        control_token: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        if tls is not None:  # accept() then hands out TLS sockets, not yet shaken hands
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self.webhook = Webhook(secret)
        self.script = Script()
        self.recorder = Recorder(record)
        self.control_token = control_token
        self.stopping = threading.Event()


class Handler(BaseHTTPRequestHandler):
    """One request: a control order on ``/_control``, else a webhook."""

    server: ReceiverServer
    timeout = 60  # seconds a connection may stall (a TLS handshake included)

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if url.path == CONTROL_PATH:
            self._control(url.query, body)
        else:
            self._webhook(url.path, body)

    def _not_allowed(self) -> None:
        body = self._read_body()
        record = self._record_base(urlsplit(self.path).path, body)
        record.update(reason=f"method {self.command}", **asdict(Step(status=405)))
        self.server.recorder.write(record)
        self._answer(405, {"error": "POST only"})

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_allowed

    def _webhook(self, path: str, body: bytes) -> None:
        record = self._record_base(path, body)
        verified, step, reason, parsed = self._decide(body)
        record.update(verified=verified, reason=reason, body=parsed, **asdict(step))
        self.server.recorder.write(record)
        if step.hang_seconds and self.server.stopping.wait(step.hang_seconds):
            self.close_connection = True  # stopping: leave it unanswered
            return
        self._answer(step.status, {"ok": 200 <= step.status < 300}, step.retry_after)

    def _decide(self, body: bytes) -> tuple[bool, Step, str | None, Any]:
        """Verified or not, how to answer, why it was refused, and the parsed body."""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            self.server.webhook.verify(body, headers, json_parse=False)
        except WebhookVerificationError as exc:
            return False, Step(status=401), str(exc), None
        try:
            parsed = json.loads(body)
        except ValueError:
            return True, Step(status=400), "body is not JSON", None
        return True, self.server.script.take(), None, parsed

    def _control(self, query: str, body: bytes) -> None:
        token = parse_qs(query).get("token", [""])[0]
        if not hmac.compare_digest(token.encode(), self.server.control_token.encode()):
            self._answer(403, {"error": "bad token"})
            return
        try:
            order = json.loads(body or b"{}")
            if not isinstance(order, dict):
                raise ValueError("a JSON object, please")
            script_apply(self.server.script, order)
        except (ValueError, TypeError, KeyError) as exc:
            self._answer(400, {"error": f"bad order: {exc!r}"})
            return
        self._answer(200, {"pending": self.server.script.pending()})

    def _record_base(self, path: str, body: bytes) -> dict[str, Any]:
        return {
            "path": path,
            "method": self.command,
            "webhook_id": self.headers.get("webhook-id"),
            "webhook_timestamp": self.headers.get("webhook-timestamp"),
            "verified": False,
            "reason": None,
            "body": None,
            "size": len(body),
            "received_monotonic": time.monotonic(),
            "received_wall": time.time(),
        }

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    def _answer(self, status: int, payload: dict[str, Any], retry_after: int | None = None) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.end_headers()
            self.wfile.write(data)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="A loopback Standard Webhooks receiver.")
    parser.add_argument("--secret", required=True, help="whsec_<base64>")
    parser.add_argument("--record", required=True, type=Path, help="the JSON-lines record")
    parser.add_argument("--control-token", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (chain): serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--clock",
        type=float,
        help="the test's now (epoch seconds): the receiver's clock starts there and ticks, so "
        "a test run with its clock moved (--clock-shift-days) checks timestamps by its clock",
    )
    args = parser.parse_args(argv)
    if args.clock is not None and abs(args.clock - time.time()) > 60:
        import time_machine

        time_machine.travel(args.clock, tick=True).start()
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    tls = None
    if args.tls_cert is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = ReceiverServer(args.port, args.secret, args.record, args.control_token, tls)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _number, _frame: server.stopping.set())
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    print(f"listening 127.0.0.1 {server.server_port}", flush=True)
    server.stopping.wait()
    server.shutdown()
    server.server_close()
    server.recorder.close()


if __name__ == "__main__":
    main()
