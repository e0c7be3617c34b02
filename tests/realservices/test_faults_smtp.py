"""Fault injection, SMTP side: 4xx, 5xx, a server that never answers, a connection dropped
mid-batch.

Each test runs on the real stack (private PostgreSQL and Redis, a Celery worker subprocess with
2 pool processes) against :class:`~tests.realservices.support.faults.ScriptedSmtp`, and prints a
``FAULT-RESULT`` line (reports expected, delivered, lost, doubled).
"""

from __future__ import annotations

import html
import time

import pytest

from tests.samples import reader_name

from .support.faults_site import address, fault_result

pytestmark = pytest.mark.services

DELIVERY_WAIT = 60.0  # seconds for a handful of reports, retries included
SETTLE = 2.0  # seconds to wait after the last message, to see any duplicate arrive
EMAIL_TIMEOUT = 3.0  # the worker's EMAIL_TIMEOUT (faults_site.TIMINGS)


def test_451_for_three_attempts_then_delivered_on_the_fourth(site):
    """Fault: the server answers ``451`` (greylisted) to the first 3 RCPT TO for the address.

    Expected: each attempt is recorded and retried with backoff (RETRY_BACKOFF 0.5 s); the 4th
    is accepted; exactly one message; the row is ``sent`` with ``attempts == 4``.
    """
    email = address("greylisted")
    site.smtp.reply_to(email, *["451 4.7.1 Greylisted, please try again later"] * 3)
    site.signup(("Grey Listed", email))

    site.wait_delivered([email], timeout=DELIVERY_WAIT)
    time.sleep(SETTLE)
    result = fault_result(site, "smtp-451-x3", [email])
    assert result["lost"] == result["doubled"] == 0, site.explain([email])
    [row] = site.rows([email])
    assert row["status"] == "sent", site.explain([email])
    assert row["attempts"] == 4, site.explain([email])
    assert site.smtp.attempts(email) == 4, "the server saw a different number of attempts"


def test_550_fails_at_once_without_retry_and_shows_in_the_admin(site):
    """Fault: the server answers ``550`` (no such mailbox) to RCPT TO for the address.

    Expected: the delivery is ``failed`` after one attempt, never retried (not by the task, not
    by the sweep), no message; the SMTP error is on the row and on its admin change page.
    """
    email = address("unknown-user")
    site.smtp.reply_to(email, "550 5.1.1 Mailbox unavailable: no such user here")
    [delivery_id] = site.signup(("Nobody Home", email)).values()

    failed = site.wait_status(delivery_id, "failed", timeout=DELIVERY_WAIT)
    assert failed, site.explain([email])
    time.sleep(3 * 0.5 * 2)  # longer than the first retries would have waited
    site.sweep()
    time.sleep(SETTLE)
    result = fault_result(site, "smtp-550", [], unwanted=[email])
    [row] = site.rows([email])
    assert row["status"] == "failed" and row["attempts"] == 1, site.explain([email])
    assert "550" in row["last_error"] and "no such user" in row["last_error"], row
    assert site.smtp.attempts(email) == 1, "the address was tried again after a 550"
    assert result["doubled"] == 0

    page = site.admin_change_page(delivery_id)
    assert page["status"] == 200, page["body"][:2000]
    assert html.escape(row["last_error"]) in page["body"] or (
        "Mailbox unavailable: no such user here" in page["body"]
    ), f"last_error {row['last_error']!r} is not on the admin change page"


def test_server_that_never_answers_is_abandoned_within_email_timeout(site):
    """Fault: the next SMTP connection is accepted and never answered (no greeting at all).

    Expected: the attempt on it aborts within EMAIL_TIMEOUT (3 s) and retries; meanwhile the
    other pool process keeps delivering; every one of the 5 readers gets exactly one message.
    """
    people = [(reader_name(i, "Patient Reader"), address(f"hang-{i}")) for i in range(5)]
    emails = [email for _name, email in people]
    site.smtp.hang_next(1)
    site.signup(*people)

    site.wait_delivered(emails, timeout=DELIVERY_WAIT)
    time.sleep(SETTLE)
    result = fault_result(site, "smtp-hang", emails)
    assert result["lost"] == result["doubled"] == 0, site.explain(emails)
    assert len(site.smtp.hangs) == 1, "no connection was hung: the fault did not happen"
    hang = site.smtp.hangs[0]
    assert hang.held is not None, "the worker still holds the hung connection"
    assert hang.held <= EMAIL_TIMEOUT + 1.5, f"the hung attempt lasted {hang.held:.1f} s"
    during = [t for t, _rcpts in site.smtp.sink.arrivals if hang.opened <= t <= hang.closed]
    assert during, "no other delivery arrived while one worker process waited on the hang"
    rows = site.rows(emails)
    retried = [row for row in rows if row["attempts"] == 2]
    assert len(retried) == 1 and all(row["status"] == "sent" for row in rows), site.explain(emails)
    print(
        f"hung attempt abandoned after {hang.held:.1f} s; {len(during)} other message(s) "
        "arrived meanwhile"
    )


def test_connection_dropped_after_the_third_message_of_a_batch(site):
    """Fault: one ``deliver_batch`` message sends 10 deliveries over one SMTP connection; the
    server closes that connection right after accepting the 3rd message.

    Expected: 3 sent on the first connection, the 4th fails (connection lost) and is retried,
    the rest go over new connections; each of the 10 readers gets exactly one message.
    """
    people = [(reader_name(i, "Batch Reader"), address(f"batch-{i}")) for i in range(10)]
    emails = [email for _name, email in people]
    ids = site.signup(*people, mode="unpublished")
    site.smtp.drop_after_messages(3, connections=1)
    site.publish("backpain_report.deliver_batch", [[ids[email] for email in emails]])

    site.wait_delivered(emails, timeout=DELIVERY_WAIT)
    time.sleep(SETTLE)
    result = fault_result(site, "smtp-drop-mid-batch", emails)
    assert result["lost"] == result["doubled"] == 0, site.explain(emails)
    assert site.smtp.drops == 1, (
        f"the server never dropped a connection ({site.smtp.connections} connections for "
        "10 messages): the batch did not share one"
    )
    rows = site.rows(emails)
    assert all(row["status"] == "sent" for row in rows), site.explain(emails)
    assert sorted(row["attempts"] for row in rows) == [1] * 9 + [2], site.explain(emails)
