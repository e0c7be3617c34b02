"""The example site on private services, for the fault tier: worker, web, sweep, Django snippets.

One :class:`FaultSite` per session (made on first use, torn down when pytest finishes): a private
PostgreSQL cluster with a migrated database, a private Redis as broker (and, as the example site
configures it, cache), the scripted SMTP server, a Celery worker subprocess that tests stop, kill
and restart with the delivery timings they need, and gunicorn when a test signs up over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from .database import Database
from .faults import ScriptedSmtp
from .gating import require_service, unavailable
from .processes import Process, free_port, wait_until
from .services import PrivatePostgres, PrivateRedis
from .stack import QUEUE_VAR, ROOT, celery_worker_start, env_json, gunicorn_start, manage, site_env
from .web import ARTICLE_PATH, SIGNUP_PATH, Client, form_inputs, signup_data

ARTEFACTS = ROOT / "test-artefacts" / "realservices" / "faults"
RESULTS = ARTEFACTS / "results.jsonl"
QUEUE = "backpain-faults"
DEFAULT_WORKER: tuple[int, dict[str, str]] = (2, {})  # pool processes, timings on top of TIMINGS
_NOISE = re.compile(r"\] Step \d+ - |GET /static/")  # WeasyPrint progress, static files

# Short delivery timings for the whole tier (seconds); tests override some per worker. The lease
# is shorter than check E004 accepts (a 60 s render budget plus the SMTP waits), on purpose: a
# reclaim shows within seconds. So E004 is silenced for the tier's manage.py commands.
TIMINGS = {
    "BACKPAIN_RETRY_BACKOFF": "0.5",
    "BACKPAIN_SWEEP_GRACE": "2",
    "BACKPAIN_CLAIM_LEASE": "30",
    "EMAIL_TIMEOUT": "3",
    "DJANGO_SILENCED_SYSTEM_CHECKS": "backpain_report.E004",
}

_SNIPPET_HEAD = """
import json, os, signal, sys
import django
django.setup()
"""

# argv[1]: JSON list of {"name", "email", "mode"}; mode is "commit", "rollback" (the sign-up's
# writes are rolled back by an outer transaction), "crash" (the process is SIGKILLed in the
# on-commit hook, after COMMIT and before the publish) or "unpublished" (rows, no message).
# Prints {email: delivery id or null}.
SIGNUP = (
    _SNIPPET_HEAD
    + """
from django.db import transaction
from backpain_report.delivery import publishing
from backpain_report import selectors
from backpain_report.services import subscribers

class Rollback(Exception):
    pass

def crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

article = selectors.article_default()
done = {}
for person in json.loads(sys.argv[1]):
    mode = person.get("mode", "commit")
    def signup():
        return subscribers.subscriber_signup(
            name=person["name"], email=person["email"], article=article,
            ip="10.9.8.7", user_agent="faults", source_url="http://127.0.0.1/",
        )
    if mode == "rollback":
        try:
            with transaction.atomic():
                result = signup()
                raise Rollback
        except Rollback:
            done[person["email"]] = None
        continue
    if mode == "crash":
        publishing.publish_batches = crash
    if mode == "unpublished":
        subscribers.publish_on_commit = lambda *ids: None
    done[person["email"]] = signup().delivery.pk
print(json.dumps(done))
"""
)

# argv[1]: delivery id. Prints the admin change page of that delivery, fetched as a superuser.
ADMIN_PAGE = (
    _SNIPPET_HEAD
    + """
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

user, _ = get_user_model().objects.get_or_create(
    username="faults-admin", defaults={"is_staff": True, "is_superuser": True}
)
client = Client(SERVER_NAME="127.0.0.1")
client.force_login(user)
response = client.get(reverse("admin:backpain_report_delivery_change", args=[sys.argv[1]]))
print(json.dumps({"status": response.status_code, "body": response.content.decode()}))
"""
)


class FaultSite:
    """The example site wired to private services; see the module docstring."""

    def __init__(self, work_dir: Path) -> None:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        self.work_dir = work_dir
        self.log_dir = ARTEFACTS
        self.postgres = PrivatePostgres(log_dir=ARTEFACTS)
        self.redis = PrivateRedis(work_dir=work_dir / "redis", log_dir=ARTEFACTS)
        self.smtp = ScriptedSmtp()
        self.database: Database | None = None
        self.worker: Process | None = None
        self.worker_config: tuple[int, dict[str, str]] = DEFAULT_WORKER
        self.web: Process | None = None
        self.web_cache_url = ""
        self._cache_redis: PrivateRedis | None = None
        self.base_url = ""
        self._workers_started = 0
        self.test_name = ""
        # A module may put the site on another broker (a private RabbitMQ) and add variables to
        # every process's environment; it puts them back (None, {}) when it is done.
        self.broker_url: str | None = None
        self.extra_env: dict[str, str] = {}
        # One key for every process, as a real site has: a link the worker signs (unsubscribe,
        # download) must open at the web process.
        self.secret_key = "faults-" + secrets.token_urlsafe(32)

    # Session -----------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self.postgres.init()
        self.postgres.start()
        self.redis.start()
        self.smtp.start()
        self.database = Database(self.postgres.server_url)
        self.database.create()
        env = self.env(broker_url="memory://")
        manage(env, "migrate", "--noinput", timeout=180)
        print(f"fault site: services up, database migrated in {time.monotonic() - started:.1f} s")

    def stop(self) -> None:
        for process in (self.worker, self.web):
            if process is not None:
                process.stop()
        self.smtp.stop()
        self.redis.stop()
        if self._cache_redis is not None:
            self._cache_redis.stop()
        self.postgres.stop()

    def env(self, *, broker_url: str | None = None, **timings: Any) -> dict[str, str]:
        """The example site's environment on the private services, with ``timings`` on top."""
        assert self.database is not None
        env = site_env(
            database_url=self.database.url,
            broker_url=broker_url or self.broker_url or self.redis.url(),
            smtp_port=self.smtp.port,
            site_url=self.base_url or "http://127.0.0.1",
            var_dir=self.work_dir / "var",
        )
        env[QUEUE_VAR] = QUEUE
        env["DJANGO_SECRET_KEY"] = self.secret_key
        env.update(TIMINGS)
        env.update(self.extra_env)
        env.update({key: str(value) for key, value in timings.items()})
        return env

    # Per test --------------------------------------------------------------------------------

    def prepare(self, test_name: str) -> None:
        """Healthy services, an empty script and queue, and a worker on the default timings."""
        self.test_name = test_name
        self.redis.thaw()
        self.redis.start()
        if not self.postgres.accepts():
            self.postgres.start()
        self.smtp.reset()
        self.redis.delete(QUEUE)
        if self.worker_config != DEFAULT_WORKER or not (self.worker and self.worker.alive):
            self.worker_start()

    def finish(self) -> None:
        """Put whatever a test left half-done out of the next test's way."""
        self.redis.thaw()
        self.redis.start()
        self.smtp.reset()
        if self.database is not None and self.postgres.accepts():
            self.database.query(
                "UPDATE backpain_report_delivery SET status = 'cancelled', "
                "last_error = 'left over by a fault test' "
                "WHERE status IN ('pending', 'sending')"
            )
        self.redis.delete(QUEUE)

    # The worker ------------------------------------------------------------------------------

    def worker_start(self, *, concurrency: int = 2, **timings: Any) -> Process:
        """(Re)start the Celery worker with ``timings`` (env names, e.g. BACKPAIN_CLAIM_LEASE)."""
        self.worker_stop()
        self._workers_started += 1
        self.worker_config = (concurrency, {key: str(value) for key, value in timings.items()})
        self.worker = celery_worker_start(
            f"celery worker #{self._workers_started} ({self.test_name})",
            self.env(**timings),
            self.log_dir / f"worker-{self._workers_started}.log",
            node=f"faults-{self._workers_started}-{os.getpid()}@%h",
            queue=QUEUE,
            concurrency=concurrency,
        )
        return self.worker

    def worker_stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=20)

    def worker_kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (no warm shutdown, no ack)."""
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.popen.pid, signal.SIGKILL)
            self.worker.popen.wait(timeout=10)

    def cache_redis(self) -> PrivateRedis:
        """A second private Redis, for a cache kept apart from the broker's faults."""
        if self._cache_redis is None:
            self._cache_redis = PrivateRedis(
                work_dir=self.work_dir / "cache-redis", log_dir=self.log_dir / "cache"
            )
        self._cache_redis.start()
        return self._cache_redis

    def diagnostics(self, lines: int = 40) -> str:
        """Log tails of the worker and the web (WeasyPrint's progress lines left out)."""
        parts = []
        for process, count in ((self.worker, lines), (self.web, lines // 2)):
            if process is None:
                continue
            state = "running" if process.alive else f"exited with {process.popen.returncode}"
            try:
                text = process.log.read_text(errors="replace").splitlines()
            except OSError as exc:
                text = [f"(no log: {exc})"]
            kept = [line for line in text if not _NOISE.search(line)][-count:]
            header = f"{process.name} ({state}); last lines of {process.log}:"
            parts.append("\n".join([header, *kept]))
        return "\n\n".join(parts) or "(no worker or web process)"

    # The web ---------------------------------------------------------------------------------

    def web_start(self, *, separate_cache: bool = False) -> str:
        """gunicorn (2 sync workers) on the private services; its base URL.

        The example site keeps its cache (the sign-up throttles) on the broker's Redis; with
        ``separate_cache`` it gets a Redis of its own (``CACHE_URL``), untouched by broker faults.
        """
        cache_url = self.cache_redis().url() if separate_cache else ""
        if self.web is not None and self.web.alive and self.web_cache_url == cache_url:
            return self.base_url
        if self.web is not None:
            self.web.stop()
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = self.env(**({"CACHE_URL": cache_url} if cache_url else {}))
        self.web_cache_url = cache_url
        self.web = gunicorn_start("gunicorn (faults)", port, env, self.log_dir / "gunicorn.log")
        return self.base_url

    # Django, the sweep and the broker from outside ----------------------------------------

    def django(self, code: str, *args: str, timeout: float = 120, **timings: Any) -> Any:
        """Run a snippet in a fresh process of the site; return the JSON it printed last."""
        return env_json(self.env(**timings), code, *args, timeout=timeout)

    def signup(self, *people: tuple[str, str], mode: str = "commit") -> dict[str, int | None]:
        """Sign ``(name, email)`` people up through the service, in one process."""
        payload = [{"name": name, "email": email, "mode": mode} for name, email in people]
        return self.django(SIGNUP, json.dumps(payload))

    def signup_crashing(self, name: str, email: str) -> int:
        """Sign up in a process that is SIGKILLed after COMMIT, before publishing; its exit code."""
        payload = [{"name": name, "email": email, "mode": "crash"}]
        done = subprocess.run(
            [sys.executable, "-c", SIGNUP, json.dumps(payload)],
            env=self.env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode

    def sweep(self, **timings: Any) -> str:
        """``manage.py backpain_sweep`` once; its output."""
        return manage(self.env(**timings), "backpain_sweep", timeout=120).strip()

    def admin_change_page(self, delivery_id: int) -> dict[str, Any]:
        return self.django(ADMIN_PAGE, str(delivery_id))

    def publish(self, task: str, args: list[Any], *, copies: int = 1) -> None:
        """Publish ``copies`` messages of ``task`` to the worker's queue, back to back."""
        from celery import Celery

        broker = self.broker_url or self.redis.url()
        app = Celery("faults-publisher", broker=broker, set_as_current=False)
        app.conf.task_default_queue = QUEUE
        app.conf.broker_connection_retry_on_startup = False
        try:
            with app.connection_for_write() as connection:
                for _ in range(copies):
                    app.send_task(task, args=args, connection=connection, retry=False)
        finally:
            app.close()

    # Reading the outcome ---------------------------------------------------------------------

    def rows(self, emails: Iterable[str]) -> list[dict]:
        assert self.database is not None
        return self.database.query(
            """
            SELECT d.id, d.status, d.attempts, d.message_id, d.last_error, d.claimed_at,
                   d.enqueued_at, d.publish_failed_at, d.sent_at, s.email_canonical AS email
            FROM backpain_report_delivery d
            JOIN backpain_report_subscriber s ON s.id = d.subscriber_id
            WHERE s.email_canonical = ANY(%s)
            ORDER BY d.id
            """,
            (list(emails),),
        )

    def pending_signups(self, emails: Iterable[str]) -> list[dict]:
        """The sign-ups submitted over HTTP that no worker has turned into a subscriber yet."""
        assert self.database is not None
        return self.database.query(
            """
            SELECT id, enqueued_at, publish_failed_at, email_canonical AS email
            FROM backpain_report_pendingsignup WHERE email_canonical = ANY(%s) ORDER BY id
            """,
            (list(emails),),
        )

    def status_of(self, delivery_id: int) -> str | None:
        assert self.database is not None
        found = self.database.query(
            "SELECT status FROM backpain_report_delivery WHERE id = %s", (delivery_id,)
        )
        return found[0]["status"] if found else None

    def wait_status(self, delivery_id: int, *statuses: str, timeout: float) -> str | None:
        """The delivery's status once it is one of ``statuses`` (within ``timeout``), else None."""
        found = wait_until(lambda: self.status_of(delivery_id) in statuses, timeout=timeout)
        return self.status_of(delivery_id) if found else None

    def wait_delivered(self, emails: Iterable[str], *, timeout: float) -> Counter[str]:
        """Wait until each address got at least one message; messages per address either way."""
        wanted = {email.lower() for email in emails}

        def all_there(messages) -> bool:
            got = {r for m in messages for r in m.rcpt_tos}
            return wanted <= got

        self.smtp.sink.wait_for(all_there, timeout)
        return self.received(wanted)

    def received(self, emails: Iterable[str]) -> Counter[str]:
        wanted = {email.lower() for email in emails}
        return Counter(r for m in self.smtp.sink.messages for r in m.rcpt_tos if r in wanted)

    def explain(self, emails: Iterable[str]) -> str:
        """Rows, what arrived, and the log tails: the body of every failure message."""
        emails = list(emails)
        return (
            f"rows: {self.rows(emails)}\nreceived: {dict(self.received(emails))}\n"
            f"{self.diagnostics()}"
        )


class Reader:
    """A visitor who has the article page open and is about to sign up."""

    def __init__(self, base_url: str) -> None:
        self.client = Client(base_url, timeout=60)
        page = self.client.get(ARTICLE_PATH)
        assert page.status == 200, f"GET {ARTICLE_PATH} answered {page.status}"
        self.inputs = form_inputs(page.body)

    def submit(self, *, name: str, email: str) -> tuple[int, str, float]:
        """POST the form; (status, Location, seconds the POST took)."""
        data = signup_data(self.inputs, name=name, email=email)
        started = time.monotonic()
        response = self.client.post(SIGNUP_PATH, data)
        return response.status, response.headers.get("Location", ""), time.monotonic() - started


def address(tag: str) -> str:
    """A fresh address of this test's own."""
    return f"{tag}-{secrets.token_hex(4)}@example.com"


def fault_result(
    site: FaultSite, name: str, expected: Iterable[str], unwanted: Iterable[str] = ()
) -> dict[str, int]:
    """Print (and append to ``results.jsonl``) ``FAULT-RESULT name expected= delivered= ...``.

    ``doubled`` counts every message beyond the first to an expected address, plus every message
    to an ``unwanted`` one (an address that should have got nothing).
    """
    expected, unwanted = sorted(set(expected)), sorted(set(unwanted))
    counts = site.received([*expected, *unwanted])
    delivered = sum(1 for email in expected if counts[email] >= 1)
    result = {
        "expected": len(expected),
        "delivered": delivered,
        "lost": len(expected) - delivered,
        "doubled": sum(max(0, counts[e] - 1) for e in expected) + sum(counts[u] for u in unwanted),
    }
    print(f"FAULT-RESULT {name} " + " ".join(f"{key}={value}" for key, value in result.items()))
    with open(RESULTS, "a") as out:
        out.write(json.dumps({"fault": name, "time": time.time(), **result}) + "\n")
    return result


_SITE: FaultSite | None = None


def shared_site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> FaultSite:
    """The session's :class:`FaultSite`, started on first use; skips (or fails) when the tier
    is off or the private services cannot be made here."""
    global _SITE
    require_service("postgres")  # the tier is on (and required) exactly when the others are
    require_service("redis")
    for problem in (PrivateRedis.available(), PrivatePostgres.available()):
        if problem:
            unavailable(f"fault tier: {problem}")
    if _SITE is None:
        site = FaultSite(tmp_path_factory.mktemp("faults"))
        request.config.add_cleanup(site.stop)
        site.start()
        _SITE = site

        def forget() -> None:
            global _SITE
            _SITE = None

        request.config.add_cleanup(forget)
    return _SITE
