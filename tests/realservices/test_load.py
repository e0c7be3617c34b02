"""200 concurrent sign-ups over HTTP on the real stack: 200 messages, none lost or doubled."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.samples import reader_name

from .support.web import sign_up

pytestmark = [pytest.mark.services, pytest.mark.slow]

SIGNUPS = 200
THREADS = 20
# Every report must arrive within DELIVERY_WAIT seconds, and the wait gives up sooner if no new
# message arrives for STALL seconds. Rendering is CPU-bound (2 worker processes, 0.3-2 s per PDF
# depending on the machine's load), so the overall bound is generous and the stall bound is not.
DELIVERY_WAIT = 600.0
STALL = 60.0
SETTLE = 3.0  # seconds to wait after the last message, to see any duplicate arrive


def wait_with_progress(smtp_server, addresses: set[str], started: float) -> list:
    """Wait for all the messages while they keep coming; print progress every STALL seconds."""
    seen = 0
    while True:
        remaining = DELIVERY_WAIT - (time.monotonic() - started)
        if remaining <= 0:
            break
        arrived = smtp_server.sink.wait_for_count(addresses, SIGNUPS, timeout=min(STALL, remaining))
        print(f"  {time.monotonic() - started:6.1f} s: {len(arrived)}/{SIGNUPS} messages")
        if len(arrived) >= SIGNUPS or len(arrived) == seen:
            break
        seen = len(arrived)
    return smtp_server.sink.to(*addresses)


@pytest.mark.timeout(DELIVERY_WAIT + 180)
def test_concurrent_signups_are_each_delivered_once(redis_stack, smtp_server, rs_database):
    run = secrets.token_hex(3)
    people = [
        (reader_name(i, "Load Reader"), f"load-{run}-{i:03d}@example.com") for i in range(SIGNUPS)
    ]
    addresses = {email for _name, email in people}

    def submit(person: tuple[str, str]) -> tuple[str, int, float]:
        name, email = person
        started = time.monotonic()
        response = sign_up(redis_stack.base_url, name=name, email=email)
        return email, response.status, time.monotonic() - started

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(submit, people))
    submitted = time.monotonic() - started
    statuses = Counter(status for _email, status, _t in results)
    assert statuses == {303: SIGNUPS}, f"sign-up answers: {dict(statuses)}"
    latencies = sorted(t for _email, _status, t in results)

    arrived = wait_with_progress(smtp_server, addresses, started)
    delivered = time.monotonic() - started
    if len(arrived) < SIGNUPS:
        rows = rs_database.deliveries_for(sorted(addresses))
        pytest.fail(
            f"{len(arrived)} of {SIGNUPS} messages after {delivered:.0f} s (gave up after "
            f"{STALL:.0f} s without a new one, or {DELIVERY_WAIT:.0f} s in all); delivery "
            f"statuses: {dict(Counter(r['status'] for r in rows))}; errors: "
            f"{sorted({r['last_error'] for r in rows if r['last_error']})[:5]}\n"
            f"{redis_stack.diagnostics()}"
        )
    time.sleep(SETTLE)
    arrived = smtp_server.sink.to(*addresses)

    recipients = Counter(r for message in arrived for r in message.rcpt_tos)
    doubled = {r: n for r, n in recipients.items() if n > 1}
    assert len(arrived) == SIGNUPS, f"{len(arrived)} messages for {SIGNUPS} sign-ups; {doubled=}"
    assert set(recipients) == addresses and not doubled, f"{doubled=}"
    message_ids = {message.message_id for message in arrived}
    assert len(message_ids) == SIGNUPS, "Message-IDs repeat"

    rows = rs_database.deliveries_for(sorted(addresses))
    assert len(rows) == SIGNUPS, f"{len(rows)} deliveries for {SIGNUPS} sign-ups"
    assert Counter(r["status"] for r in rows) == {"sent": SIGNUPS}
    assert {r["message_id"] for r in rows} == message_ids
    assert Counter(r["attempts"] for r in rows) == {1: SIGNUPS}

    print(
        f"\n{SIGNUPS} sign-ups over {THREADS} threads: submitted in {submitted:.1f} s "
        f"(median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms); all {SIGNUPS} messages in {delivered:.1f} s "
        f"({SIGNUPS / delivered:.1f} per s)"
    )
