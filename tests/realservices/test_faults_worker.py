"""Fault injection, worker and database side: a worker killed mid-delivery, one message run twice
at once, PostgreSQL restarted under an idle worker.

Each test runs on the real stack (a private PostgreSQL cluster and Redis, a Celery worker
subprocess, the scripted SMTP server) and prints a ``FAULT-RESULT`` line.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from .support.faults_site import Reader, address, fault_result
from .support.processes import wait_until
from .support.web import SIGNUP_DONE_PATH

pytestmark = pytest.mark.services

DELIVER_TASK = "backpain_report.deliver_report"
DELIVERY_WAIT = 60.0
SETTLE = 2.0  # seconds to wait after the last message, to see any duplicate arrive
LEASE = 5.0  # CLAIM_LEASE for the worker-killed test


def _wait_sending(site, delivery_email: str, timeout: float) -> dict | None:
    """Poll (every 10 ms, one connection) until the address's delivery is ``sending``."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(site.database.url, autocommit=True, connect_timeout=5) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT d.id, d.status FROM backpain_report_delivery d "
                "JOIN backpain_report_subscriber s ON s.id = d.subscriber_id "
                "WHERE s.email_canonical = %s",
                (delivery_email,),
            ).fetchone()
            if row and row[1] == "sending":
                return {"id": row[0], "status": row[1]}
            time.sleep(0.01)
    return None


@pytest.mark.slow
def test_worker_killed_while_rendering_the_pdf(site):
    """Fault: the worker (main process and pool) is SIGKILLed the moment its delivery row turns
    ``sending``, i.e. after the claim, while the PDF is rendered (the SMTP server also delays
    its greeting by 2 s, so the kill always lands before any message is transmitted).

    Expected: nothing is sent by the dead worker; a sweep within the claim lease (5 s) leaves
    the live-looking claim alone; after a new worker starts and the lease has passed, one
    ``backpain_sweep`` run reclaims the delivery and exactly one message arrives (attempts 2).
    """
    email = address("worker-killed")
    site.worker_start(BACKPAIN_CLAIM_LEASE=LEASE)
    site.smtp.delay_greeting(2.0)
    site.signup(("Killed Worker", email))
    claimed = _wait_sending(site, email, timeout=DELIVERY_WAIT)
    assert claimed, f"the delivery never turned 'sending'\n{site.explain([email])}"
    site.worker_kill()
    connections_at_kill = site.smtp.connections
    assert not site.received([email]), "the message was sent before the kill: no fault happened"
    site.smtp.reset()

    early = site.sweep(BACKPAIN_CLAIM_LEASE=LEASE)
    assert site.status_of(claimed["id"]) == "sending", f"a live claim was swept: {early}"
    site.worker_start(BACKPAIN_CLAIM_LEASE=LEASE)
    [row] = site.rows([email])
    time.sleep(max(0.0, LEASE + 0.5 - (time.time() - row["claimed_at"].timestamp())))
    output = site.sweep(BACKPAIN_CLAIM_LEASE=LEASE)
    site.wait_delivered([email], timeout=DELIVERY_WAIT)
    time.sleep(SETTLE)
    result = fault_result(site, "worker-sigkill-mid-render", [email])
    assert result["lost"] == result["doubled"] == 0, f"sweeps: {early} / {output}\n" + (
        site.explain([email])
    )
    [row] = site.rows([email])
    assert row["status"] == "sent" and row["attempts"] == 2, site.explain([email])
    stage = "rendering" if connections_at_kill == 0 else "waiting for the SMTP greeting"
    print(f"worker killed while {stage}; early sweep: {early!r}; late sweep: {output!r}")


def test_same_delivery_task_run_twice_at_once(site):
    """Fault: two ``deliver_report`` messages for one delivery are published back to back, so
    the worker's two pool processes run them at the same time.

    Expected: one claims the row and sends, the other finds nothing to claim; exactly one
    message; the row is ``sent`` with ``attempts == 1``.
    """
    email = address("twice")
    ids = site.signup(("Twice Over", email), mode="unpublished")
    log = site.worker.log
    skipped_before = log.read_text(errors="replace").count("'skipped'")
    site.publish(DELIVER_TASK, [ids[email]], copies=2)

    site.wait_delivered([email], timeout=DELIVERY_WAIT)

    def both_ran() -> bool:
        return log.read_text(errors="replace").count("'skipped'") > skipped_before

    ran = wait_until(both_ran, timeout=15)
    time.sleep(SETTLE)
    result = fault_result(site, "same-task-twice", [email])
    assert result["lost"] == result["doubled"] == 0, site.explain([email])
    assert ran, f"the second message never ran (no 'skipped' outcome)\n{site.diagnostics()}"
    [row] = site.rows([email])
    assert row["status"] == "sent" and row["attempts"] == 1, site.explain([email])


def test_postgres_restarted_while_the_worker_is_idle(site):
    """Fault: PostgreSQL is restarted (``pg_ctl restart -m fast``) while the worker (one pool
    process, so the one that delivered before holds the connection) and the web processes hold
    persistent connections (CONN_MAX_AGE=60, CONN_HEALTH_CHECKS on) and are idle.

    Expected: the next sign-up over HTTP answers 303 and its report is delivered at the first
    attempt, exactly once; so is the one made before the restart.
    """
    before, after = address("pg-before"), address("pg-after")
    site.worker_start(concurrency=1)
    base_url = site.web_start()
    status, location, _took = Reader(base_url).submit(name="Before Restart", email=before)
    assert status == 303, status
    site.wait_delivered([before], timeout=DELIVERY_WAIT)
    held = site.database.query(
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )[0]["n"]
    assert held >= 1, "no persistent connection was open before the restart"

    site.postgres.restart()
    status, location, took = Reader(base_url).submit(name="After Restart", email=after)
    assert status == 303 and location.endswith(SIGNUP_DONE_PATH), (
        f"sign-up after the restart answered {status}\n{site.diagnostics()}"
    )
    site.wait_delivered([after], timeout=DELIVERY_WAIT)
    time.sleep(SETTLE)
    result = fault_result(site, "postgres-restart", [before, after])
    assert result["lost"] == result["doubled"] == 0, site.explain([before, after])
    rows = site.rows([before, after])
    assert [row["attempts"] for row in rows] == [1, 1], site.explain([before, after])
    print(f"{held} connection(s) cut by the restart; the next sign-up answered in {took:.2f} s")
