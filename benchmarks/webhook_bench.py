"""The webhook row: events sent per second by one worker process, against bare signed POSTs.

    DJANGO_SETTINGS_MODULE=benchmarks.site_settings DJANGO_DEBUG=1 \\
    BACKPAIN_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8 DATABASE_URL=postgres://... \\
        python -m benchmarks.webhook_bench --url http://127.0.0.1:PORT/hook --secret whsec_... \\
        --events 500 --rounds 3

One process (a worker process's part), on the site's database. Per round, in turns:

- **ours**: ``--events`` rows of ``WebhookEvent`` (a ``subscriber.created`` body built with
  the app's ``payload_build`` / ``body_encode``) are inserted for one endpoint (untimed), then
  sent as a worker drains a backlog, ``webhooks_send`` over batches of ``BATCH_SIZE`` (what the
  ``deliver_webhook_batch`` task runs): one claim per batch, then per event the URL check, the
  signature and the SSRF-guarded POST (resolve, check, connect to the checked address), and the
  delivered ones recorded together;
- **ours_single** (reported beside it): the same, one ``webhook_send`` per event, as a fresh
  event's own ``deliver_webhook`` message runs it (a claim and a record each);
- **baseline**: as many POSTs of the same body to the same receiver, each signed with
  ``standardwebhooks`` under a fresh ``webhook-id`` and sent over a new ``http.client``
  connection, as the app does, with nothing else.

The receiver must be a loopback one (an ``http://`` URL: the app allows it only with ``DEBUG``
on, and ``WEBHOOK_ALLOWED_NETWORKS`` must hold 127.0.0.0/8). A send that is not a 2xx answer
(ours: an outcome other than sent) fails the run. Prints one JSON line: the rate of each side
per round (events per second), the body's size and the queries per event of ours.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import secrets
import sys
import time
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

WARMUP_EVENTS = 20


def bare_headers(webhook: Webhook, msg_id: str, body: bytes, now: datetime.datetime) -> dict:
    """The headers of one bare signed POST: the ones the app sends, signed the same way."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "backpain-bench/bare",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": webhook.sign(msg_id=msg_id, timestamp=now, data=body),
    }


def bare_post(url: str, webhook: Webhook, body: bytes) -> int:
    """One signed POST over a new connection; the answer's status."""
    parts = urlsplit(url)
    headers = bare_headers(
        webhook,
        f"msg_{secrets.token_urlsafe(16)}",
        body,
        datetime.datetime.now(datetime.timezone.utc),
    )
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", parts.path or "/", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def baseline_run(url: str, secret: str, body: bytes, count: int) -> float:
    """``count`` bare signed POSTs; events per second."""
    webhook = Webhook(secret)
    started = time.perf_counter()
    for _ in range(count):
        status = bare_post(url, webhook, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"the receiver answered a bare POST with {status}")
    return count / (time.perf_counter() - started)


def sample_body() -> str:
    """A ``subscriber.created`` body as the app builds it, for a reader with every field set."""
    from django.utils import timezone

    from backpain_report.models import Subscriber
    from backpain_report.webhooks.events import EventType, body_encode, payload_build

    now = timezone.now()
    reader = Subscriber(
        pk=123456,
        email="reader.bench@example.com",
        name="Bench Reader",
        language="en",
        consent_version="2024-01",
        consented_at=now,
        confirmed_at=now,
        utm_source="newsletter",
        utm_medium="email",
        utm_campaign="spring",
        referrer_host="www.example.org",
        source_url="https://www.example.com/back-pain/",
    )
    return body_encode(payload_build(EventType.SUBSCRIBER_CREATED, reader, occurred_at=now))


def events_insert(endpoint, body: str, count: int) -> list[int]:
    """``count`` pending events for ``endpoint`` (no message published: we send them here)."""
    from django.utils import timezone

    from backpain_report.models import WebhookEvent
    from backpain_report.webhooks.outbox import webhook_id_new

    now = timezone.now()
    rows = [
        WebhookEvent(
            endpoint=endpoint,
            event_type="subscriber.created",
            webhook_id=webhook_id_new(),
            body=body,
            subscriber_ref=123456,
            occurred_at=now,
            enqueued_at=now,
        )
        for _ in range(count)
    ]
    return [row.pk for row in WebhookEvent.objects.bulk_create(rows)]


def ours_run(event_ids: list[int], *, batches: bool = True) -> float:
    """Send every event as a worker drains a backlog: ``webhooks_send`` over batches of
    ``BATCH_SIZE`` (what ``deliver_webhook_batch`` runs), or with ``batches=False`` one
    ``webhook_send`` each (a fresh event's own message); events per second."""
    from backpain_report.delivery.sending import Outcome
    from backpain_report.delivery.webhooks import webhook_send, webhooks_send
    from backpain_report.webhooks.outbox import BATCH_SIZE

    started = time.perf_counter()
    if batches:
        chunks = [event_ids[i : i + BATCH_SIZE] for i in range(0, len(event_ids), BATCH_SIZE)]
        results = [result for chunk in chunks for result in webhooks_send(event_ids=chunk)]
    else:
        results = [webhook_send(event_id=event_id) for event_id in event_ids]
    for result in results:
        if result.outcome != Outcome.SENT:
            raise RuntimeError(f"event {result.event_id}: {result.outcome} {result.error}")
    return len(event_ids) / (time.perf_counter() - started)


def queries_per_event(endpoint, body: str) -> int:
    """The SQL queries one ``webhook_send`` makes (DEBUG records them)."""
    from django.db import connection, reset_queries

    from backpain_report.delivery.webhooks import webhook_send

    (event_id,) = events_insert(endpoint, body, 1)
    reset_queries()
    webhook_send(event_id=event_id)
    return len(connection.queries)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the loopback receiver's webhook URL")
    parser.add_argument("--secret", required=True, help="its whsec_ secret")
    parser.add_argument("--events", type=int, default=500, help="events per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profile",
        default="",
        help="profile one more batch of ours (not counted) with cProfile: stats file here",
    )
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings

    from backpain_report.models import WebhookEndpoint

    if not settings.DEBUG:
        raise SystemExit("webhook_bench: DEBUG must be on for an http:// loopback receiver")
    endpoint = WebhookEndpoint.objects.create(
        name=f"bench {secrets.token_hex(3)}",
        url=args.url,
        secret=args.secret,
        event_types="subscriber.created",
    )
    body = sample_body()
    encoded = body.encode("utf-8")
    ours_run(events_insert(endpoint, body, WARMUP_EVENTS))  # imports, connections, caches
    baseline_run(args.url, args.secret, encoded, WARMUP_EVENTS)
    queries = queries_per_event(endpoint, body)
    rates: dict[str, list[float]] = {"ours": [], "baseline": [], "ours_single": []}
    for round_no in range(args.rounds):
        sides = ["baseline", "ours", "ours_single"]
        for side in sides if round_no % 2 == 0 else reversed(sides):
            if side == "baseline":
                rates[side].append(baseline_run(args.url, args.secret, encoded, args.events))
            else:
                ids = events_insert(endpoint, body, args.events)
                rates[side].append(ours_run(ids, batches=side == "ours"))
    if args.profile:  # one more batch of ours, profiled, not counted
        _profiled(events_insert(endpoint, body, args.events), args.profile)
    print(
        json.dumps(
            {
                **rates,
                "events": args.events,
                "rounds": args.rounds,
                "body_bytes": len(encoded),
                "queries_per_event": queries,
                "expected_requests": 2 * WARMUP_EVENTS
                + 1
                + 3 * args.events * args.rounds
                + (args.events if args.profile else 0),
            }
        )
    )
    return 0


def _profiled(ids: list[int], path: str) -> float:
    """``ours_run`` under cProfile: the stats go to ``path`` and the top of them to stdout."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(ours_run, ids)
    finally:
        profiler.dump_stats(path)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
