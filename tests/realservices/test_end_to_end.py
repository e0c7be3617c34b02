"""A sign-up over HTTP reaches the reader as an email whose button serves the personalised PDF,
per broker."""

from __future__ import annotations

import secrets
import time

import pytest

from .support.checks import check_report_pdf, pdf_downloaded
from .support.web import SIGNUP_DONE_PATH, sign_up

pytestmark = pytest.mark.services

DELIVERY_WAIT = 60.0  # seconds for one report to be rendered and sent
SETTLE = 2.0  # seconds to wait after the first message, to see any duplicate arrive


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_signup_is_delivered_over_the_wire(broker, stack_for, smtp_server, rs_database):
    stack = stack_for(broker)
    name = f"Zoë {broker.title()} O'Brien"
    email = f"e2e-{broker}-{secrets.token_hex(4)}@example.com"

    started = time.monotonic()
    response = sign_up(stack.base_url, name=name, email=email)
    assert response.status == 303, f"sign-up answered {response.status}: {response.body[:500]}"
    assert response.headers.get("Location", "").endswith(SIGNUP_DONE_PATH)

    arrived = smtp_server.sink.wait_for_count({email}, 1, timeout=DELIVERY_WAIT)
    elapsed = time.monotonic() - started
    assert arrived, (
        f"no message for {email} within {DELIVERY_WAIT:.0f} s; deliveries: "
        f"{rs_database.deliveries_for([email])}\n{stack.diagnostics()}"
    )
    time.sleep(SETTLE)
    arrived = smtp_server.sink.to(email)
    assert len(arrived) == 1, f"{len(arrived)} messages reached {email}, expected exactly one"

    received = arrived[0]
    message = received.message
    assert received.rcpt_tos == (email,)
    assert str(message["To"]).strip().endswith(f"<{email}>") or str(message["To"]) == email
    assert message["List-Unsubscribe"] and message["List-Unsubscribe-Post"]
    filename, pdf = pdf_downloaded(message)  # the button in the email, as a reader clicks it
    facts = check_report_pdf(pdf, reader_name=name)

    rows = rs_database.deliveries_for([email])
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["status"] == "sent", row
    assert row["attempts"] == 1, row
    assert row["message_id"] and row["message_id"] == received.message_id, (
        row["message_id"],
        received.message_id,
    )
    print(
        f"[{broker}] sign-up to message in {elapsed:.2f} s; {filename}: "
        f"{facts['pages']} pages, {facts['bytes']} bytes"
    )
