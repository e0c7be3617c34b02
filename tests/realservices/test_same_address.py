"""50 concurrent sign-ups of one address in mixed case, on PostgreSQL: one subscriber, one
email, never a 500 — over HTTP (throttles in Redis) and straight at the service (no throttle, so
the database's unique constraints alone must hold)."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.samples import reader_name

from .support.stack import snippet_json
from .support.web import sign_up

pytestmark = pytest.mark.services

ATTEMPTS = 50
SETTLE = 5.0  # seconds to wait after the first message, to see any second one arrive


def mixed_case(address: str, n: int) -> str:
    """The same address with its letters' case flipped by the bits of ``n``."""
    return "".join(
        ch.upper() if ch.isalpha() and (n >> (i % 12)) & 1 else ch for i, ch in enumerate(address)
    )


def test_same_address_over_http(redis_stack, smtp_server, rs_database):
    """Fault: 50 readers' browsers post one address at once (mixed case, different IPs).
    Expected: every answer is the normal 303, one subscriber, one delivery, one email."""
    address = f"same-{secrets.token_hex(3)}@example.com"

    def submit(n: int) -> int:
        return sign_up(
            redis_stack.base_url, name=reader_name(n), email=mixed_case(address, n)
        ).status

    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        statuses = Counter(pool.map(submit, range(ATTEMPTS)))
    assert statuses == {303: ATTEMPTS}, f"answers: {dict(statuses)}"
    arrived = smtp_server.sink.wait_for_count({address}, 1, timeout=60)
    assert arrived, f"no message for {address}\n{redis_stack.diagnostics()}"
    time.sleep(SETTLE)
    assert len(smtp_server.sink.to(address)) == 1
    subscribers = rs_database.query(
        "SELECT id FROM backpain_report_subscriber WHERE email_canonical = %s", [address]
    )
    assert len(subscribers) == 1
    assert len(rs_database.deliveries_for([address])) == 1


# Runs in a subprocess on the example site's settings and the tier's PostgreSQL database.
CONCURRENT_SERVICE_CALLS = """
import json, sys, threading
import django
django.setup()
from django.db import connection
from backpain_report.delivery import publishing
from backpain_report.services import subscribers
from backpain_report.models import Article, Delivery, Subscriber

publishing.publish_deliveries = lambda ids, countdown=None: 0  # no broker: count rows only
address, attempts = sys.argv[1], int(sys.argv[2])
article = Article.objects.published().get()
barrier = threading.Barrier(attempts)
errors = []

def sign_up(n):
    try:
        barrier.wait()
        email = "".join(c.upper() if c.isalpha() and (n >> (i % 12)) & 1 else c
                        for i, c in enumerate(address))
        subscribers.subscriber_signup(name=f"Reader {n}", email=email, article=article)
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(attempts)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({
    "errors": errors,
    "subscribers": Subscriber.objects.filter(email_canonical=address).count(),
    "deliveries": Delivery.objects.filter(subscriber__email_canonical=address).count(),
}))
"""


def test_same_address_at_the_service(rs_database, rs_workdir):
    """Fault: 50 threads, each with its own PostgreSQL connection, call subscriber_signup for one
    address at the same instant, with no throttle in front. Expected: no error, one subscriber,
    one delivery (the unique constraints and get_or_create's retry hold)."""
    address = f"race-{secrets.token_hex(3)}@example.com"
    result = snippet_json(
        rs_database.url, rs_workdir / "race-var", CONCURRENT_SERVICE_CALLS, address, str(ATTEMPTS)
    )
    assert result == {"errors": [], "subscribers": 1, "deliveries": 1}, result
