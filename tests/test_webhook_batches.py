"""A webhook backlog goes in batches of one endpoint's events: one claim, the delivered ones
recorded together, a failure recorded at once, the lease renewed on a long batch."""

# ruff: noqa: F811 (the fixtures are test_webhooks.py's, imported by name)
from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backpain_report import tasks
from backpain_report.delivery.sending import Outcome
from backpain_report.delivery.sweep import webhook_events_sweep
from backpain_report.delivery.webhooks import webhooks_send
from backpain_report.models import Subscriber, WebhookEvent
from backpain_report.services.privacy import subscriber_erase, subscribers_delete
from backpain_report.webhooks.outbox import BATCH_SIZE, WEBHOOK_BATCH_TASK, WEBHOOK_TASK
from backpain_report.webhooks.outbox import test_event_record as record_test_event
from tests.test_webhooks import (  # noqa: F401 (fixtures)
    event_for,
    hook_settings,
    make_endpoint,
    published,
    receiver,
    verified,
)


def backlog(endpoint, count: int, event_type: str = "subscriber.created") -> list[int]:
    return [event_for(endpoint, event_type=event_type).pk for _ in range(count)]


def test_a_batch_is_claimed_once_and_recorded_together(hook_settings, receiver, make_endpoint):
    endpoint = make_endpoint(url=receiver.url)
    ids = backlog(endpoint, 5)
    with CaptureQueriesContext(connection) as queries:
        results = webhooks_send(event_ids=ids)
    assert [r.outcome for r in results] == [Outcome.SENT] * 5
    # Two writes a batch (claim, record), not two per event; reads: the claimed, the recorded,
    # and the waiting events again at most every BATCH_RECHECK_SECONDS (so that an erasure,
    # switch-off or rotation while the batch runs counts, tests/test_attack_webhooks.py): five
    # quick calls fit in one such interval.
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(writes) == 2 and len(queries) <= 4
    assert {verified(endpoint, request)["type"] for request in receiver.requests} == {
        "subscriber.created"
    }
    sent = WebhookEvent.objects.filter(pk__in=ids, status=WebhookEvent.Status.SENT)
    assert sent.count() == 5 and set(sent.values_list("last_status_code", flat=True)) == {200}
    ids_sent = [request.headers["webhook-id"] for request in receiver.requests]
    assert sorted(ids_sent) == sorted(WebhookEvent.objects.values_list("webhook_id", flat=True))


def test_a_failure_in_a_batch_is_recorded_and_the_rest_still_go(
    hook_settings, receiver, make_endpoint
):
    endpoint = make_endpoint(url=receiver.url)
    ids = backlog(endpoint, 3)
    receiver.script[:] = [200, 500, 404]
    results = {r.event_id: r.outcome for r in webhooks_send(event_ids=ids)}
    assert results == {ids[0]: Outcome.SENT, ids[1]: Outcome.RETRY, ids[2]: Outcome.FAILED}
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert statuses == {ids[0]: "sent", ids[1]: "pending", ids[2]: "failed"}


def test_an_event_claimed_elsewhere_is_skipped(hook_settings, receiver, make_endpoint):
    endpoint = make_endpoint(url=receiver.url)
    ids = backlog(endpoint, 2)
    WebhookEvent.objects.filter(pk=ids[0]).update(status="sending", claimed_at=timezone.now())
    results = {r.event_id: r.outcome for r in webhooks_send(event_ids=ids)}
    assert results == {ids[0]: Outcome.SKIPPED, ids[1]: Outcome.SENT}
    assert len(receiver.requests) == 1


def test_a_batch_renews_its_claim_before_half_the_lease_passes(
    hook_settings, receiver, make_endpoint, monkeypatch
):
    """A long batch: an event still waiting its turn is never left to a stale claim."""
    endpoint = make_endpoint(url=receiver.url)
    ids = backlog(endpoint, 3)
    hook_settings.BACKPAIN_REPORT = {**hook_settings.BACKPAIN_REPORT, "CLAIM_LEASE": 1e-6}
    claims: list[datetime.datetime] = []

    def spy(event):
        claims.append(WebhookEvent.objects.get(pk=event.pk).claimed_at)
        return 200

    monkeypatch.setattr("backpain_report.delivery.webhooks._call", spy)
    results = webhooks_send(event_ids=ids)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert claims == sorted(claims) and len(set(claims)) == 3  # renewed before the 2nd and 3rd


def test_erasure_mid_batch_drops_the_rest(hook_settings, receiver, make_endpoint, monkeypatch):
    """A batch whose events were cancelled (erasure) while it ran sends none of them."""
    endpoint = make_endpoint(url=receiver.url)
    ids = backlog(endpoint, 2)
    hook_settings.BACKPAIN_REPORT = {**hook_settings.BACKPAIN_REPORT, "CLAIM_LEASE": 1e-6}
    calls = []

    def call_then_cancel(event):
        calls.append(event.pk)
        WebhookEvent.objects.filter(pk__in=ids).update(status="cancelled")
        return 200

    monkeypatch.setattr("backpain_report.delivery.webhooks._call", call_then_cancel)
    results = {r.event_id: r.outcome for r in webhooks_send(event_ids=ids)}
    assert calls == [ids[0]]
    assert results == {ids[0]: Outcome.SKIPPED, ids[1]: Outcome.SKIPPED}
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"cancelled"}


def test_the_sweep_publishes_a_backlog_in_batches_of_one_endpoint(
    hook_settings, make_endpoint, published, clock
):
    first = make_endpoint(name="A", event_types="subscriber.created")
    second = make_endpoint(name="B", event_types="subscriber.confirmed")
    ids_a, ids_b = backlog(first, BATCH_SIZE + 1), backlog(second, 1, "subscriber.confirmed")
    WebhookEvent.objects.update(publish_failed_at=timezone.now())
    published.clear()
    result = webhook_events_sweep()
    assert (result.found, result.published) == (BATCH_SIZE + 2, BATCH_SIZE + 2)
    messages = sorted(
        (name, args[0] if name == WEBHOOK_BATCH_TASK else args) for name, args, _o in published
    )
    assert (WEBHOOK_BATCH_TASK, ids_a[:BATCH_SIZE]) in messages
    assert (WEBHOOK_TASK, [ids_a[-1]]) in messages and (WEBHOOK_TASK, ids_b) in messages
    assert {options["queue"] for _n, _a, options in published} == {"backpain_webhooks"}


def test_the_batch_task_publishes_each_retry_with_its_countdown(
    hook_settings, receiver, make_endpoint, published
):
    endpoint = make_endpoint(url=receiver.url)
    ids = backlog(endpoint, 2)
    receiver.script[:] = [503, 200]
    published.clear()
    counts = tasks.deliver_webhook_batch(ids)
    assert (counts["sent"], counts["retry"]) == (1, 1)
    [(name, args, options)] = published
    assert (name, args) == (WEBHOOK_TASK, [ids[0]]) and options["countdown"] > 0
    assert options["queue"] == "backpain_webhooks"


@pytest.mark.parametrize("count", [0, 1])
def test_small_batches(hook_settings, receiver, make_endpoint, count):
    endpoint = make_endpoint(url=receiver.url)
    ids = backlog(endpoint, count)
    assert [r.outcome for r in webhooks_send(event_ids=ids)] == [Outcome.SENT] * count


def test_a_test_event_goes_to_a_switched_off_endpoint(hook_settings, receiver, make_endpoint):
    """Staff try a receiver before switching the endpoint on; other events wait for the switch."""
    endpoint = make_endpoint(url=receiver.url, is_active=False)
    held = WebhookEvent.objects.create(
        endpoint=endpoint,
        event_type="subscriber.created",
        webhook_id="msg_held",
        body="{}",
        occurred_at=timezone.now(),
    )
    test = record_test_event(endpoint)
    results = {r.event_id: r.outcome for r in webhooks_send(event_ids=[held.pk, test])}
    assert results == {held.pk: Outcome.SKIPPED, test: Outcome.SENT}
    assert [verified(endpoint, r)["type"] for r in receiver.requests] == ["test"]


def test_deleting_an_erased_subscriber_queues_no_second_erased_event(
    make_subscriber, make_endpoint
):
    make_endpoint()
    subscriber = make_subscriber()
    subscriber_erase(subscriber=subscriber)
    assert WebhookEvent.objects.filter(event_type="subscriber.erased").count() == 1
    subscribers_delete(Subscriber.objects.filter(pk=subscriber.pk))
    assert WebhookEvent.objects.filter(event_type="subscriber.erased").count() == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"WEBHOOK_ALLOWED_NETWORKS": ["not a network"]},
        {"WEBHOOK_READ_TIMEOUT": 0},
        {"WEBHOOK_MAX_RESPONSE_BYTES": -1},
        {"WEBHOOK_CONNECT_TIMEOUT": "3"},
    ],
)
def test_a_worker_uses_the_default_for_a_value_the_checks_refuse(
    hook_settings, receiver, make_endpoint, bad, caplog
):
    """A Celery worker runs no system checks: a bad value is logged and the default used, never
    turned into a failure of every event."""
    hook_settings.BACKPAIN_REPORT = {**hook_settings.BACKPAIN_REPORT, **bad}
    if "WEBHOOK_ALLOWED_NETWORKS" in bad:  # the default lets no loopback through: refused
        endpoint = make_endpoint(url=receiver.url)
        [result] = webhooks_send(event_ids=backlog(endpoint, 1))
        assert result.outcome is Outcome.FAILED and "not a public address" in result.error
    else:
        endpoint = make_endpoint(url=receiver.url)
        assert [r.outcome for r in webhooks_send(event_ids=backlog(endpoint, 2))] == [
            Outcome.SENT
        ] * 2
    assert "using the default" in caplog.text
