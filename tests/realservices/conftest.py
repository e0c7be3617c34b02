"""Fixtures of the real-services tier: service URLs, a private database, SMTP, site + worker.

Everything expensive is session-scoped and started once: the database, the SMTP server, and one
stack (gunicorn + Celery worker) per broker, started the first time a test asks for it. Tests
keep apart by using addresses of their own, never by resetting shared state.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support.database import Database
from .support.gating import CHROMIUM, browser_problem, require_service, unavailable
from .support.processes import free_port
from .support.smtp import SmtpServer
from .support.stack import ROOT, Stack, manage, site_env, start_stack
from .support.web import reader_ip

ARTEFACTS = ROOT / "test-artefacts"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return require_service("postgres")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_service("redis")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return require_service("amqp")


@pytest.fixture(scope="session")
def rs_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("realservices")


@pytest.fixture(scope="session")
def rs_database(postgres_url: str, rs_workdir: Path) -> Iterator[Database]:
    """A fresh PostgreSQL database, migrated by the example site's ``manage.py migrate``."""
    database = Database(postgres_url)
    database.create()
    try:
        started = time.monotonic()
        env = site_env(database_url=database.url, var_dir=rs_workdir / "migrate-var")
        manage(env, "migrate", "--noinput", timeout=180)
        manage(env, "createcachetable", timeout=60)
        print(f"database {database.name} migrated in {time.monotonic() - started:.1f} s")
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack_for(
    rs_database: Database,
    smtp_server: SmtpServer,
    rs_workdir: Path,
) -> Iterator[Callable[[str], Stack]]:
    """``stack_for("redis")`` / ``stack_for("amqp")``: the running stack on that broker."""
    stacks: dict[str, Stack] = {}

    def get(broker: str) -> Stack:
        if broker not in stacks:
            broker_url = require_service(broker)  # skips (or fails) like the URL fixtures
            stacks[broker] = start_stack(
                broker=broker,
                broker_url=broker_url,
                database_url=rs_database.url,
                smtp_port=smtp_server.port,
                work_dir=rs_workdir / broker,
                log_dir=ARTEFACTS / "realservices" / broker,
                queue=f"backpain-rs-{secrets.token_hex(4)}",
            )
        return stacks[broker]

    try:
        yield get
    finally:
        for stack in stacks.values():
            stack.stop()


@pytest.fixture(scope="session")
def redis_stack(stack_for: Callable[[str], Stack]) -> Stack:
    return stack_for("redis")


@pytest.fixture(scope="session")
def artefacts_dir() -> Path:
    ARTEFACTS.mkdir(exist_ok=True)
    return ARTEFACTS


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright; skipped (or failed) when either is missing."""
    problem = browser_problem()
    if problem:
        unavailable(f"browser tier: {problem}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(
        viewport={"width": 1280, "height": 900},
        locale="en-GB",
        extra_http_headers={"X-Real-IP": reader_ip()},  # one reader of its own (wsgi.RealIP)
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def site(request, tmp_path_factory):
    """The fault tier's private stack (``faults_site.FaultSite``), made ready for this test."""
    from .support.faults_site import shared_site

    site = shared_site(request, tmp_path_factory)
    site.prepare(request.node.name)
    yield site
    site.finish()
