"""A scripted loopback HTTP receiver for the webhook unit tests (one thread per request).

``Loopback()`` listens on 127.0.0.1; each POST is recorded (path, headers, body) and answered by
the next step of ``script`` (a status, or a callable that writes the answer itself), else 200.
Closing it wakes any step still sleeping and joins every thread, so no socket is left open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


Step = int | Callable[["Handler"], None]


@dataclass
class Loopback:
    script: list[Step] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins the request threads
        self.server.loopback = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> Loopback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    @property
    def loopback(self) -> Loopback:
        return self.server.loopback  # type: ignore[attr-defined]

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with self.loopback.lock:
            self.loopback.requests.append(Request(self.path, dict(self.headers.items()), body))
            step: Step = self.loopback.script.pop(0) if self.loopback.script else 200
        try:
            if callable(step):
                step(self)
            else:
                self.answer(step, b"ok")
        except OSError:  # the client hung up (a timeout, a cut): nothing more to say
            self.close_connection = True
