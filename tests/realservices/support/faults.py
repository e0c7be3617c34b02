"""A scripted SMTP server to break on purpose; the private Redis and PostgreSQL that the fault
tier breaks are :mod:`.services`'s.

The fault tier never stops, freezes, flushes or restarts a shared service. :class:`ScriptedSmtp`
runs on a free port of its own and is torn down at the end of the session: a small asyncio SMTP
server whose answers are scripted per recipient (``451`` for the first N attempts, ``550``), per
connection (accept and never greet, greet late) and per batch (drop the connection after the K-th
message).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from .processes import free_port
from .smtp import MailSink


@dataclass
class Hang:
    """One connection that was accepted and never answered."""

    opened: float
    closed: float | None = None

    @property
    def held(self) -> float | None:
        """Seconds until the client gave up (None while it still waits)."""
        return None if self.closed is None else self.closed - self.opened


@dataclass
class Script:
    """What the server does; change it between tests with :meth:`ScriptedSmtp.reset`."""

    # recipient -> replies to its next RCPT TO commands ("451 ...", "550 ..."); then accepted.
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    # Connections (from the next one on) that get no greeting and no answer at all.
    hang_connections: int = 0
    # Connections that are closed right after their K-th accepted message (K, how many).
    drop_after: int = 0
    drop_connections: int = 0
    # Seconds to wait before greeting each new connection.
    greeting_delay: float = 0.0


class ScriptedSmtp:
    """An SMTP server on 127.0.0.1:``port`` (asyncio, in a thread) that follows a :class:`Script`.

    A message is stored (in ``sink``) only once the server has answered ``250`` to its data, as a
    real server that honours RFC 5321 would.
    """

    BANNER = b"220 faults.test ESMTP scripted\r\n"

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.sink = MailSink()  # fed by this server through its add(), not by aiosmtpd
        self.script = Script()
        self.rcpt_attempts: Counter[str] = Counter()
        self.connections = 0
        self.hangs: list[Hang] = []
        self.drops = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    # The script -----------------------------------------------------------------------------

    def reset(self) -> None:
        """An empty script and fresh counters (the messages received so far are kept)."""
        with self._lock:
            self.script = Script()
            self.connections = 0
            self.hangs = []
            self.drops = 0

    def reply_to(self, recipient: str, *replies: str) -> None:
        """Answer the next ``len(replies)`` RCPT TO commands for ``recipient`` with ``replies``."""
        with self._lock:
            self.script.rcpt_replies[recipient.lower()] = list(replies)

    def hang_next(self, connections: int = 1) -> None:
        with self._lock:
            self.script.hang_connections = connections

    def drop_after_messages(self, count: int, connections: int = 1) -> None:
        with self._lock:
            self.script.drop_after = count
            self.script.drop_connections = connections

    def delay_greeting(self, seconds: float) -> None:
        with self._lock:
            self.script.greeting_delay = seconds

    def attempts(self, recipient: str) -> int:
        with self._lock:
            return self.rcpt_attempts[recipient.lower()]

    # The server -----------------------------------------------------------------------------

    def start(self) -> None:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port, limit=1 << 20)
            )
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"smtp:{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"the scripted SMTP server did not start on port {self.port}")

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
            hang = self.script.hang_connections > 0
            if hang:
                self.script.hang_connections -= 1
            drop_after = 0
            if self.script.drop_connections > 0 and self.script.drop_after > 0:
                self.script.drop_connections -= 1
                drop_after = self.script.drop_after
            delay = self.script.greeting_delay
        if hang:
            record = Hang(opened=time.monotonic())
            with self._lock:
                self.hangs.append(record)
            try:
                while await reader.read(4096):  # never answer; wait for the client to give up
                    pass
            finally:
                record.closed = time.monotonic()
            return
        if delay:
            await asyncio.sleep(delay)
        writer.write(self.BANNER)
        await writer.drain()
        mail_from, rcpts, accepted = "", [], 0

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        while True:
            line = await reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = text[:4].upper()
            if verb == "EHLO":
                writer.write(b"250-faults.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n")
                await say("250 SIZE 52428800")
            elif verb == "HELO":
                await say("250 faults.test")
            elif verb == "MAIL":
                mail_from, rcpts = _address(text), []
                await say("250 2.1.0 OK")
            elif verb == "RCPT":
                recipient = _address(text).lower()
                with self._lock:
                    self.rcpt_attempts[recipient] += 1
                    queued = self.script.rcpt_replies.get(recipient) or []
                    reply = queued.pop(0) if queued else "250 2.1.5 OK"
                if reply.startswith("2"):
                    rcpts.append(recipient)
                await say(reply)
            elif verb == "DATA":
                if not rcpts:
                    await say("503 5.5.1 No valid recipients")
                    continue
                await say("354 End data with <CR><LF>.<CR><LF>")
                raw = await _read_data(reader)
                self.sink.add(mail_from, rcpts, raw)
                accepted += 1
                await say("250 2.0.0 Queued")
                mail_from, rcpts = "", []
                if drop_after and accepted >= drop_after:
                    with self._lock:
                        self.drops += 1
                    writer.transport.abort()  # no QUIT, no goodbye: the link is just gone
                    return
            elif verb == "RSET":
                mail_from, rcpts = "", []
                await say("250 2.0.0 OK")
            elif verb == "NOOP":
                await say("250 2.0.0 OK")
            elif verb == "QUIT":
                await say("221 2.0.0 Bye")
                return
            else:
                await say("500 5.5.2 Command not recognised")


def _address(command: str) -> str:
    """The address between < and > in ``MAIL FROM:<a> ...`` / ``RCPT TO:<a> ...``."""
    start, end = command.find("<"), command.find(">")
    if start == -1 or end < start:
        return command.split(":", 1)[-1].strip().split(" ")[0]
    return command[start + 1 : end]


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines: list[bytes] = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("client went away during DATA")
        if line in (b".\r\n", b".\n"):
            return b"".join(lines)
        lines.append(line[1:] if line.startswith(b"..") else line)
