"""Fill a database with realistic subscribers, deliveries and page views, fast (scale tests).

Rows are written in batches with ``COPY`` on PostgreSQL (psycopg) and multi-row ``INSERT`` on
other databases, bypassing model instances; sign-up times are spread over the last ``days``
days in ascending id order, as a real table grows. The mix: most readers confirm, a few
unsubscribe; most deliveries are sent (some downloaded), a few failed or cancelled. Only final
states: a ``pending`` or ``sending`` row would be picked up by the sweep and really mailed to
the made-up address.
"""

from __future__ import annotations

import datetime
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.db.models import Max, Model
from django.utils import timezone

from backpain_report.conf import app_settings
from backpain_report.models import Article, Delivery, PageView, Subscriber
from backpain_report.services.content import content_seed
from backpain_report.services.deliveries import CANCELLED_BY_STAFF

BATCH_SIZE = 10_000
FIRST = "Ann Ben Chloe Dan Eva Finn Grace Hugo Isla Jack Kate Liam Mia Noah Olga Paul Rosa Sam"
LAST = "Lee Khan Smith Jones Brown Garcia Müller Rossi Novak Silva Kowalski Nguyen O'Neill Park"
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/18.0 Safari",
)
ERRORS = (
    "SMTPRecipientsRefused: 550 5.1.1 mailbox unavailable",
    "SMTPDataError: 554 5.7.1 message rejected as spam",
    "SMTPServerDisconnected: Connection unexpectedly closed",
)

SUBSCRIBER_COLUMNS = (
    "email", "email_canonical", "name", "source_article_id", "source_url", "consent_text",
    "consent_version", "consented_at", "consent_ip", "consent_user_agent", "created_at",
    "confirmed_at", "unsubscribed_at", "language",
)  # fmt: skip
DELIVERY_COLUMNS = (
    "subscriber_id", "report_id", "edition", "reason", "kind", "status", "attempts",
    "next_attempt_at", "claimed_at", "enqueued_at", "publish_failed_at", "last_error",
    "sent_at", "message_id", "downloaded_at", "link_version", "created_at", "updated_at",
)  # fmt: skip


@dataclass
class PopulateResult:
    subscribers: int = 0
    deliveries: int = 0
    page_views: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def write_rows(
    model: type[Model], columns: Sequence[str], rows: Sequence[tuple], *, using: str
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``model``'s table, no instances."""
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        adapt = connection.ops.adapt_datetimefield_value
        converted = [
            tuple(adapt(v) if isinstance(v, datetime.datetime) else v for v in row) for row in rows
        ]
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders})", converted)


class _Generator:
    """Realistic rows from one seeded random source."""

    def __init__(self, *, total: int, days: int, seed: int | None, articles: list[Article]):
        self.rng = random.Random(seed)
        self.token = secrets.token_hex(3)
        self.now = timezone.now()
        self.start = self.now - datetime.timedelta(days=days)
        self.step = (self.now - self.start) / max(total, 1)
        self.articles = articles
        self.first, self.last = FIRST.split(), LAST.split()

    def subscriber(self, n: int) -> tuple:
        rng = self.rng
        first, last = rng.choice(self.first), rng.choice(self.last)
        email = f"{first}.{last}.{self.token}{n}@{rng.choice(DOMAINS)}".replace("'", "")
        created = self.start + self.step * n + datetime.timedelta(seconds=rng.random())
        confirmed = created + datetime.timedelta(minutes=rng.expovariate(1 / 90))
        confirmed = confirmed if rng.random() < 0.85 and confirmed < self.now else None
        gone = created + datetime.timedelta(days=rng.expovariate(1 / 20))
        unsubscribed = gone if rng.random() < 0.05 and gone < self.now else None
        article = rng.choice(self.articles)
        return (
            email, email.lower(), f"{first} {last}", article.pk,
            f"https://reports.example.com/back-pain/{article.slug}/",
            str(app_settings.CONSENT_TEXT), str(app_settings.CONSENT_VERSION), created,
            f"sha256:{rng.getrandbits(128):032x}", rng.choice(AGENTS), created, confirmed,
            unsubscribed, "",  # language: the site's LANGUAGE_CODE
        )  # fmt: skip

    def delivery(self, subscriber_id: int, row: tuple, report_of: dict[int, Any]) -> tuple:
        rng = self.rng
        created = row[10]
        report = report_of[row[3]]
        roll = rng.random()
        second = datetime.timedelta(seconds=1)
        sent = downloaded = claimed = None
        error, message_id, attempts = "", "", 1
        if row[12] is not None and roll < 0.3:
            status, error, attempts = Delivery.Status.CANCELLED, "Unsubscribed before sending.", 0
        elif roll < 0.92:
            status, claimed = Delivery.Status.SENT, created + second
            sent = created + second * rng.randint(2, 30)
            message_id = f"<{rng.getrandbits(64):016x}.{subscriber_id}@example.com>"
            if rng.random() < 0.4:
                downloaded = sent + datetime.timedelta(hours=rng.expovariate(1 / 6))
                downloaded = downloaded if downloaded < self.now else None
        elif roll < 0.96:
            status, claimed, attempts = Delivery.Status.FAILED, created + second * 600, 5
            error = rng.choice(ERRORS)
        else:
            status, error, attempts = Delivery.Status.CANCELLED, CANCELLED_BY_STAFF, 0
        updated = max(t for t in (created, claimed, sent, downloaded) if t is not None)
        return (
            subscriber_id, report.pk, report.edition, Delivery.Reason.SIGNUP,
            Delivery.Kind.REPORT, status, attempts, None, claimed, created, None, error, sent,
            message_id, downloaded, 1, created, updated,
        )  # fmt: skip


def _articles() -> list[Article]:
    with_report = Article.objects.filter(report__isnull=False).select_related("report")
    articles = list(with_report.filter(status=Article.Status.PUBLISHED))
    if not articles:
        content_seed()
        articles = list(with_report)
    return articles


def populate(
    *,
    subscribers: int,
    days: int = 365,
    batch_size: int = BATCH_SIZE,
    seed: int | None = None,
    using: str = "default",
    progress: Callable[[str], None] | None = None,
) -> PopulateResult:
    """Add ``subscribers`` subscribers, one sign-up delivery each, and daily page views.

    Returns the counts and the seconds each phase took; ``progress`` gets a line per batch.
    """
    result = PopulateResult()
    articles = _articles()
    report_of = {article.pk: article.report for article in articles}
    gen = _Generator(total=subscribers, days=days, seed=seed, articles=articles)
    signups_per_day: Counter[tuple[int, datetime.date]] = Counter()
    started = time.monotonic()
    written_subscribers = written_deliveries = 0.0
    for first in range(0, subscribers, batch_size):
        rows = [gen.subscriber(n) for n in range(first, min(first + batch_size, subscribers))]
        with transaction.atomic(using=using):
            high = Subscriber.objects.using(using).aggregate(m=Max("pk"))["m"] or 0
            t0 = time.monotonic()
            write_rows(Subscriber, SUBSCRIBER_COLUMNS, rows, using=using)
            t1 = time.monotonic()
            ids = list(
                Subscriber.objects.using(using)
                .filter(pk__gt=high)
                .order_by("pk")
                .values_list("pk", flat=True)[: len(rows)]
            )
            pairs = zip(ids, rows, strict=True)
            deliveries = [gen.delivery(pk, row, report_of) for pk, row in pairs]
            write_rows(Delivery, DELIVERY_COLUMNS, deliveries, using=using)
            t2 = time.monotonic()
        written_subscribers += t1 - t0
        written_deliveries += t2 - t1
        for row in rows:
            signups_per_day[(row[3], timezone.localdate(row[10]))] += 1
        result.subscribers += len(rows)
        result.deliveries += len(deliveries)
        if progress:
            progress(f"{result.subscribers:,} subscribers ({time.monotonic() - started:.1f} s)")
    result.timings["subscribers"] = written_subscribers
    result.timings["deliveries"] = written_deliveries
    t0 = time.monotonic()
    views = [
        PageView(article_id=article, day=day, views=n * gen.rng.randint(12, 40))
        for (article, day), n in signups_per_day.items()
    ]
    PageView.objects.using(using).bulk_create(views, batch_size=2000, ignore_conflicts=True)
    result.page_views = len(views)
    result.timings["page_views"] = time.monotonic() - t0
    t0 = time.monotonic()
    analyze(using=using)
    result.timings["analyze"] = time.monotonic() - t0
    result.timings["total"] = time.monotonic() - started
    return result


def analyze(*, using: str = "default") -> None:
    """Refresh the planner's statistics (and row estimates) of the app's big tables.

    On PostgreSQL also VACUUM, which marks the pages all-visible so index-only scans work at
    once (autovacuum would do it later). Needs autocommit (not inside ``atomic``).
    """
    connection = connections[using]
    command = "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
    tables = [m._meta.db_table for m in (Subscriber, Delivery, PageView)]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"{command} {connection.ops.quote_name(table)}")
