"""Which real services this run may use: skip without them, fail when they are required."""

from __future__ import annotations

import os
import shutil
import socket
from urllib.parse import urlsplit

import pytest

REQUIRE_VAR = "BACKPAIN_REQUIRE_SERVICES"
CHROMIUM = "/usr/bin/chromium"


def services_required() -> bool:
    return os.environ.get(REQUIRE_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when ``BACKPAIN_REQUIRE_SERVICES=1``; never returns."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_VAR}=1 makes this a failure)", pytrace=False)
    pytest.skip(f"{reason} (set it to run this tier; {REQUIRE_VAR}=1 makes this a failure)")


def _tcp_reachable(url: str, default_port: int, timeout: float = 2.0) -> str | None:
    """None when ``url``'s host and port accept a TCP connection, else why not."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or default_port
    except ValueError as exc:
        return f"bad port in {url!r}: {exc}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc}"


def _check_postgres(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {redact(url)} refused: {str(exc).strip()}"
    return None


def _check_redis(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"Redis at {redact(url)} refused: {exc}"
    return None


def _check_amqp(url: str) -> str | None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"RabbitMQ at {redact(url)} refused: {type(exc).__name__}: {exc}"
    return None


SERVICES = {
    # name: (environment variable, default port, deep check)
    "postgres": ("BACKPAIN_TEST_POSTGRES_URL", 5432, _check_postgres),
    "redis": ("BACKPAIN_TEST_REDIS_URL", 6379, _check_redis),
    "amqp": ("BACKPAIN_TEST_AMQP_URL", 5672, _check_amqp),
}


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def service_problem(name: str) -> str | None:
    """None when service ``name`` is configured and answers, else a reason to skip or fail."""
    var, port, check = SERVICES[name]
    url = os.environ.get(var, "").strip()
    if not url:
        return f"{var} is not set"
    problem = _tcp_reachable(url, port)
    if problem:
        return f"{var}={redact(url)}: {problem}"
    return check(url)


def require_service(name: str) -> str:
    """The URL of service ``name``; skips (or fails) the test when it is not usable."""
    problem = service_problem(name)
    if problem:
        unavailable(problem)
    return os.environ[SERVICES[name][0]].strip()


def browser_problem() -> str | None:
    """None when Playwright and Debian's Chromium are both present, else what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package is not installed ({exc})"
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        return (
            f"{CHROMIUM} is missing (apt-get install chromium){'; found ' + found if found else ''}"
        )
    return None
