from __future__ import annotations

import os
import shutil
import time

import django
import pytest
from celery.contrib.testing.worker import start_worker
from django.test import override_settings

from backpain_report.models import Article, Delivery, Report, Subscriber
from backpain_report.services.content import content_seed
from tests import mail_backends
from tests.clock_shift import (  # noqa: F401  (pytest's hooks: --clock-shift-days)
    pytest_addoption,
    pytest_configure,
    pytest_report_header,
    pytest_unconfigure,
)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove this run's folder of stored files (tests/settings.py), unless a parent run owns
    it (a subprocess running tests inherits its parent's)."""
    from django.conf import settings

    if getattr(settings, "RUN_DIR_OWNED", False) and not hasattr(session.config, "workerinput"):
        shutil.rmtree(settings.RUN_DIR, ignore_errors=True)


# The Wagtail test site has settings of its own: tests/test_wagtail.py runs it in a subprocess.
collect_ignore = (
    []
    if os.environ.get("DJANGO_SETTINGS_MODULE", "").startswith("tests.wagtail_site")
    else ["wagtail_site"]
)


@pytest.fixture
def article(db) -> Article:
    """The seed article: made by the data migration, re-made after a transactional flush."""
    content_seed()
    return Article.objects.select_related("report").get(
        slug="back-pain-muscle-spasms-finding-the-culprits"
    )


@pytest.fixture
def report(article) -> Report:
    return article.report


@pytest.fixture
def make_subscriber(article):
    counter = iter(range(1, 10**6))

    def make(**fields) -> Subscriber:
        n = next(counter)
        email = fields.pop("email", f"reader{n}@example.com")
        defaults = {
            "email": email,
            "email_canonical": email.lower(),
            "name": f"Reader {n}",
            "source_article": article,
            "source_url": "https://reports.example.com/back-pain/",
        }
        return Subscriber.objects.create(**{**defaults, **fields})

    return make


@pytest.fixture
def make_delivery(make_subscriber, report):
    def make(subscriber: Subscriber | None = None, **fields) -> Delivery:
        subscriber = subscriber or make_subscriber()
        return Delivery.objects.create(
            subscriber=subscriber, report=report, edition=report.edition, **fields
        )

    return make


def _mail_settings(backend: str) -> dict:
    if django.VERSION >= (6, 1):
        return {"MAILERS": {"default": {"BACKEND": backend}}}
    return {"EMAIL_BACKEND": backend}


@pytest.fixture
def scripted_mail():
    """Mail goes through tests.mail_backends.ScriptedBackend; queue exceptions to fail sends."""
    mail_backends.scripted_failures.clear()
    with override_settings(**_mail_settings("tests.mail_backends.ScriptedBackend")):
        yield mail_backends.scripted_failures
    mail_backends.scripted_failures.clear()


@pytest.fixture(scope="session")
def celery_app():
    from tests.celery_app import app

    app.set_current()
    app.set_default()
    return app


def _queue_purge(app) -> None:
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")


def _worker_wait_idle(timeout: float = 30.0) -> bool:
    """Wait until the worker runs no task and holds none (a retry's countdown included)."""
    from celery.worker import state

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not state.active_requests and not state.reserved_requests:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def _module_celery_worker(celery_app):
    """One in-process worker per test module: stopping one takes ~4 s (its consumer's poll)."""
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10
    ) as worker:
        yield worker


@pytest.fixture
def celery_worker(_module_celery_worker, celery_app, transactional_db):
    """A real Celery worker (solo pool, in a thread) consuming the in-memory broker.

    The worker is the module's; each test starts with an empty queue and, before its database
    is flushed, waits for the worker to finish what the test gave it (then the queue is purged
    again), so no task of one test runs in the next.
    """
    _queue_purge(celery_app)
    yield _module_celery_worker
    idle = _worker_wait_idle()
    _queue_purge(celery_app)
    assert idle, "the Celery worker was still busy 30 s after the test"


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters and stored pages live in the cache: start every test with none (a
    test's database is rolled back without the signals that drop stored pages)."""
    from django.core.cache import cache

    from backpain_report.page.pagecache import pages_invalidate

    cache.clear()
    pages_invalidate()


@pytest.fixture(autouse=True)
def _current_celery_app(celery_app):
    """Every test publishes through the test site's Celery app (in-memory broker)."""
    return celery_app


@pytest.fixture
def no_broker(monkeypatch):
    """Record the delivery ids that would have been published or sent, instead of sending.

    A sign-up's message is processed at once, as the worker would (``signup_process``), and the
    delivery the worker would then send is recorded; other publishes are recorded as they go.
    """
    from backpain_report import broker
    from backpain_report.delivery import publishing
    from backpain_report.services import subscribers

    published: list[int] = []

    def process_signup(signup_id: int) -> None:
        result = subscribers.signup_process(signup_id=signup_id)
        delivery = result.delivery if result is not None else None
        if delivery is not None and delivery.status == Delivery.Status.PENDING:
            published.append(delivery.pk)

    def record(name, args=None, **options):
        if name == publishing.DELIVER_BATCH_TASK:
            published.extend(args[0])
        elif name == publishing.SIGNUP_TASK:
            process_signup(args[0])
        else:
            published.append(args[0])

    monkeypatch.setattr(broker.current_app, "send_task", record)
    monkeypatch.setattr(subscribers, "publish_signup_on_commit", process_signup)
    return published


@pytest.fixture
def shared_counter(monkeypatch):
    """A cache that counts atomically standing in for Redis, for the page-view counters
    (tests/test_throttle_caches.py runs the same counting on real Redis and Memcached)."""
    from django.core.cache.backends.locmem import LocMemCache

    from backpain_report.page import pageviews

    counter = LocMemCache("page-views", {})
    counter.clear()
    monkeypatch.setattr(pageviews, "_counter_cache", lambda: counter)
    return counter


@pytest.fixture
def clock():
    """The clock, stopped at the real now and moved by the test (``clock.shift(seconds)``,
    ``clock.move_to(when)``)."""
    import time_machine
    from django.utils import timezone

    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


@pytest.fixture
def sequence(report):
    """The report's follow-up sequence switched on, with one step (2 days, every language)."""
    from backpain_report.models import FollowUpStep

    report.followups_enabled = True
    report.save()
    return FollowUpStep.objects.create(
        report=report, position=1, delay_days=2, subject="How is your back?", body="Text."
    )
