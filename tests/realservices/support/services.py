"""Private services, each on a free port of its own and torn down by whoever started it.

- :class:`PrivateRedis` — ``redis-server --save "" --appendonly no``: stop/start, SIGSTOP/SIGCONT,
  FLUSHALL, queue lengths.
- :class:`PrivatePostgres` — a cluster made by ``initdb`` (as the ``postgres`` user when running
  as root, since initdb refuses root) and driven by ``pg_ctl``: start, restart, stop.

The fault tier breaks them on purpose (it never stops, freezes, flushes or restarts a shared
service); the multi-host tier runs them on its db host; the benchmarks run on them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .processes import Process, free_port

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


# --- RabbitMQ --------------------------------------------------------------------------------

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class PrivateRabbit:
    """A RabbitMQ node of its own (its name, AMQP and distribution ports, data directory and
    config), on 127.0.0.1; its data (durable queues, persistent messages) survives a restart.

    As root it runs as the ``rabbitmq`` user (through ``runuser``), as Debian's wrapper would.
    """

    OWNER = "rabbitmq"

    def __init__(self, *, log_dir: Path) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"backpain-{self.port}@localhost"
        self.root = Path(tempfile.mkdtemp(prefix="backpain-faults-rabbit-"))
        self.log_dir = log_dir
        self.process: Process | None = None
        self._starts = 0
        self._as_root = os.geteuid() == 0
        config = self.root / "rabbitmq.conf"
        config.write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        if self._as_root:
            owner = pwd.getpwnam(self.OWNER)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)

    @classmethod
    def available(cls) -> str | None:
        if not RABBITMQ_SERVER.exists():
            return f"{RABBITMQ_SERVER} is missing (apt-get install rabbitmq-server)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(cls.OWNER)
            except KeyError:
                return f"running as root and there is no {cls.OWNER!r} user to run a node"
            if not shutil.which("runuser"):
                return "running as root and runuser is missing"
        return None

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.alive

    def start(self) -> None:
        if self.running:
            return
        self._starts += 1
        env = dict(
            os.environ,
            HOME=str(self.root),  # its own Erlang cookie
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_PID_FILE=str(self.root / "pid"),
            RABBITMQ_LOGS="-",
        )
        argv = [str(RABBITMQ_SERVER)]
        if self._as_root:
            argv = ["runuser", "-u", self.OWNER, "--", *argv]
        self.process = Process(
            f"rabbitmq {self.node}",
            argv,
            env=env,
            cwd=self.root,
            log=self.log_dir / f"rabbitmq-{self._starts}.log",
        )
        self.process.wait_ready(self.accepts, timeout=60, what="accepting AMQP")

    def stop(self) -> None:
        """Stop the node (SIGTERM to its process group); its data stays for the next start."""
        if self.process is not None:
            self.process.stop(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def accepts(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url(), connect_timeout=1) as conn:
                conn.ensure_connection(max_retries=1, timeout=1)
            return True
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason
            return False
