"""Does a sign-up's timing tell whether an address is on the list? Median time per kind.

    .venv/bin/python benchmarks/signup_timing.py [--rounds 300] [--database-url postgres://...]

Posts the sign-up form through Django's test client (the whole middleware stack and view, the
real publish to the test site's in-memory broker) for five kinds of address, interleaved round
by round, each kind taking each place in the round in turn, so drift hits every kind alike: a
new address each time, a known subscriber, a confirmed one, an unsubscribed one, and one emailed
within the per-address window. Prints the median and p90 per kind and each median's ratio to
the new address's; exits 1 when any ratio is outside ``--tolerance`` (default 0.10). SQLite by
default; ``--database-url`` runs it on PostgreSQL (a throw-away ``test_…`` database is created
and dropped).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("new", "known", "confirmed", "unsubscribed", "recently emailed")


def _setup(database_url: str | None) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    if database_url:
        import dj_database_url

        settings.DATABASES["default"] = {
            **dj_database_url.parse(database_url),
            "TEST": {"NAME": f"test_bench_{os.getpid()}"},
        }
    django.setup()
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_IP": (10**9, 3600)}


def _addresses() -> dict[str, str]:
    from django.utils import timezone

    from backpain_report.models import Delivery, Subscriber
    from backpain_report.services.content import content_seed

    _article, report = content_seed()
    now = timezone.now()
    fields = {
        "known": {},
        "confirmed": {"confirmed_at": now},
        "unsubscribed": {"unsubscribed_at": now},
        "recently emailed": {},
    }
    emails = {}
    for kind, extra in fields.items():
        email = f"{kind.replace(' ', '-')}@example.com"
        subscriber = Subscriber.objects.create(
            email=email, email_canonical=email, name="Reader", **extra
        )
        emails[kind] = email
        if kind == "recently emailed":
            Delivery.objects.create(
                subscriber=subscriber, report=report, edition=1, status="sent", sent_at=now
            )
    return emails


def measure(rounds: int) -> dict[str, list[float]]:
    """Seconds per sign-up POST, per kind, over ``rounds`` interleaved rounds."""
    from django.test import Client
    from django.urls import reverse

    url = reverse("backpain_report:signup")
    client = Client()
    known = _addresses()
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for n in range(rounds + 20):  # the first 20 rounds warm up caches and connections
        for i in range(len(KINDS)):  # each kind takes each place in the round in turn
            kind = KINDS[(n + i) % len(KINDS)]
            email = known.get(kind) or f"new-{n}@example.com"
            data = {"name": "Reader", "email": email, "consent": "on"}
            started = time.perf_counter()
            response = client.post(url, data)
            took = time.perf_counter() - started
            assert response.status_code == 303, response.status_code
            if n >= 20:
                times[kind].append(took)
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--database-url", default=os.environ.get("BACKPAIN_BENCH_DATABASE_URL"))
    args = parser.parse_args(argv)
    _setup(args.database_url)
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        times = measure(args.rounds)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    base = statistics.median(times["new"])
    worst = 0.0
    print(f"sign-up POST, {args.rounds} rounds, {connection.vendor}")
    print("| address | median | p90 | ratio to new |")
    print("| --- | --- | --- | --- |")
    for kind in KINDS:
        median = statistics.median(times[kind])
        p90 = statistics.quantiles(times[kind], n=10)[-1]
        worst = max(worst, abs(median / base - 1))
        print(f"| {kind} | {median * 1000:.2f} ms | {p90 * 1000:.2f} ms | {median / base:.3f}x |")
    ok = worst <= args.tolerance
    print(f"largest difference {worst:.1%} ({'within' if ok else 'OUTSIDE'} {args.tolerance:.0%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
