"""Private services to break on purpose: Redis, a PostgreSQL cluster and a scripted SMTP server.

The fault tier never stops, freezes, flushes or restarts a shared service. Everything here runs
on a free port of its own and is torn down at the end of the session:

- :class:`PrivateRedis` — ``redis-server --save "" --appendonly no``: stop/start, SIGSTOP/SIGCONT,
  FLUSHALL, queue lengths.
- :class:`PrivatePostgres` — a cluster made by ``initdb`` (as the ``postgres`` user when running
  as root, since initdb refuses root) and driven by ``pg_ctl``: start, restart, stop.
- :class:`ScriptedSmtp` — a small asyncio SMTP server whose answers are scripted per recipient
  (``451`` for the first N attempts, ``550``), per connection (accept and never greet, greet
  late) and per batch (drop the connection after the K-th message).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .processes import Process, free_port, wait_until
from .smtp import MailSink, Received, _parser

# --- Redis ---------------------------------------------------------------------------------


class PrivateRedis:
    """A throw-away ``redis-server`` on 127.0.0.1:``port``; nothing persists across a restart."""

    def __init__(
        self,
        *,
        work_dir: Path,
        log_dir: Path,
        bind: str = "127.0.0.1",
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        """``wrap`` runs the server elsewhere (another network namespace, listening on
        ``bind``); this process then talks to it through a Unix socket in ``work_dir``."""
        self.port = 6379 if wrap else free_port()
        self.bind = bind
        self.wrap = wrap
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.socket = work_dir / "redis.sock" if wrap else None
        self.process: Process | None = None
        self.frozen = False
        self._starts = 0

    @staticmethod
    def available() -> str | None:
        return None if shutil.which("redis-server") else "redis-server is not installed"

    def url(self, db: int = 0) -> str:
        return f"redis://{self.bind}:{self.port}/{db}"

    def _local_url(self) -> str:
        """The URL this process uses: the Unix socket when the server runs elsewhere."""
        return f"unix://{self.socket}?db=0" if self.socket else self.url()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.alive

    def start(self) -> None:
        if self.running:
            return
        self._starts += 1
        self.work_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            "redis-server", "--port", str(self.port), "--bind", self.bind,
            "--save", "", "--appendonly", "no", "--dir", str(self.work_dir),
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.socket:
            argv += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        self.process = Process(
            f"redis-server {self.bind}:{self.port}",
            self.wrap(argv) if self.wrap else argv,
            env=dict(os.environ),
            cwd=self.work_dir,
            log=self.log_dir / f"redis-{self._starts}.log",
        )  # fmt: skip
        self.frozen = False
        self.process.wait_ready(self.ping, timeout=20, what="answering PING")

    def stop(self) -> None:
        """Shut Redis down (its data is gone: nothing is saved)."""
        if self.process is None:
            return
        self.thaw()
        self.process.stop(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self.process is not None and self.running
        os.kill(self.process.popen.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.popen.pid, signal.SIGCONT)
        self.frozen = False

    def client(self):
        import redis

        return redis.Redis.from_url(self._local_url(), socket_timeout=5, socket_connect_timeout=5)

    def ping(self) -> bool:
        import redis

        try:
            client = redis.Redis.from_url(
                self._local_url(), socket_timeout=1, socket_connect_timeout=1
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def flushall(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def llen(self, queue: str) -> int:
        """Messages waiting in a Celery queue (kombu's Redis transport keeps them in a list)."""
        client = self.client()
        try:
            return int(client.llen(queue))
        finally:
            client.close()

    def delete(self, *keys: str) -> None:
        client = self.client()
        try:
            client.delete(*keys)
        finally:
            client.close()


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    found = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on 127.0.0.1:``port``.

    initdb refuses to run as root; as root the cluster belongs to the ``postgres`` user and every
    command runs through ``runuser -u postgres --``.
    """

    OWNER = "postgres"

    def __init__(
        self,
        *,
        log_dir: Path,
        listen: str = "127.0.0.1",
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        """``wrap`` runs the server elsewhere (another network namespace, listening on
        ``listen``); this process then connects through its Unix socket (:attr:`local_url`)."""
        self.port = 5432 if wrap else free_port()
        self.listen = listen
        self.wrap = wrap
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="backpain-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.log_dir = log_dir
        self._as_root = os.geteuid() == 0
        if self._as_root:
            owner = pwd.getpwnam(self.OWNER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)

    @classmethod
    def available(cls) -> str | None:
        if postgres_bin() is None:
            return "no /usr/lib/postgresql/*/bin with initdb and pg_ctl"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(cls.OWNER)
            except KeyError:
                return f"running as root and there is no {cls.OWNER!r} user to own a cluster"
            if not shutil.which("runuser"):
                return "running as root and runuser is missing"
        return None

    @property
    def server_url(self) -> str:
        """The URL the sites use (TCP on ``listen``)."""
        return f"postgres://postgres@{self.listen}:{self.port}/postgres"

    @property
    def local_url(self) -> str:
        """The URL this process uses: TCP, or the Unix socket when the server runs elsewhere."""
        if self.wrap is None:
            return self.server_url
        return f"postgresql://postgres@/postgres?host={self.root}&port={self.port}"

    def _run(self, *argv: str, timeout: float = 60) -> str:
        assert self.bin is not None
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", self.OWNER, "--", *command]
        if self.wrap is not None:
            command = self.wrap(command)
        done = subprocess.run(
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}\n"
                f"{done.stderr[-2000:]}\n{self.log_tail()}"
            )
        return done.stdout

    def log_tail(self, lines: int = 30) -> str:
        from .processes import tail

        return f"last lines of {self.log}:\n{tail(self.log, lines)}"

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8", "--locale", "C.UTF-8",
        )  # fmt: skip
        if self.wrap is not None:  # on a private network: let its other hosts in
            hba = self.data / "pg_hba.conf"
            hba.write_text(hba.read_text() + "host all all 0.0.0.0/0 trust\n")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={self.listen} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")  # fmt: skip

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every open connection is cut, the data stays."""
        # -l again: without it the new postmaster keeps our output pipe open and _run never ends.
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60",
            "restart",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the cluster at once and remove it (its log is copied to ``log_dir``)."""
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
        with contextlib.suppress(OSError):
            self.log_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.log, self.log_dir / "postgres.log")
        shutil.rmtree(self.root, ignore_errors=True)

    def accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.local_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False


# --- SMTP --------------------------------------------------------------------------------------


class FaultSink(MailSink):
    """The tier's :class:`MailSink`, fed by :class:`ScriptedSmtp` instead of aiosmtpd; it also
    notes when each message arrived (``arrivals``: monotonic time, recipients)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, tuple[str, ...]]] = []

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        received = Received(
            mail_from=mail_from,
            rcpt_tos=tuple(r.lower() for r in rcpt_tos),
            raw=raw,
            message=_parser.parsebytes(raw),  # type: ignore[arg-type]
        )
        with self._changed:
            self._messages.append(received)
            self.arrivals.append((time.monotonic(), received.rcpt_tos))
            self._changed.notify_all()


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
        self.sink = FaultSink()
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


def wait_for(predicate, *, timeout: float, interval: float = 0.1):
    """:func:`processes.wait_until`, re-exported for the tests."""
    return wait_until(predicate, timeout=timeout, interval=interval)
