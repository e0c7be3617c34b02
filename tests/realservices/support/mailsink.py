"""An SMTP sink to run as a program on another host: one JSON line per message it accepted.

    python -m tests.realservices.support.mailsink --host 10.231.0.2 --port 2525 --out mail.jsonl

Each line (written with one ``write`` in append mode, so a reader never sees half a line) holds
the arrival time, the envelope recipients, the Message-ID, the subject and the size. A message
is written before the server answers ``250``, as a real server stores it before accepting it.
:class:`SinkLog` reads the file back. SIGTERM stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections import Counter
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

_headers = BytesHeaderParser(policy=policy.default)


class JsonLinesHandler:
    """An aiosmtpd handler appending one JSON line per message to ``path``."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        headers = _headers.parsebytes(raw)
        line = {
            "time": time.time(),
            "peer": session.peer[0] if session.peer else "",
            "rcpt": [r.lower() for r in envelope.rcpt_tos],
            "message_id": str(headers["Message-ID"] or "").strip(),
            "subject": str(headers["Subject"] or ""),
            "size": len(raw),
        }
        os.write(self.fd, (json.dumps(line) + "\n").encode())
        return "250 2.0.0 Queued"


class SinkLog:
    """The messages a :mod:`mailsink` program wrote to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read: list[dict] = []
        self._offset = 0

    def messages(self) -> list[dict]:
        """Every message so far (the file is read on from where the last call stopped)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        self._read.extend(json.loads(line) for line in complete.splitlines() if line.strip())
        return list(self._read)

    def per_address(self, subject_contains: str = "") -> Counter[str]:
        """Messages per recipient (only those whose subject contains ``subject_contains``)."""
        return Counter(
            r for m in self.messages() if subject_contains in m["subject"] for r in m["rcpt"]
        )


def main() -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    controller = Controller(
        JsonLinesHandler(args.out),
        hostname=args.host,
        port=args.port,
        ready_timeout=10,
        data_size_limit=50 << 20,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    print(f"mail sink listening on {args.host}:{args.port}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
