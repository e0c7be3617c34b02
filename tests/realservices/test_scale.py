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

import datetime
import json
import os
import statistics
import time
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


def test_admin_pages_answer_within_a_second_at_scale(postgres_url, tmp_path, artefacts_dir):
    n = scale_n()
    database = Database(postgres_url)
    database.create()
    try:
        env = site_env(database_url=database.url, var_dir=tmp_path / "var")
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
        out = site_run(env, "-m", "tests.realservices.test_scale", timeout=3600)
        results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    finally:
        database.drop()
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
    assert max(r["queries"] for r in results) <= 15


if __name__ == "__main__":
    measure()
