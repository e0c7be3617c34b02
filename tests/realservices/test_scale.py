"""The admin at scale on PostgreSQL: every list, filter, search and the dashboard under 1 s.

A private database is migrated and filled by ``backpain_populate --subscribers N`` (N from
``BACKPAIN_SCALE_N``, default 50,000; run it with 1000000 on demand). The pages are then requested
through Django's test client in a subprocess of the example site pointed at that database: one
warm-up request, then three timed ones; the median must be under ``BUDGET`` seconds. Timings and
query counts are printed (``pytest -s``) and written to ``test-artefacts/scale/``.

Run alone as ``python -m tests.realservices.test_scale`` (with the example site's environment) it
is the measuring subprocess.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from .support.database import Database
from .support.stack import manage, site_env, site_run

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(7200)]

BUDGET = 1.0
#: Measured and printed, not held to the budget: beyond what the issue asks (its range is 30 days).
INFORMATIONAL = {"dashboard (all articles, 90 days)"}
DEFAULT_N = 50_000
REPEAT = 3
STATUSES = ("pending", "sending", "sent", "failed", "cancelled")
#: The follow-up scheduler's pass over the populated list: the due readers as a share of the
#: subscribers (the issue: 100,000 of 1,000,000), and its budget: a fixed part plus a part per
#: due row, 8 s at 100,000 (measured: 5.2 s there, 3.1 s of it the one INSERT ... SELECT; the
#: tier runs on busy CI machines). A second pass (nothing new due) must take a fraction.
FOLLOWUP_DUE_SHARE = 0.10
FOLLOWUP_BUDGET_BASE = 3.0
FOLLOWUP_BUDGET_PER_ROW = 0.00005
FOLLOWUP_SECOND_SHARE = 0.25


def scale_n() -> int:
    return int(os.environ.get("BACKPAIN_SCALE_N") or DEFAULT_N)


def pages(email: str, article_id: int, report_id: int) -> list[tuple[str, str]]:
    """``(name, url)`` of every page whose answer time counts."""
    subs, dels = "/admin/backpain_report/subscriber/", "/admin/backpain_report/delivery/"
    now = datetime.datetime.now(datetime.timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week_from, week_to = today - datetime.timedelta(days=7), today + datetime.timedelta(days=1)

    def past_week(field: str) -> str:  # what DateFieldListFilter's "Past 7 days" links to
        return urlencode({f"{field}__gte": str(week_from), f"{field}__lt": str(week_to)})

    month_ago = (today - datetime.timedelta(days=30)).date().isoformat()
    found = [
        ("admin index", "/admin/"),
        ("subscribers", subs),
        ("subscribers: exact email", f"{subs}?q={email}"),
        ("subscribers: name", f"{subs}?q=Ann"),
        ("subscribers: page 50", f"{subs}?p=50"),
        ("subscribers: signed up past 7 days", f"{subs}?{past_week('created_at')}"),
        ("subscribers: signed up range", f"{subs}?created_at_from={month_ago}"),
        ("subscribers: source article", f"{subs}?source_article__id__exact={article_id}"),
        ("subscriber detail", None),
        ("deliveries", dels),
        ("deliveries: exact email", f"{dels}?q={email}"),
        ("deliveries: kind confirmation", f"{dels}?kind__exact=confirmation"),
        ("deliveries: reason resend", f"{dels}?reason__exact=resend"),
        ("deliveries: created range", f"{dels}?created_at_from={month_ago}"),
        ("deliveries: sent past 7 days", f"{dels}?{past_week('sent_at')}"),
        ("deliveries: report", f"{dels}?report__id__exact={report_id}"),
        ("dashboard (30 days)", "/admin/backpain_report/pageview/"),
        ("dashboard (one article, 30 days)", None),
        ("dashboard (all articles, 90 days)", None),
    ]
    for state in ("confirmed", "unsubscribed"):
        found += [(f"subscribers: {state} {v}", f"{subs}?{state}={v}") for v in ("yes", "no")]
    found += [(f"subscribers: last status {s}", f"{subs}?last_status={s}") for s in STATUSES]
    found += [(f"deliveries: status {s}", f"{dels}?status__exact={s}") for s in STATUSES]
    return found


def measure() -> None:
    """In the site's process: time every page of :func:`pages`, print one JSON line each."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.db.models import Max
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from backpain_report.models import Article, Subscriber

    setup_test_environment()
    user, _created = User.objects.get_or_create(
        username="scale-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    highest = Subscriber.objects.aggregate(highest=Max("pk"))["highest"] or 0
    subscriber = Subscriber.objects.filter(pk__lte=highest // 2).order_by("-pk").first()
    article = Article.objects.filter(pk=subscriber.source_article_id).get()
    today = datetime.date.today()
    dashboard = "/admin/backpain_report/pageview/?end=" + today.isoformat()
    extra = {
        "subscriber detail": f"/admin/backpain_report/subscriber/{subscriber.pk}/change/",
        "dashboard (one article, 30 days)": (
            f"{dashboard}&start={today - datetime.timedelta(days=29)}&article={article.pk}"
        ),
        "dashboard (all articles, 90 days)": (
            f"{dashboard}&start={today - datetime.timedelta(days=89)}"
        ),
    }
    client.get("/admin/")  # templates, URLconf, the session: once per process
    for name, url in pages(subscriber.email_canonical, article.pk, article.report_id):
        url = url or extra[name]
        times, queries, status = [], 0, 0
        for attempt in range(REPEAT + 1):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                if response.streaming:
                    b"".join(response.streaming_content)
                elapsed = time.perf_counter() - started
            status, queries = response.status_code, len(captured)
            times.append(elapsed)
            if attempt == 0 and elapsed > 10:
                break  # hopeless: do not spend minutes repeating it
        repeated = times[1:] or times
        print(
            json.dumps(
                {
                    "page": name,
                    "url": url,
                    "status": status,
                    "queries": queries,
                    "first": round(times[0], 4),
                    "median": round(statistics.median(repeated), 4),
                    "max": round(max(repeated), 4),
                }
            ),
            flush=True,
        )


@dataclasses.dataclass
class Populated:
    """The module's populated database: the site's environment on it and what it took."""

    env: dict[str, str]
    n: int


@pytest.fixture(scope="module")
def populated(postgres_url, tmp_path_factory) -> Iterator[Populated]:
    """A private database, migrated and populated once for the module's measurements (the
    admin's first: the follow-up measurement changes rows)."""
    n = scale_n()
    database = Database(postgres_url)
    database.create()
    try:
        env = site_env(database_url=database.url, var_dir=tmp_path_factory.mktemp("scale-var"))
        started = time.monotonic()
        manage(env, "migrate", "--noinput", timeout=300)
        migrated = time.monotonic() - started
        started = time.monotonic()
        populate_out = manage(
            env,
            "backpain_populate",
            "--subscribers",
            str(n),
            "--seed",
            "7",
            "--i-know-this-is-not-production",  # the site runs with DEBUG off
            timeout=7200,
        )
        populated = time.monotonic() - started
        print(f"\nmigrate {migrated:.1f} s; backpain_populate --subscribers {n:,}: "
              f"{populated:.1f} s\n{populate_out}")  # fmt: skip
        yield Populated(env, n)
    finally:
        database.drop()


def test_admin_pages_answer_within_a_second_at_scale(populated, artefacts_dir):
    n = populated.n
    out = site_run(populated.env, "-m", "tests.realservices.test_scale", timeout=3600)
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    out_dir = artefacts_dir / "scale"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"timings-{n}.json").write_text(json.dumps(results, indent=2))
    width = max(len(r["page"]) for r in results)
    print(f"{'page':<{width}}  status queries   first  median     max   ({n:,} subscribers)")
    for r in results:
        print(
            f"{r['page']:<{width}}  {r['status']:>6} {r['queries']:>7} "
            f"{r['first']:>7.3f} {r['median']:>7.3f} {r['max']:>7.3f}"
        )
    assert len(results) == len(pages("x", 1, 1))
    assert all(r["status"] == 200 for r in results), [r for r in results if r["status"] != 200]
    slow = [
        (r["page"], r["median"])
        for r in results
        if r["median"] >= BUDGET and r["page"] not in INFORMATIONAL
    ]
    assert not slow, f"over {BUDGET} s at {n:,} subscribers: {slow}"
    # 15, and two for the funnel's follow-up rows now that migrate gives the bundled report
    # its steps (stats.funnel_followups: the steps with their per-step figures, then the
    # unsubscribed-after lookup; both one query however many steps and readers).
    assert max(r["queries"] for r in results) <= 17


def followups_measure() -> None:
    """In the site's process: time one follow-up scheduling pass over the populated list, with
    a step per report whose due window covers :data:`FOLLOWUP_DUE_SHARE` of the sent reports,
    then a second pass (nothing new due). Prints one JSON line."""
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    from backpain_report.models import Delivery, FollowUpStep, Report, Subscriber
    from backpain_report.services.followups import OVERLAP, due_bound, followups_schedule

    started = time.perf_counter()
    Subscriber.objects.update(followups_consented=True)  # populate records no such consent
    FollowUpStep.objects.update(is_active=False)  # only the measured steps count
    consent_seconds = time.perf_counter() - started
    sent = Delivery.objects.filter(kind=Delivery.Kind.REPORT, status=Delivery.Status.SENT)
    total = sent.count()
    now = datetime.datetime.now(datetime.timezone.utc)
    delay = 1
    bound = due_bound(now, delay)
    # The step's cursor: the sent_at above which (and below the due bound) lie as many sent
    # reports as FOLLOWUP_DUE_SHARE of the list (100,000 at a million subscribers).
    wanted = int(Subscriber.objects.count() * FOLLOWUP_DUE_SHARE)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sent_at FROM backpain_report_delivery WHERE kind = 'report' AND "
            "status = 'sent' AND sent_at < %s ORDER BY sent_at DESC OFFSET %s LIMIT 1",
            [bound, wanted],
        )
        cutoff = cursor.fetchone()[0]
    due = sent.filter(sent_at__gte=cutoff, sent_at__lt=bound).count()
    report_ids = list(sent.order_by().values_list("report_id", flat=True).distinct())
    Report.objects.filter(pk__in=report_ids).update(followups_enabled=True)
    for report_id in report_ids:
        FollowUpStep.objects.create(
            report_id=report_id,
            position=99,
            delay_days=delay,
            subject="Scale: one day on",
            body="How is your back?",
            scheduled_through=cutoff + OVERLAP,  # the scheduler looks from ``cutoff`` on
        )
    # A sequence switched on again after a long pause: everything due within 60 days goes.
    max_age = int(datetime.timedelta(days=60).total_seconds())
    with override_settings(
        BACKPAIN_REPORT={**settings.BACKPAIN_REPORT, "FOLLOWUP_RESUME_MAX_AGE": max_age}
    ):
        started = time.perf_counter()
        created = followups_schedule(now)
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = followups_schedule(now)
        second = time.perf_counter() - started
    result = {
        "sent_reports": total,
        "due": due,
        "created": created,
        "created_again": again,
        "first": round(first, 3),
        "second": round(second, 3),
        "consent_update": round(consent_seconds, 3),
    }
    print(json.dumps(result), flush=True)


def test_followup_scheduling_cost_grows_with_the_due_rows(populated, artefacts_dir):
    """The scheduler at scale (issue 25): one pass with ~10 % of the sent reports due, timed,
    then a second with nothing new due, on the populated PostgreSQL database."""
    n = populated.n
    args = ("-m", "tests.realservices.test_scale", "followups")
    out = site_run(populated.env, *args, timeout=3600)
    [result] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result["subscribers"] = n
    out_dir = artefacts_dir / "scale"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"followups-{n}.json").write_text(json.dumps(result, indent=2))
    print(
        f"\nfollow-ups at {n:,} subscribers ({result['sent_reports']:,} reports sent): "
        f"{result['due']:,} due -> {result['created']:,} scheduled in {result['first']:.2f} s; "
        f"second pass {result['second']:.3f} s ({result['created_again']} scheduled)"
    )
    assert result["due"] >= FOLLOWUP_DUE_SHARE * 0.99 * n, result
    # Readers who unsubscribed or never confirmed are left out; most are due.
    assert result["due"] // 2 <= result["created"] <= result["due"], result
    budget = FOLLOWUP_BUDGET_BASE + FOLLOWUP_BUDGET_PER_ROW * result["due"]
    assert result["first"] < budget, f"first pass over {budget:.1f} s: {result}"
    assert result["created_again"] == 0, result
    assert result["second"] < max(FOLLOWUP_SECOND_SHARE * result["first"], 0.5), result


if __name__ == "__main__":
    followups_measure() if sys.argv[1:] == ["followups"] else measure()
