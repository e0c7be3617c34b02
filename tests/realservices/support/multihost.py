"""The example site spread over hosts (network namespaces), for the multi-host tier and bench.

::

      client ──┐                      ┌── web1  gunicorn :8000
               │                      ├── web2  gunicorn :8000
               └──── switch (br0) ────┤
                                      ├── w1    celery worker (prefork 2) + celery beat
                                      ├── w2    celery worker (prefork 2) + backpain_sweep --every 2
                                      └── db    PostgreSQL :5432, Redis :6379, SMTP sink :2525

Each host is a namespace of :mod:`.netns` on the private subnet ``10.231.0.0/24``; the db host's
services listen only on its address there (and on Unix sockets, through which this process
reads them). The sites get the db host's address for the database, the broker, the cache and
the mail server. Nothing listens on the machine's own interfaces, and every namespace and
process is removed by :meth:`Cluster.stop`, also after a failure (:func:`cleaned_up`: also on
SIGTERM, and a Ctrl-C or a test timeout does not cut the stop short).

Who did what is read from the database, not guessed from timing: every process connects with
``PGAPPNAME`` ``<host>-<role>``, and a trigger the tier adds to the delivery table writes each
change of a row's status or claim, with the host (its address on the LAN) and program that made
it and the database's clock, to ``multihost_claim_log`` (:meth:`Cluster.claim_log`); another
writes who inserted each follow-up delivery to ``multihost_followup_log``
(:meth:`Cluster.followups_made`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.samples import reader_name

from . import netns
from .database import Database, with_database
from .mailsink import SinkLog
from .processes import Process, log_contains, signals_deferred, wait_until
from .services import PrivatePostgres, PrivateRedis
from .stack import (
    MANAGE,
    ROOT,
    SHARED_QUEUE,
    celery_beat_argv,
    celery_worker_argv,
    celery_worker_wait,
    gunicorn_argv,
    gunicorn_wait,
    manage,
    site_env,
    site_run,
)
from .web import ARTICLE_PATH, SIGNUP_PATH, Client, form_inputs, reader_ip, signup_data

HOST_NUMBERS = {"db": 2, "web1": 11, "web2": 12, "w1": 21, "w2": 22, "client": 100}
WEB_HOSTS = ("web1", "web2")
WORKER_HOSTS = ("w1", "w2")
WEB_PORT = 8000
SMTP_PORT = 2525
SWEEP_LOOP_SECONDS = 2  # backpain_sweep --every on w2

# Short delivery timings, so a lost host's claims come back within seconds. The lease is far
# below what check E004 accepts (a 60 s render budget plus 6 SMTP waits), on purpose: E004 is
# silenced. A hand-over on this LAN takes milliseconds, so the lease is still far above it.
TIMINGS = {
    "BACKPAIN_CLAIM_LEASE": "10",
    "BACKPAIN_SWEEP_GRACE": "60",  # the default: above a normal queue wait
    "BACKPAIN_RETRY_BACKOFF": "1",
    "BACKPAIN_SWEEP_EVERY": "2",
    "EMAIL_TIMEOUT": "2",
    "DJANGO_SILENCED_SYSTEM_CHECKS": "backpain_report.E004",
}
CLAIM_LEASE = float(TIMINGS["BACKPAIN_CLAIM_LEASE"])

_SWEEP_TASK_DONE = re.compile(
    r"backpain_report\.sweep_deliveries\[[^\]]+\] succeeded in [\d.]+s: "
    r"\{'found': (\d+), 'published': (\d+)\}"
)
_SWEEP_COMMAND_DONE = re.compile(r"Sweep: (\d+) stranded (sign-ups|deliveries) found, (\d+) re-")
_SENT = re.compile(r"sent report (\d+) to ")


@dataclass
class WorkerHost:
    """A worker host's processes: the Celery worker and its sweeper (beat or the loop)."""

    name: str
    worker: Process | None = None
    sweeper: Process | None = None

    def processes(self) -> list[Process]:
        return [p for p in (self.worker, self.sweeper) if p is not None]


@dataclass
class SignupRun:
    """What a batch of sign-ups over HTTP answered."""

    statuses: Counter[int] = field(default_factory=Counter)
    per_host: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


class Cluster:
    """The hosts, their services and processes; see the module docstring."""

    def __init__(self, work_dir: Path, log_dir: Path, *, timings: dict[str, str] | None = None):
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.timings = dict(TIMINGS if timings is None else timings)
        self.lan = netns.Lan(prefix=f"bpmh{os.getpid() % 100000}-")
        self.postgres: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.database: Database | None = None
        self.sink_process: Process | None = None
        self.sink = SinkLog(work_dir / "mail.jsonl")
        self.webs: dict[str, Process] = {}
        self.worker_hosts = {name: WorkerHost(name) for name in WORKER_HOSTS}
        self._starts: Counter[str] = Counter()
        self._shares: list[netns.CpuShare] = []
        self.stragglers: dict[str, list[str]] = {}  # what stop() found still running, and killed
        # One site, one key: Message-IDs and readers' links are keyed with it on every host.
        self.secret_key = "multihost-" + secrets.token_urlsafe(32)

    # Addresses --------------------------------------------------------------------------------

    def address(self, host: str) -> str:
        return self.lan.hosts[host].address

    def web_url(self, host: str) -> str:
        return f"http://{self.address(host)}:{WEB_PORT}"

    # Start and stop ---------------------------------------------------------------------------

    def start(self) -> None:
        """The LAN, the db host's services, a migrated database and both web hosts."""
        started = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.lan.create()
        for name, number in HOST_NUMBERS.items():
            self.lan.add(name, number)
        db = self.lan.hosts["db"]
        self.postgres = PrivatePostgres(log_dir=self.log_dir, listen=db.address, wrap=db.wrap)
        self.postgres.init()
        self.postgres.start()
        self.redis = PrivateRedis(
            work_dir=self.work_dir / "redis", log_dir=self.log_dir, bind=db.address, wrap=db.wrap
        )
        self.redis.start()
        self.sink_process = Process(
            "mail sink (db)",
            db.wrap([
                sys.executable, "-m", "tests.realservices.support.mailsink",
                "--host", db.address, "--port", str(SMTP_PORT), "--out", str(self.sink.path),
            ]),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            log=self.log_dir / "mail-sink.log",
        )  # fmt: skip
        self.sink_process.wait_ready(
            lambda: log_contains(self.sink_process.log, "listening"), timeout=30, what="listening"
        )
        self.database = Database(self.postgres.local_url)
        self.database.create()
        manage(self.local_env(), "migrate", "--noinput", timeout=180)
        self.database.query(CLAIM_LOG_SQL)
        for name in WEB_HOSTS:
            self.web_start(name)
        print(f"multi-host: LAN, db host and web hosts up in {time.monotonic() - started:.1f} s")

    def stop(self) -> dict[str, list[str]]:
        """Stop every process, the db host's services and remove every namespace; each step is
        tried whatever the others did, and no signal cuts it short (:func:`signals_deferred`).

        Returns the processes found still inside a namespace at the end, which were killed
        (:meth:`.netns.Lan.destroy`): none, unless a step failed or a process escaped.
        """
        steps = [
            *(
                (lambda p=process: p.stop(timeout=10))
                for host in self.worker_hosts.values()
                for process in host.processes()
            ),
            *((lambda p=process: p.stop(timeout=10)) for process in self.webs.values()),
        ]
        if self.sink_process is not None:
            steps.append(lambda: self.sink_process.stop(timeout=5))
        if self.redis is not None:
            steps.append(self.redis.stop)
        if self.postgres is not None:
            steps.append(self.postgres.stop)
        failures = []
        with signals_deferred():
            for step in steps:
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - the other steps still run
                    failures.append(f"{type(exc).__name__}: {exc}")
            self.stragglers = self.lan.destroy()
            for share in self._shares:  # empty now: what was in a host is gone
                try:
                    share.remove()
                except OSError as exc:
                    failures.append(f"{share.path} left: {exc}")
        if failures:
            print(f"multi-host: stopping failed at {failures}", file=sys.stderr)
        return self.stragglers

    # Environments -----------------------------------------------------------------------------

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """The example site's environment on ``host``: every service at the db host's address."""
        assert self.postgres is not None and self.redis is not None and self.database is not None
        db = self.address("db")
        env = site_env(
            database_url=with_database(self.postgres.server_url, self.database.name),
            broker_url=self.redis.url(),
            smtp_port=SMTP_PORT,
            site_url=self.web_url("web1"),
            # One var/ for all hosts, as a shared volume: the private storage (the report's
            # cached body, readers' PDFs) is the same everywhere, as the docs' Production asks.
            var_dir=self.work_dir / "shared-var",
        )
        env.update(
            {
                "EMAIL_HOST": db,
                "DJANGO_SECRET_KEY": self.secret_key,
                "ALLOWED_HOSTS": ",".join(self.address(name) for name in WEB_HOSTS),
                # Celery's line for each sweep run, which sweeps() and sweep_runs() count (the
                # example hides them).
                "EXAMPLE_LOG_SWEEPS": "1",
                **self.timings,
                **extra,
            }
        )
        return env

    def local_env(self) -> dict[str, str]:
        """The environment of ``manage.py`` run by this process: the database over its socket."""
        assert self.database is not None
        env = site_env(database_url=self.database.url, var_dir=self.work_dir / "local" / "var")
        env.update(self.timings)
        return env

    # Processes --------------------------------------------------------------------------------

    def _process(
        self, host: str, role: str, argv: list[str], share: netns.CpuShare | None = None
    ) -> Process:
        self._starts[f"{host}-{role}"] += 1
        argv = self.lan.hosts[host].wrap(argv)
        if share is not None:  # joined outside: ip netns exec mounts a /sys without cgroups
            argv = share.wrap(argv)
        return Process(
            f"{role} ({host})",
            argv,
            env=self.env(host, PGAPPNAME=f"{host}-{role}"),  # who, in the claim log
            cwd=ROOT,
            log=self.log_dir / f"{host}-{role}-{self._starts[f'{host}-{role}']}.log",
        )

    def web_start(self, host: str) -> None:
        web = self._process(host, "gunicorn", gunicorn_argv(f"{self.address(host)}:{WEB_PORT}"))
        self.webs[host] = web
        with netns.inside(self.lan.hosts["client"].namespace):
            gunicorn_wait(web, self.web_url(host))

    def worker_start(self, host: str, *, cpus: float | None = None) -> Process:
        """A prefork Celery worker (2 processes) on ``host``; with ``cpus``, the host has that
        much CPU time (:class:`~.netns.CpuShare`) rather than the whole machine's."""
        share = None
        if cpus is not None:
            share = netns.CpuShare(f"{self.lan.prefix}{host}", cpus)
            self._shares.append(share)
        worker = self._process(host, "worker", celery_worker_argv(f"{host}@%h"), share=share)
        self.worker_hosts[host].worker = worker
        celery_worker_wait(worker)
        return worker

    def worker_stop(self, host: str) -> None:
        process = self.worker_hosts[host].worker
        if process is not None:
            process.stop(timeout=20)

    def sweepers_start(self) -> None:
        """celery beat on w1 (the sweep task, every ``BACKPAIN_SWEEP_EVERY`` s) and
        ``manage.py backpain_sweep --every`` on w2: two sweepers on two hosts at once."""
        beat = self._process("w1", "beat", celery_beat_argv())
        self.worker_hosts["w1"].sweeper = beat
        self.worker_hosts["w2"].sweeper = self._process(
            "w2",
            "sweep-loop",
            [sys.executable, str(MANAGE), "backpain_sweep", "--every", str(SWEEP_LOOP_SECONDS)],
        )
        beat.wait_ready(lambda: log_contains(beat.log, "beat: Starting"), timeout=60, what="up")

    def manage_on(self, host: str, *args: str, timeout: float = 120.0) -> str:
        """Run ``manage.py args`` on ``host``, as an operator logged in there would (the
        site's database, broker and cache: an edit made so drops the web hosts' stored pages);
        its output, or raise with the end of it."""
        return site_run(
            self.env(host, PGAPPNAME=f"{host}-manage"),
            str(MANAGE),
            *args,
            timeout=timeout,
            wrap=self.lan.hosts[host].wrap,
        )

    # Driving sign-ups -------------------------------------------------------------------------

    def sign_up(self, people: Iterable[tuple[str, str]], *, threads: int = 16) -> SignupRun:
        """POST the form for each ``(name, email)``, alternating the web hosts, from the client
        host; returns the answers.

        Each thread keeps one browser per web host: it GETs the article (the same page for
        every reader) and posts the next ``PAGE_EVERY`` sign-ups from that page, each from an IP
        of its own (the per-IP throttle), as many readers behind one page cache would. The
        article is fetched again after that, or when a POST is refused.
        """
        run = SignupRun(started=time.monotonic())
        client_ns = self.lan.hosts["client"].namespace
        jobs = [(i, name, email) for i, (name, email) in enumerate(people)]
        local = threading.local()

        def one(job: tuple[int, str, str]) -> tuple[str, int | str]:
            i, name, email = job
            host = WEB_HOSTS[i % len(WEB_HOSTS)]
            browsers = local.__dict__.setdefault("browsers", {})
            try:
                browser = browsers.get(host)
                if browser is None or browser.posts >= PAGE_EVERY:
                    browser = browsers[host] = _Browser(self.web_url(host))
                status = browser.post(name=name, email=email)
                if status == 403:  # refused as cross-site: a fresh page, once
                    browser = browsers[host] = _Browser(self.web_url(host))
                    status = browser.post(name=name, email=email)
                return host, status
            except Exception as exc:  # noqa: BLE001 - counted, shown in the failure
                return host, f"{type(exc).__name__}: {exc}"

        with ThreadPoolExecutor(threads, initializer=netns.enter, initargs=(client_ns,)) as pool:
            for host, outcome in pool.map(one, jobs):
                run.per_host[host] += 1
                if isinstance(outcome, int):
                    run.statuses[outcome] += 1
                else:
                    run.errors.append(outcome)
        run.finished = time.monotonic()
        return run

    # Reading the outcome ----------------------------------------------------------------------

    def query(self, statement: str, params: object = ()) -> list[dict]:
        assert self.database is not None
        return self.database.query(statement, params)  # type: ignore[arg-type]

    def statuses(self, emails: Iterable[str]) -> Counter[str]:
        rows = self.query(
            """
            SELECT d.status FROM backpain_report_delivery d
            JOIN backpain_report_subscriber s ON s.id = d.subscriber_id
            WHERE s.email_canonical = ANY(%s) AND d.kind = 'report'
            """,
            (sorted(emails),),
        )
        return Counter(row["status"] for row in rows)

    def delivery_rows(self, ids: Iterable[int]) -> dict[int, dict]:
        rows = self.query(
            """
            SELECT d.id, d.status, d.attempts, d.claimed_at, d.sent_at, d.message_id,
                   s.email_canonical AS email
            FROM backpain_report_delivery d
            JOIN backpain_report_subscriber s ON s.id = d.subscriber_id
            WHERE d.id = ANY(%s)
            """,
            (sorted(ids),),
        )
        return {row["id"]: row for row in rows}

    def wait_settled(self, emails: Iterable[str], *, timeout: float) -> Counter[str]:
        """Wait until every address's report row is sent (or none is pending, sending or
        waiting as a sign-up for ``timeout`` s); the statuses either way."""
        emails = sorted(emails)

        def settled() -> bool:
            statuses = self.statuses(emails)
            waiting = self.query(
                "SELECT count(*) AS n FROM backpain_report_pendingsignup "
                "WHERE email_canonical = ANY(%s)",
                (emails,),
            )[0]["n"]
            return not waiting and statuses.get("sent", 0) == len(emails)

        wait_until(settled, timeout=timeout, interval=1.0)
        return self.statuses(emails)

    def held_by(self, host: str) -> dict[int, dict]:
        """Rows ``sending`` under a claim that ``host`` made or last renewed: ``id -> {claimed_at,
        attempts, email}``. Read after ``host`` is cut off, these are exactly its claims."""
        rows = self.query(
            """
            SELECT d.id, d.claimed_at, d.attempts, s.email_canonical AS email
            FROM backpain_report_delivery d
            JOIN backpain_report_subscriber s ON s.id = d.subscriber_id
            WHERE d.status = 'sending' AND (
                SELECT l.client FROM multihost_claim_log l
                WHERE l.delivery_id = d.id AND l.claimed_at = d.claimed_at
                ORDER BY l.id LIMIT 1
            ) = %s::inet
            """,
            (self.address(host),),
        )
        return {row["id"]: row for row in rows}

    def claim_log(self, ids: Iterable[int]) -> dict[int, list[dict]]:
        """Every change of these rows' status or claim, oldest first: ``id -> [{status,
        claimed_at, attempts, host, program, at}]`` (``host``: the LAN host that made it)."""
        hosts = {self.address(name): name for name in HOST_NUMBERS}
        rows = self.query(
            "SELECT delivery_id, status, claimed_at, attempts, host(client) AS client, program, at "
            "FROM multihost_claim_log WHERE delivery_id = ANY(%s) ORDER BY id",
            (sorted(ids),),
        )
        log: dict[int, list[dict]] = {}
        for row in rows:
            row["host"] = hosts.get(row.pop("client") or "", "local")
            log.setdefault(row.pop("delivery_id"), []).append(row)
        return log

    def redis_messages(self) -> int:
        """Messages the broker holds: queued, plus taken by a worker and not yet acknowledged
        (kombu's Redis transport keeps those in the ``unacked`` hash)."""
        assert self.redis is not None
        client = self.redis.client()
        try:
            return int(client.llen(SHARED_QUEUE)) + int(client.hlen("unacked"))
        finally:
            client.close()

    def mail_queued(self) -> int:
        """Bytes of SMTP traffic still queued in a socket on any host (unsent, unacknowledged
        or unread, to or from the sink's port); 0 once nothing more can reach the sink. A
        connection cut mid-message keeps its bytes in the kernel, which sends them when the link
        is back, up to two minutes later (TCP's retransmission backoff)."""
        total = 0
        for host in self.lan.hosts.values():
            done = subprocess.run(
                host.wrap(["ss", "-Htn", "state", "all"]),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            for line in done.stdout.splitlines():
                fields = line.split()
                if len(fields) < 5 or fields[0] == "LISTEN":
                    continue
                ports = {address.rsplit(":", 1)[-1] for address in fields[3:5]}
                if str(SMTP_PORT) in ports:
                    total += int(fields[1]) + int(fields[2])
        return total

    def log_lines(self, host: str, role: str) -> Iterator[str]:
        for path in sorted(self.log_dir.glob(f"{host}-{role}-*.log")):
            with contextlib.suppress(OSError):
                yield from path.read_text(errors="replace").splitlines()

    def sent_by(self, host: str) -> set[int]:
        """Delivery ids whose report the worker on ``host`` logged as sent."""
        return {int(m[1]) for line in self.log_lines(host, "worker") if (m := _SENT.search(line))}

    def sweeps(self) -> dict[str, int]:
        """Rows re-published by each sweeper: the beat-scheduled task (run by either worker)
        and the command loop on w2."""
        task = sum(
            int(m[2])
            for host in WORKER_HOSTS
            for line in self.log_lines(host, "worker")
            if (m := _SWEEP_TASK_DONE.search(line))
        )
        loop = sum(
            int(m[3])
            for line in self.log_lines("w2", "sweep-loop")
            if (m := _SWEEP_COMMAND_DONE.search(line))
        )
        return {"beat task": task, "command loop": loop}

    def sweep_runs(self) -> dict[str, int]:
        """Sweeps each sweeper has run so far (finding something or not)."""
        task = sum(
            1
            for host in WORKER_HOSTS
            for line in self.log_lines(host, "worker")
            if _SWEEP_TASK_DONE.search(line)
        )
        loop = sum(
            1
            for line in self.log_lines("w2", "sweep-loop")
            if (m := _SWEEP_COMMAND_DONE.search(line)) and m[2] == "deliveries"
        )
        return {"beat task": task, "command loop": loop}

    def followups_made(self) -> dict[int, Counter[str]]:
        """Follow-up deliveries inserted, per step and by whom: ``step id -> {"<host>
        <program>": rows}`` (the host from the connection's address, the program its
        ``PGAPPNAME``: ``w2-worker`` ran beat's sweep task, ``w2-sweep-loop`` the command)."""
        hosts = {self.address(name): name for name in HOST_NUMBERS}
        rows = self.query(
            "SELECT step_id, host(client) AS client, program, count(*) AS n "
            "FROM multihost_followup_log GROUP BY 1, 2, 3"
        )
        made: dict[int, Counter[str]] = {}
        for row in rows:
            who = f"{hosts.get(row['client'] or '', 'local')} {row['program']}"
            made.setdefault(row["step_id"], Counter())[who] += row["n"]
        return made

    def web_server_errors(self) -> int:
        """Responses with a 5xx status in both web hosts' access logs."""
        status = re.compile(r'" (5\d\d) ')
        return sum(
            1
            for host in WEB_HOSTS
            for line in self.log_lines(host, "gunicorn")
            if status.search(line)
        )

    def diagnostics(self, lines: int = 30) -> str:
        parts = []
        processes = [*self.webs.values()]
        for host in self.worker_hosts.values():
            processes.extend(host.processes())
        for process in processes:
            text = [
                line
                for line in process.log.read_text(errors="replace").splitlines()
                if "] Step " not in line and "GET /" not in line and "POST /" not in line
            ]
            state = "running" if process.alive else f"exited with {process.popen.returncode}"
            parts.append(
                f"--- {process.name} ({state}), {process.log}:\n" + "\n".join(text[-lines:])
            )
        return "\n".join(parts)


CLAIM_LOG_SQL = """
CREATE TABLE multihost_claim_log (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL,
    status text NOT NULL,
    claimed_at timestamptz,
    attempts integer NOT NULL,
    client inet,
    program text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON multihost_claim_log (delivery_id);
CREATE FUNCTION multihost_claim_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO multihost_claim_log (delivery_id, status, claimed_at, attempts, client, program)
    VALUES (NEW.id, NEW.status, NEW.claimed_at, NEW.attempts, inet_client_addr(),
            current_setting('application_name'));
    RETURN NULL;
END $$;
CREATE TRIGGER multihost_claim_log AFTER UPDATE ON backpain_report_delivery FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.claimed_at IS DISTINCT FROM NEW.claimed_at)
    EXECUTE FUNCTION multihost_claim_log();
-- Who made each follow-up delivery (an insert the unique constraint turned away fires nothing).
CREATE TABLE multihost_followup_log (
    delivery_id bigint PRIMARY KEY,
    step_id bigint NOT NULL,
    client inet,
    program text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION multihost_followup_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO multihost_followup_log (delivery_id, step_id, client, program)
    VALUES (NEW.id, NEW.step_id, inet_client_addr(), current_setting('application_name'));
    RETURN NULL;
END $$;
CREATE TRIGGER multihost_followup_log AFTER INSERT ON backpain_report_delivery FOR EACH ROW
    WHEN (NEW.kind = 'followup') EXECUTE FUNCTION multihost_followup_log();
"""


@contextlib.contextmanager
def cleaned_up(cluster: Cluster) -> Iterator[dict[str, list[str]]]:
    """Run the body, then :meth:`Cluster.stop` however it ends: an exception (a start that
    failed half-way), Ctrl-C, a test timeout, or SIGTERM, which raises KeyboardInterrupt here
    (Python's default would end the process and leave every host behind).

    Yields a dict that holds, after the body, the processes :meth:`Cluster.stop` had to kill.
    """

    def interrupted(_signum, _frame):
        raise KeyboardInterrupt("SIGTERM")

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupted) if main else None
    stragglers: dict[str, list[str]] = {}
    try:
        yield stragglers
    finally:
        try:
            cluster.stop()
        finally:
            stragglers.update(cluster.stragglers)  # also when a deferred signal raised in stop()
            if main and previous is not None:
                signal.signal(signal.SIGTERM, previous)


PAGE_EVERY = 10  # sign-ups posted from one fetch of the article page


class _Browser:
    """The article page open in a browser, its form posted by one reader after another."""

    def __init__(self, base_url: str) -> None:
        self.client = Client(base_url, timeout=60)
        page = self.client.get(ARTICLE_PATH)
        if page.status != 200:
            raise AssertionError(f"GET {ARTICLE_PATH} answered {page.status}: {page.body[:300]}")
        self.inputs = form_inputs(page.body)
        self.posts = 0

    def post(self, *, name: str, email: str) -> int:
        self.posts += 1
        self.client.ip = reader_ip()  # the next reader
        data = signup_data(self.inputs, name=name, email=email)
        return self.client.post(SIGNUP_PATH, data).status


def people(tag: str, count: int, *, start: int = 0) -> list[tuple[str, str]]:
    """``count`` readers with addresses of their own (``<tag>-<n>@example.com``)."""
    return [(reader_name(n), f"{tag}-{n}@example.com") for n in range(start, start + count)]
