"""An erasure in flight on PostgreSQL: the re-checks made after storing a reader's PDF wait for
it and then see it, so the PDF is deleted (docs: erasing a subscriber deletes their stored
PDFs, including one being rendered at that moment)."""

from __future__ import annotations

import pytest

from .support.stack import snippet_json

pytestmark = pytest.mark.services

# Runs in a subprocess on the example site's settings and the tier's PostgreSQL database.
ERASE_WHILE_RECHECKING = """
import json, secrets, sys, threading, time
import django
django.setup()
from django.db import connections, transaction
from django.utils import timezone
from backpain_report.delivery import sending, tokens
from backpain_report.models import Delivery, Report, Subscriber
from backpain_report.services.privacy import subscriber_erase

HOLD = 1.5  # seconds the erasing transaction stays open after its UPDATEs

def erase_slowly(subscriber, started):
    try:
        with transaction.atomic():  # e.g. an admin action under ATOMIC_REQUESTS
            subscriber_erase(subscriber=subscriber)  # deletes the files before the commit
            started.set()
            time.sleep(HOLD)
    finally:
        connections.close_all()

def race(check):
    address = f"erase-{secrets.token_hex(4)}@example.com"
    subscriber = Subscriber.objects.create(email=address, email_canonical=address, name="Ann")
    report = Report.objects.first()
    being_sent = Delivery.objects.create(
        subscriber=subscriber, report=report, edition=report.edition,
        status=Delivery.Status.SENDING, claimed_at=timezone.now(),
    )
    downloaded = Delivery.objects.create(
        subscriber=subscriber, report=report, edition=report.edition, reason="resend",
        status=Delivery.Status.SENT, sent_at=timezone.now(),
    )
    claimed = Delivery.objects.select_related("subscriber").get(pk=being_sent.pk)
    link = Delivery.objects.get(pk=downloaded.pk)
    started = threading.Event()
    eraser = threading.Thread(target=erase_slowly, args=(subscriber, started))
    eraser.start()
    started.wait(30)
    began = time.monotonic()
    if check == "worker":
        wanted = sending._claim_renew(claimed)
    else:
        wanted = tokens.download_link_stands(link)
    waited = time.monotonic() - began
    eraser.join()
    return {"wanted": wanted, "waited": round(waited, 2)}

print(json.dumps({check: race(check) for check in ("worker", "download")}))
"""


def test_the_rechecks_after_storing_a_pdf_wait_for_an_erasure_in_flight(rs_database, rs_workdir):
    """Fault: staff erase a reader inside a larger transaction (its file deletion runs before
    its commit) while a worker or a first download has just stored the reader's PDF.
    Expected: both re-checks wait for the erasure's commit, then say the PDF is not wanted."""
    result = snippet_json(rs_database.url, rs_workdir / "erase-var", ERASE_WHILE_RECHECKING)
    for check in ("worker", "download"):
        assert result[check]["wanted"] is False, result
        assert result[check]["waited"] >= 1.0, result  # it waited for the commit
