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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.example_env import EXAMPLE_SITE_ENV

from .processes import Process, free_port, log_contains

ROOT = Path(__file__).resolve().parents[3]
MANAGE = ROOT / "example_project" / "manage.py"
SHARED_QUEUE = "celery"  # Celery's default, used when the site cannot be given a queue name
QUEUE_VAR = "CELERY_TASK_DEFAULT_QUEUE"

# Variables of the parent that must not leak into the example site.
_SCRUB = ("DJANGO_SETTINGS_MODULE", *EXAMPLE_SITE_ENV, "EXAMPLE_VAR_DIR", QUEUE_VAR)


def site_env(
    *, database_url: str, broker_url: str, smtp_port: int, site_url: str, var_dir: Path
) -> dict[str, str]:
    """The environment a production-like example site runs with."""
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


def manage(env: dict[str, str], *args: str, timeout: float = 120.0) -> str:
    """Run ``example_project/manage.py`` with ``args``; raise with its output on failure."""
    argv = [sys.executable, str(MANAGE), *args]
    try:
        done = subprocess.run(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(argv)} took over {timeout:.0f} s") from exc
    if done.returncode:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
    return done.stdout


PROBE_QUEUE = """
import django
django.setup()
from example_project.celery import app
print(app.conf.task_default_queue)
"""


def snippet_json(database_url: str, var_dir: Path, code: str, *args: str) -> dict:
    """Run ``code`` (Python, Django set up by the snippet) in a subprocess of the example site
    on ``database_url`` with no broker or mail, and return the JSON of its last output line."""
    env = site_env(
        database_url=database_url,
        broker_url="memory://",
        smtp_port=25,
        site_url="http://127.0.0.1",
        var_dir=var_dir,
    )
    return env_json(env, code, *args)


def env_json(env: dict[str, str], code: str, *args: str) -> dict:
    """Run ``code`` (Python) in a subprocess with ``env``; the JSON of its last output line."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def site_queue(env: dict[str, str], wanted: str) -> str:
    """``wanted`` if the example site takes its queue name from ``$CELERY_TASK_DEFAULT_QUEUE``.

    A queue of our own keeps this tier apart from any other worker on a shared broker; a site
    that ignores the variable publishes to Celery's shared default queue, used then instead.
    """
    done = subprocess.run(
        [sys.executable, "-c", PROBE_QUEUE],
        env={**env, QUEUE_VAR: wanted},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode:
        raise RuntimeError(f"the example site did not start:\n{done.stderr[-3000:]}")
    return wanted if done.stdout.strip() == wanted else SHARED_QUEUE


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
    """Remove a queue of our own from the broker after the run (RabbitMQ keeps durable ones)."""
    if queue == SHARED_QUEUE:
        return
    if broker_url.startswith(("redis://", "rediss://")):
        with _redis_client(broker_url) as client:
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        return
    with _amqp_channel(broker_url) as channel:
        channel.queue_delete(queue)


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


def _gunicorn_extra_args() -> list[str]:
    """Gunicorn 25.1+ opens a control socket at one shared path per user: not for test sites."""
    import gunicorn.config

    return ["--no-control-socket"] if hasattr(gunicorn.config, "ControlSocketDisable") else []


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


def _start_web(broker: str, port: int, env: dict[str, str], log_dir: Path) -> Process:
    """gunicorn with 2 sync workers serving the example site (plus static files)."""
    return Process(
        f"gunicorn ({broker})",
        [
            sys.executable, "-m", "gunicorn", "tests.realservices.support.wsgi:application",
            "-b", f"127.0.0.1:{port}", "-w", "2", "--timeout", "60",
            "--access-logfile", "-", "--error-logfile", "-", *_gunicorn_extra_args(),
        ],
        env=env,
        cwd=ROOT,
        log=log_dir / "gunicorn.log",
    )  # fmt: skip


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
    worker = Process(
        f"celery worker ({broker})",
        [
            sys.executable, "-m", "celery", "-A", "example_project", "worker",
            "--pool", "prefork", "--concurrency", "2", "-l", "info",
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "-Q", queue, "-n", f"realservices-{broker}-{secrets.token_hex(3)}@%h",
        ],
        env=env,
        cwd=ROOT,
        log=log_dir / "worker.log",
    )  # fmt: skip
    try:
        web = _start_web(broker, port, env, log_dir)
    except BaseException:
        worker.stop()
        raise
    stack = Stack(
        broker=broker,
        broker_url=broker_url,
        queue=queue,
        base_url=base_url,
        env=env,
        web=web,
        worker=worker,
    )
    started = time.monotonic()
    try:
        worker.wait_ready(lambda: log_contains(worker.log, " ready."), timeout=60, what="ready")
        web.wait_ready(lambda: http_ok(base_url + "/"), timeout=60, what="serving /")
    except BaseException:
        stack.stop()
        raise
    print(
        f"[{broker}] gunicorn and worker ready in {time.monotonic() - started:.1f} s "
        f"(queue {queue!r})"
    )
    return stack
