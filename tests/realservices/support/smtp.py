"""An SMTP server in the test process (aiosmtpd) that keeps every message it receives."""

from __future__ import annotations

import threading
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
    """An aiosmtpd handler: stores each message (raw bytes, envelope); thread-safe waits."""

    def __init__(self) -> None:
        self._messages: list[Received] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(r.lower() for r in envelope.rcpt_tos),
            raw=raw,
            message=_parser.parsebytes(raw),  # type: ignore[arg-type]
        )
        with self._changed:
            self._messages.append(received)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

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
    """``aiosmtpd`` on 127.0.0.1:``port`` in a thread of this process."""

    def __init__(self, port: int) -> None:
        self.sink = MailSink()
        self.host = "127.0.0.1"
        self.port = port
        self._controller = Controller(
            self.sink, hostname=self.host, port=port, ready_timeout=10, data_size_limit=50 << 20
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
