"""The example site on real services: migrations, gunicorn and a Celery worker as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.example_env import EXAMPLE_SITE_ENV

from .processes import Process, free_port, log_contains

ROOT = Path(__file__).resolve().parents[3]
MANAGE = ROOT / "example_project" / "manage.py"
FRONT_WSGI = "tests.realservices.support.wsgi:application"  # the front-end stand-in
SHARED_QUEUE = "celery"  # Celery's default, used when the site cannot be given a queue name
QUEUE_VAR = "CELERY_TASK_DEFAULT_QUEUE"

# Variables of the parent that must not leak into the example site.
_SCRUB = ("DJANGO_SETTINGS_MODULE", *EXAMPLE_SITE_ENV, "EXAMPLE_VAR_DIR", QUEUE_VAR)


def site_env(
    *,
    database_url: str,
    var_dir: Path,
    broker_url: str = "memory://",
    smtp_port: int = 25,
    site_url: str = "http://127.0.0.1",
) -> dict[str, str]:
    """The environment a production-like example site runs with; with no broker and no mail
    server unless given (enough for ``manage.py`` and snippets)."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "EMAIL_TIMEOUT": "10",
            "SITE_URL": site_url,
            "EXAMPLE_VAR_DIR": str(var_dir),
            "DJANGO_DEBUG": "0",
            "EXAMPLE_DEVTOOLS": "1",  # backpain_populate, backpain_bench (benchmarks/devtools/)
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECRET_KEY": "realservices-" + secrets.token_urlsafe(32),
        }
    )
    return env


def site_run(
    env: dict[str, str],
    *args: str,
    timeout: float = 120.0,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> str:
    """Run ``python args`` in the checkout with ``env`` and no stdin (inside what ``wrap`` puts
    around the command line, e.g. a host's network namespace); its output, or raise with the
    end of its output if it fails or takes over ``timeout`` seconds."""
    what = "a Python snippet" if args[0] == "-c" else " ".join(args)
    argv = [sys.executable, *args]
    try:
        done = subprocess.run(
            wrap(argv) if wrap else argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what} took over {timeout:.0f} s") from exc
    if done.returncode:
        raise RuntimeError(
            f"{what} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def manage(env: dict[str, str], *args: str, timeout: float = 120.0) -> str:
    """Run ``example_project/manage.py`` with ``args``; raise with its output on failure."""
    return site_run(env, str(MANAGE), *args, timeout=timeout)


PROBE_QUEUE = """
import django
django.setup()
from example_project.celery import app
print(app.conf.task_default_queue)
"""


def snippet_json(database_url: str, var_dir: Path, code: str, *args: str) -> dict:
    """Run ``code`` (Python, Django set up by the snippet) in a subprocess of the example site
    on ``database_url`` with no broker or mail, and return the JSON of its last output line."""
    return env_json(site_env(database_url=database_url, var_dir=var_dir), code, *args)


def env_json(env: dict[str, str], code: str, *args: str, timeout: float = 120) -> Any:
    """Run ``code`` (Python) in a subprocess with ``env``; the JSON of its last output line."""
    return json.loads(site_run(env, "-c", code, *args, timeout=timeout).strip().splitlines()[-1])


def site_queue(env: dict[str, str], wanted: str) -> str:
    """``wanted`` if the example site takes its queue name from ``$CELERY_TASK_DEFAULT_QUEUE``.

    A queue of our own keeps this tier apart from any other worker on a shared broker; a site
    that ignores the variable publishes to Celery's shared default queue, used then instead.
    """
    found = site_run({**env, QUEUE_VAR: wanted}, "-c", PROBE_QUEUE, timeout=60).strip()
    return wanted if found == wanted else SHARED_QUEUE


def _redis_db(broker_url: str) -> str:
    return (urlsplit(broker_url).path or "/0").strip("/") or "0"


@contextlib.contextmanager
def _redis_client(broker_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _amqp_channel(broker_url: str) -> Iterator[Any]:
    """A channel on ``broker_url``; a queue that does not exist is no error (nothing to do)."""
    from kombu import Connection

    with (
        Connection(broker_url, connect_timeout=5) as conn,
        contextlib.suppress(*conn.channel_errors),
    ):
        yield conn.default_channel


def delete_queue(broker_url: str, queue: str) -> None:
    """Remove a queue of our own, and its webhook queue (the worker consumes both), from the
    broker after the run (RabbitMQ keeps durable ones)."""
    if queue == SHARED_QUEUE:
        return
    for name in (queue, f"{queue}.webhooks"):
        if broker_url.startswith(("redis://", "rediss://")):
            with _redis_client(broker_url) as client:
                client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")
            continue
        with _amqp_channel(broker_url) as channel:  # one each: a missing queue closes it
            channel.queue_delete(name)


def purge_broker(broker_url: str, queue: str) -> None:
    """Empty the worker's queue so nothing left over from an earlier run reaches our worker.

    On the shared default queue, a Redis URL naming a database other than 0 is taken to be
    ours: that database is flushed.
    """
    if broker_url.startswith(("redis://", "rediss://")):
        with _redis_client(broker_url) as client:
            if queue == SHARED_QUEUE and _redis_db(broker_url) != "0":
                client.flushdb()
            else:
                client.delete(queue)
        return
    with _amqp_channel(broker_url) as channel:
        channel.queue_purge(queue)


# The site's processes: every gunicorn and Celery worker of the tiers and the benchmarks -------


def _gunicorn_extra_args() -> list[str]:
    """Gunicorn 25.1+ opens a control socket at one shared path per user: not for test sites."""
    import gunicorn.config

    return ["--no-control-socket"] if hasattr(gunicorn.config, "ControlSocketDisable") else []


def gunicorn_argv(bind: str, *, wsgi: str = FRONT_WSGI, access_log: bool = True) -> list[str]:
    """gunicorn with 2 sync workers serving ``wsgi`` on ``bind`` (``host:port``), logging to
    its output (``access_log`` False leaves the access log out, as a load test wants)."""
    access = ["--access-logfile", "-"] if access_log else []
    return [
        sys.executable, "-m", "gunicorn", wsgi, "-b", bind, "-w", "2", "--timeout", "60",
        *access, "--error-logfile", "-", *_gunicorn_extra_args(),
    ]  # fmt: skip


def gunicorn_wait(web: Process, base_url: str, *, timeout: float = 60) -> None:
    """Wait until ``web`` serves ``base_url``'s ``/``; raise with its log tail if it does not."""
    web.wait_ready(lambda: http_ok(base_url + "/"), timeout=timeout, what="serving /")


def gunicorn_start(
    name: str,
    port: int,
    env: dict[str, str],
    log: Path,
    *,
    wsgi: str = FRONT_WSGI,
    access_log: bool = True,
) -> Process:
    """gunicorn (:func:`gunicorn_argv`) on 127.0.0.1:``port``, once it serves ``/``."""
    web = Process(
        name,
        gunicorn_argv(f"127.0.0.1:{port}", wsgi=wsgi, access_log=access_log),
        env=env,
        cwd=ROOT,
        log=log,
    )
    gunicorn_wait(web, f"http://127.0.0.1:{port}")
    return web


def celery_worker_argv(
    node: str,
    *,
    queue: str | None = None,
    concurrency: int = 2,
    max_tasks_per_child: int | None = None,
) -> list[str]:
    """The example site's prefork Celery worker named ``node``, on ``queue`` if given."""
    argv = [
        sys.executable, "-m", "celery", "-A", "example_project", "worker",
        "--pool", "prefork", "--concurrency", str(concurrency), "-l", "info",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if max_tasks_per_child is not None:
        argv += ["--max-tasks-per-child", str(max_tasks_per_child)]
    # The default queue and the webhook events' own (example_project/settings.py names it).
    argv += ["-Q", f"{queue},{queue}.webhooks" if queue is not None else "celery,backpain_webhooks"]
    return [*argv, "-n", node]


def celery_beat_argv() -> list[str]:
    """The example site's Celery beat (its schedule: the sweep)."""
    return [sys.executable, "-m", "celery", "-A", "example_project", "beat", "-l", "info"]


def celery_worker_wait(worker: Process, *, timeout: float = 60) -> None:
    """Wait until ``worker`` logged that it is ready; raise with its log tail if it does not."""
    worker.wait_ready(lambda: log_contains(worker.log, " ready."), timeout=timeout, what="ready")


def celery_worker_start(
    name: str,
    env: dict[str, str],
    log: Path,
    *,
    node: str,
    queue: str | None = None,
    concurrency: int = 2,
    max_tasks_per_child: int | None = None,
    wait: float | None = 60,
) -> Process:
    """A Celery worker (:func:`celery_worker_argv`), ready within ``wait`` seconds (not waited
    for when ``wait`` is None)."""
    argv = celery_worker_argv(
        node, queue=queue, concurrency=concurrency, max_tasks_per_child=max_tasks_per_child
    )
    worker = Process(name, argv, env=env, cwd=ROOT, log=log)
    if wait is not None:
        celery_worker_wait(worker, timeout=wait)
    return worker


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Stack:
    """gunicorn + a Celery worker of the example site, on one broker."""

    broker: str
    broker_url: str
    queue: str
    base_url: str
    env: dict[str, str]
    web: Process
    worker: Process

    def diagnostics(self, lines: int = 60) -> str:
        return f"{self.worker.describe(lines)}\n\n{self.web.describe(lines // 2)}"

    def stop(self) -> None:
        for process in (self.worker, self.web):
            process.stop()
        delete_queue(self.broker_url, self.queue)


def start_stack(
    *,
    broker: str,
    broker_url: str,
    database_url: str,
    smtp_port: int,
    work_dir: Path,
    log_dir: Path,
    queue: str,
) -> Stack:
    """Start gunicorn (2 workers) and a prefork Celery worker (2 processes); wait for both.

    Their logs go to ``log_dir`` (``worker.log``, ``gunicorn.log``), kept after the run.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    var_dir = work_dir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    env = site_env(
        database_url=database_url,
        broker_url=broker_url,
        smtp_port=smtp_port,
        site_url=base_url,
        var_dir=var_dir,
    )
    queue = site_queue(env, queue)
    env[QUEUE_VAR] = queue
    purge_broker(broker_url, queue)
    started = time.monotonic()
    worker = celery_worker_start(
        f"celery worker ({broker})",
        env,
        log_dir / "worker.log",
        wait=None,  # it starts while gunicorn does
        node=f"realservices-{broker}-{secrets.token_hex(3)}@%h",
        queue=queue,
    )
    web: Process | None = None
    try:
        web = gunicorn_start(f"gunicorn ({broker})", port, env, log_dir / "gunicorn.log")
        celery_worker_wait(worker)
    except BaseException:
        for process in (worker, web):
            if process is not None:
                process.stop()
        delete_queue(broker_url, queue)
        raise
    stack = Stack(broker, broker_url, queue, base_url, env, web, worker)
    print(
        f"[{broker}] gunicorn and worker ready in {time.monotonic() - started:.1f} s "
        f"(queue {queue!r})"
    )
    return stack
