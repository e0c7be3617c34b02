"""The real stack the suite measures, started and torn down here.

Everything is started by the real-services test harness (``tests/realservices/support``), the
one place the tiers and the benchmarks start services and the site from: a PostgreSQL database
of our own (created on a server and dropped afterwards, or a private ``initdb`` cluster), a
private ``redis-server`` on a free port as broker and cache (``services``), an aiosmtpd sink in
this process (``smtp``), and the example site's gunicorn (2 sync workers) and prefork Celery
worker as process groups (``stack``). The
baseline site (``benchmarks/baseline``) runs under gunicorn beside it on the same database,
cache and broker. :meth:`BenchStack.close` stops everything that was started, in reverse order,
whatever happened.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests.realservices.support.database import Database, with_database
from tests.realservices.support.processes import Process, free_port
from tests.realservices.support.services import PrivatePostgres, PrivateRedis
from tests.realservices.support.smtp import MailSink, SmtpServer
from tests.realservices.support.stack import (
    QUEUE_VAR,
    celery_worker_start,
    gunicorn_start,
    manage,
    site_env,
)
from tests.realservices.support.varnish import Varnish, start_varnish, varnish_problem

SITE_SETTINGS = "benchmarks.site_settings"
BASELINE_SETTINGS = "benchmarks.baseline.settings"
SITE_WSGI = "example_project.wsgi:application"
BASELINE_WSGI = "benchmarks.baseline.wsgi:application"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/test"


class CountingSink(MailSink):
    """A mail sink for thousands of reports (give it ``keep``): counts by address prefix over
    every message's arrival."""

    def count(self, prefix: str = "") -> int:
        with self._changed:
            return sum(1 for _t, rcpts in self.arrivals if any(r.startswith(prefix) for r in rcpts))

    def wait_count(self, prefix: str, count: int, timeout: float) -> bool:
        """Wait until ``count`` messages to addresses starting with ``prefix`` arrived."""

        def enough() -> bool:
            found = 0
            for _t, rcpts in self.arrivals:
                found += any(r.startswith(prefix) for r in rcpts)
            return found >= count

        with self._changed:
            return self._changed.wait_for(enough, timeout=timeout)

    def last_arrival(self, prefix: str) -> float | None:
        with self._changed:
            times = [t for t, rcpts in self.arrivals if any(r.startswith(prefix) for r in rcpts)]
        return max(times) if times else None


def process_rss_kib(pid: int) -> int | None:
    """``VmRSS`` of ``pid`` in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (its Celery pool processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


class BenchStack:
    """Everything ``make bench`` runs against; see the module docstring."""

    def __init__(
        self,
        *,
        log_dir: Path,
        postgres_url: str,
        private_postgres: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        self.log_dir = log_dir
        self.say = say
        self.work_dir = Path(tempfile.mkdtemp(prefix="backpain-bench-"))
        self.postgres_url = postgres_url
        self.private_postgres = private_postgres
        self.postgres: PrivatePostgres | None = None
        self.database: Database | None = None
        self.redis = PrivateRedis(work_dir=self.work_dir / "redis", log_dir=log_dir)
        self.sink = CountingSink(keep=10)
        self.smtp = SmtpServer(free_port(), self.sink)
        self.queue = f"backpain-bench-{secrets.token_hex(3)}"
        self.baseline_queue = f"backpain-bench-baseline-{secrets.token_hex(3)}"
        self.secret = "bench-" + secrets.token_urlsafe(32)
        self.site: Process | None = None
        self.site_url = ""
        self.baseline: Process | None = None
        self.baseline_url = ""
        self.worker: Process | None = None
        self.varnishes: list[Varnish] = []
        self._cleanup = contextlib.ExitStack()

    # Services ---------------------------------------------------------------------------------

    @staticmethod
    def problems(*, web_load: bool = True) -> list[str]:
        """What this machine lacks to run the stack (empty when nothing); wrk and Varnish
        only with ``web_load`` (the rows that load the web servers)."""
        found = [p for p in (PrivateRedis.available(),) if p]
        if web_load:
            found += [p for p in (varnish_problem(),) if p]
            if not shutil.which("wrk"):
                found.append("wrk is not installed (Debian: apt-get install -y wrk)")
        return found

    def start_services(self) -> None:
        """PostgreSQL (a database of our own), Redis and the SMTP sink; then migrate both sites."""
        started = time.monotonic()
        self._cleanup.callback(shutil.rmtree, self.work_dir, ignore_errors=True)
        self._start_database()
        self.redis.start()
        self._cleanup.callback(self.redis.stop)
        self.smtp.start()
        self._cleanup.callback(self.smtp.stop)
        manage(self.site_env(broker_url="memory://"), "migrate", "--noinput", timeout=300)
        manage(self.baseline_env(), "migrate", "--noinput", "baseline", timeout=120)
        self.say(f"services up and both sites migrated in {time.monotonic() - started:.1f} s")

    def _start_database(self) -> None:
        if not self.private_postgres:
            try:
                with psycopg.connect(self.postgres_url, connect_timeout=3) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                self.say(f"PostgreSQL at {self.postgres_url} refused ({exc}); using initdb")
                self.private_postgres = True
        server_url = self.postgres_url
        if self.private_postgres:
            problem = PrivatePostgres.available()
            if problem:
                raise RuntimeError(f"no PostgreSQL to measure on: {problem}")
            self.postgres = PrivatePostgres(log_dir=self.log_dir)
            self._cleanup.callback(self.postgres.stop)
            self.postgres.init()
            self.postgres.start()
            server_url = self.postgres.server_url
        database = Database(server_url)
        database.name = f"backpain_bench_{secrets.token_hex(4)}"
        database.url = with_database(server_url, database.name)
        database.create()
        self._cleanup.callback(database.drop)
        self.database = database

    def close(self) -> None:
        """Stop every process and service that was started; drop the database."""
        for varnish in self.varnishes:
            with contextlib.suppress(Exception):
                varnish.stop()
        for process in (self.worker, self.site, self.baseline):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        self._cleanup.close()

    # Environments -----------------------------------------------------------------------------

    def site_env(
        self, *, broker_url: str | None = None, settings: str = SITE_SETTINGS, queue: str = ""
    ) -> dict[str, str]:
        """The test tiers' site environment (:func:`site_env`) on our services, with the
        benchmark's ``settings`` (the example's, or the baseline's) and ``queue``."""
        assert self.database is not None
        (self.work_dir / "var" / "static").mkdir(parents=True, exist_ok=True)  # WhiteNoise's
        env = site_env(
            database_url=self.database.url,
            broker_url=broker_url or self.redis.url(0),
            smtp_port=self.smtp.port,
            site_url=self.site_url or "http://127.0.0.1",
            var_dir=self.work_dir / "var",
        )
        env["DJANGO_SETTINGS_MODULE"] = settings
        env["DJANGO_SECRET_KEY"] = self.secret
        env[QUEUE_VAR] = queue or self.queue
        return env

    def baseline_env(self) -> dict[str, str]:
        return self.site_env(settings=BASELINE_SETTINGS, queue=self.baseline_queue)

    # Web servers and the worker ---------------------------------------------------------------

    def _gunicorn(self, name: str, wsgi: str, env: dict[str, str], port: int) -> Process:
        log = self.log_dir / f"{name}.log"
        return gunicorn_start(name, port, env, log, wsgi=wsgi, access_log=False)

    def start_web(self) -> None:
        """gunicorn (2 sync workers) for the example site and for the baseline site."""
        port = free_port()
        self.site_url = f"http://127.0.0.1:{port}"
        self.site = self._gunicorn("gunicorn-site", SITE_WSGI, self.site_env(), port)
        port = free_port()
        self.baseline_url = f"http://127.0.0.1:{port}"
        self.baseline = self._gunicorn(
            "gunicorn-baseline", BASELINE_WSGI, self.baseline_env(), port
        )

    def start_varnish(self) -> tuple[Varnish, Varnish]:
        """A stock Varnish (built-in VCL, ``tests/realservices/support/varnish.py``) in front of
        each site: (ours, the baseline's)."""
        found = []
        for name, url in (("site", self.site_url), ("baseline", self.baseline_url)):
            varnish = start_varnish(
                backend_port=int(url.rsplit(":", 1)[1]),
                work_dir=self.work_dir / f"varnish-{name}",
                log=self.log_dir / f"varnish-{name}.log",
            )
            self.varnishes.append(varnish)
            found.append(varnish)
        return found[0], found[1]

    def start_worker(self, *, processes: int, max_tasks_per_child: int) -> Process:
        """The example site's prefork Celery worker on our queue; waits until it is ready.

        ``max_tasks_per_child`` 0 means never recycle a pool process (billiard wants a positive
        number, so it gets one no run reaches).
        """
        self.worker = celery_worker_start(
            "celery-worker",
            self.site_env(),
            self.log_dir / "worker.log",
            wait=90,
            node=f"{self.queue}@%h",
            queue=self.queue,
            concurrency=processes,
            max_tasks_per_child=max_tasks_per_child or 10**9,
        )
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def worker_rss_kib(self) -> dict[str, int]:
        """RSS in KiB of the worker's main process, each pool process and their total."""
        assert self.worker is not None
        main = self.worker.popen.pid
        found = {"main": process_rss_kib(main) or 0}
        for index, pid in enumerate(child_pids(main)):
            found[f"pool {index + 1} (pid {pid})"] = process_rss_kib(pid) or 0
        found["total"] = sum(found.values())
        return found

    # The broker and the database from outside -------------------------------------------------

    def purge_queues(self) -> None:
        """Drop every message waiting for either site (the web rows leave thousands)."""
        client = self.redis.client()
        try:
            for queue in (self.queue, self.baseline_queue):
                client.delete(queue, f"_kombu.binding.{queue}")
        finally:
            client.close()

    def count_rows(self, table: str) -> int:
        assert self.database is not None
        return int(self.database.query(f"SELECT count(*) AS n FROM {table}")[0]["n"])

    def settled_count(self, table: str, *, quiet: float = 0.5, timeout: float = 30) -> int:
        """The table's row count once it stopped changing for ``quiet`` seconds: gunicorn
        still answers the requests queued in its backlog after wrk stopped."""
        deadline = time.monotonic() + timeout
        count = self.count_rows(table)
        while time.monotonic() < deadline:
            time.sleep(quiet)
            again = self.count_rows(table)
            if again == count:
                break
            count = again
        return count

    def delete_rows(self, table: str) -> None:
        assert self.database is not None
        self.database.query(f"DELETE FROM {table}")

    def server_version(self) -> str:
        assert self.database is not None
        return str(self.database.query("SHOW server_version")[0]["server_version"])


class RssSampler:
    """Samples the worker's total RSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, stack: BenchStack, interval: float = 1.0) -> None:
        self.stack = stack
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                total = self.stack.worker_rss_kib()["total"]
                self.samples.append((time.monotonic(), total))
                self.peak = max(self.peak, total)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
