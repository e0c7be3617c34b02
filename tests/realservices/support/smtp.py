"""An SMTP server in the test process (aiosmtpd) that keeps every message it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiosmtpd.controller import Controller

_parser = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage = field(repr=False)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "").strip()


class MailSink:
    """An aiosmtpd handler: stores each message (raw bytes, envelope) and notes when it arrived
    (``arrivals``: monotonic time, recipients); thread-safe waits.

    With ``keep`` (thousands of messages, as a benchmark sends), only the first ``keep``
    messages are stored whole; every arrival is still noted.
    """

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep
        self._messages: list[Received] = []
        self.arrivals: list[tuple[float, tuple[str, ...]]] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self.add(envelope.mail_from or "", envelope.rcpt_tos, raw)
        return "250 Message accepted for delivery"

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        """Note a message's arrival and store it (unless ``keep`` are stored already)."""
        arrived = time.monotonic()
        rcpts = tuple(r.lower() for r in rcpt_tos)
        whole = self.keep is None or len(self._messages) < self.keep
        message = _parser.parsebytes(raw) if whole else None  # parsed outside the lock
        with self._changed:
            self.arrivals.append((arrived, rcpts))
            if message is not None:
                self._messages.append(Received(mail_from, rcpts, raw, message))
            self._changed.notify_all()

    @property
    def messages(self) -> list[Received]:
        with self._changed:
            return list(self._messages)

    def to(self, *addresses: str) -> list[Received]:
        """Messages whose envelope names any of ``addresses``."""
        wanted = {a.lower() for a in addresses}
        return [m for m in self.messages if wanted.intersection(m.rcpt_tos)]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until ``predicate(all messages)`` holds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._messages), timeout=timeout)

    def wait_for_count(self, addresses: set[str], count: int, timeout: float) -> list[Received]:
        """Wait until ``count`` messages reached ``addresses``; return those found either way."""
        wanted = {a.lower() for a in addresses}

        def enough(messages: list[Received]) -> bool:
            return sum(1 for m in messages if wanted.intersection(m.rcpt_tos)) >= count

        self.wait_for(enough, timeout)
        return self.to(*wanted)


class SmtpServer:
    """``aiosmtpd`` on 127.0.0.1:``port`` in a thread of this process, handing each message to
    ``sink`` (a new :class:`MailSink` by default)."""

    def __init__(self, port: int, sink: MailSink | None = None) -> None:
        self.sink = MailSink() if sink is None else sink
        self.host = "127.0.0.1"
        self.port = port
        self._controller = Controller(
            self.sink, hostname=self.host, port=port, ready_timeout=10, data_size_limit=50 << 20
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
