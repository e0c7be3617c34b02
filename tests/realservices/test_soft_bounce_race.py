"""Soft bounces reported at the same moment on PostgreSQL: the one that makes
``SOFT_BOUNCE_LIMIT`` suppresses, even while another bounce's transaction is still open
(docs, "Bounces and complaints": a soft bounce suppresses when it makes the limit)."""

from __future__ import annotations

import pytest

from .support.stack import snippet_json

pytestmark = pytest.mark.services

# Runs in a subprocess on the example site's settings and the tier's PostgreSQL database.
SOFT_BOUNCES_AT_ONCE = """
import json, secrets, threading, time
import django
django.setup()
from django.db import connections, transaction
from backpain_report.models import MailEvent, Subscriber
from backpain_report.rights.suppression import mail_event_record

HOLD = 1.5  # seconds the first webhook's transaction stays open after recording its bounce

def soft(address, event_id):
    return mail_event_record(
        esp="Mailgun", event_id=event_id, kind=MailEvent.Kind.SOFT_BOUNCE, recipient=address
    )

def first_webhook(address, started):
    try:
        with transaction.atomic():  # e.g. the webhook view under ATOMIC_REQUESTS
            soft(address, "race-2-" + address)
            started.set()
            time.sleep(HOLD)
    finally:
        connections.close_all()

address = f"soft-{secrets.token_hex(4)}@example.com"
reader = Subscriber.objects.create(email=address, email_canonical=address, name="Ann")
soft(address, "race-1-" + address)
started = threading.Event()
other = threading.Thread(target=first_webhook, args=(address, started))
other.start()
started.wait(30)
began = time.monotonic()
result = soft(address, "race-3-" + address)  # the default limit: 3 within 7 days
waited = time.monotonic() - began
other.join()
reader.refresh_from_db()
print(json.dumps({
    "suppressed": reader.suppressed_at is not None,
    "reason": reader.suppressed_reason,
    "waited": round(waited, 2),
}))
"""


def test_two_soft_bounces_at_once_still_reach_the_limit(rs_database, rs_workdir):
    """Fault: the second and third soft bounce arrive together, each in its own transaction,
    neither seeing the other's uncommitted row. Expected: the later one waits for the
    earlier's commit, counts three and suppresses."""
    result = snippet_json(rs_database.url, rs_workdir / "soft-var", SOFT_BOUNCES_AT_ONCE)
    assert result["suppressed"] is True, result
    assert result["reason"].startswith("3 soft bounces (Mailgun)"), result
    assert result["waited"] >= 1.0, result
