"""Adversarial review of issue 24 (second pass): the batch path, the admin as a view-only
attacker, and the receiver-facing promises in the docs. Each test is a finding or an attack
that held; see the module's report in the commit log."""

# ruff: noqa: F811 (the fixtures are test_webhooks.py's, imported by name)
from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backpain_report.delivery import webhook_http, webhooks
from backpain_report.delivery.sending import Outcome
from backpain_report.delivery.webhooks import webhooks_send
from backpain_report.models import WebhookEndpoint, WebhookEvent
from backpain_report.services.privacy import subscriber_erase
from backpain_report.webhooks.endpoints import endpoint_secret_rotate
from backpain_report.webhooks.outbox import test_event_record as record_test_event
from tests.test_admin_webhooks import make_endpoint as admin_endpoint
from tests.test_admin_webhooks import make_event as admin_event
from tests.test_admin_webhooks import staff
from tests.test_webhooks import (  # noqa: F401 (fixtures)
    event_for,
    hook_settings,
    make_endpoint,
    published,
    receiver,
    verified,
)

ENDPOINTS = "admin:backpain_report_webhookendpoint_changelist"
EVENTS = "admin:backpain_report_webhookevent_changelist"
ROOT = Path(__file__).resolve().parent.parent


def _during_first_post(monkeypatch, change):
    """Run ``change`` (as another process would) while the batch's first POST is on the wire,
    a POST that lasts ``BATCH_RECHECK_SECONDS`` (here 0: a batch reads its waiting events again
    before each call once calls take that long)."""
    monkeypatch.setattr(webhooks, "BATCH_RECHECK_SECONDS", 0)
    post, done = webhook_http.post, []

    def post_then_change(*args, **kwargs):
        answer = post(*args, **kwargs)
        if not done:
            done.append(True)
            change()
        return answer

    monkeypatch.setattr(webhook_http, "post", post_then_change)


# ---- The batch path: a change made while a batch runs applies to the events still waiting ----


def test_a_change_within_the_recheck_window_may_miss_the_next_quick_call(
    hook_settings, receiver, make_endpoint, monkeypatch
):
    """The documented window: a batch of quick calls reads its events again only every
    ``BATCH_RECHECK_SECONDS``; a switch-off just now is seen at the next read, not before."""
    endpoint = make_endpoint(url=receiver.url)
    first, second = event_for(endpoint), event_for(endpoint)
    off = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    _during_first_post(monkeypatch, lambda: off.update(is_active=False))
    monkeypatch.setattr(webhooks, "BATCH_RECHECK_SECONDS", 3600)
    results = {r.event_id: r.outcome for r in webhooks_send(event_ids=[first.pk, second.pk])}
    assert results == {first.pk: Outcome.SENT, second.pk: Outcome.SENT}


def test_erasure_mid_batch_sends_no_waiting_event_of_the_erased(
    hook_settings, receiver, make_endpoint, make_subscriber, monkeypatch
):
    """Found: the batch held the bodies it claimed, so an erasure while it ran still posted the
    erased reader's personal data (up to 49 events, minutes later), although the docs promise
    only a request already on the wire may still arrive."""
    endpoint = make_endpoint(url=receiver.url)
    other, erased = make_subscriber(email="o@example.com"), make_subscriber(email="e@example.com")
    first, second = event_for(endpoint, other), event_for(endpoint, erased)
    _during_first_post(monkeypatch, lambda: subscriber_erase(subscriber=erased))
    results = {r.event_id: r.outcome for r in webhooks_send(event_ids=[first.pk, second.pk])}
    assert results == {first.pk: Outcome.SENT, second.pk: Outcome.SKIPPED}
    assert [r.headers["webhook-id"] for r in receiver.requests] == [first.webhook_id]
    assert b"e@example.com" not in b"".join(r.body for r in receiver.requests)
    assert WebhookEvent.objects.get(pk=second.pk).status == "cancelled"


def test_switch_off_mid_batch_holds_the_waiting_events(
    hook_settings, receiver, make_endpoint, monkeypatch
):
    """Found: switched off while a batch ran, the endpoint still got the rest of the batch
    ("held, not sent" said the docs). The waiting events go back to the backlog, their attempt
    not counted, and go out once it is switched on."""
    endpoint = make_endpoint(url=receiver.url)
    first, second = event_for(endpoint), event_for(endpoint)
    off = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    _during_first_post(monkeypatch, lambda: off.update(is_active=False))
    results = {r.event_id: r.outcome for r in webhooks_send(event_ids=[first.pk, second.pk])}
    assert results == {first.pk: Outcome.SENT, second.pk: Outcome.SKIPPED}
    assert len(receiver.requests) == 1
    held = WebhookEvent.objects.get(pk=second.pk)
    assert (held.status, held.attempts) == ("pending", 0)
    off.update(is_active=True)
    assert [r.outcome for r in webhooks_send(event_ids=[second.pk])] == [Outcome.SENT]


def test_rotation_mid_batch_signs_the_waiting_events_with_the_new_secret(
    hook_settings, receiver, make_endpoint, monkeypatch
):
    """Found: the rest of a batch was signed with the secret the batch started with, so a
    receiver already holding the new one refused them (a 401: a final failure, a lost event)."""
    endpoint = make_endpoint(url=receiver.url)
    first, second = event_for(endpoint), event_for(endpoint)
    _during_first_post(monkeypatch, lambda: endpoint_secret_rotate(endpoint))
    webhooks_send(event_ids=[first.pk, second.pk])
    endpoint.refresh_from_db()
    late = receiver.requests[1]
    assert verified(endpoint, late)["type"] == "subscriber.created"


def test_a_url_changed_mid_batch_gets_the_waiting_events(
    hook_settings, receiver, make_endpoint, monkeypatch
):
    """Found with the rotation: the rest of a batch went to the URL the batch started with."""
    endpoint = make_endpoint(url=receiver.url + "old")
    first, second = event_for(endpoint), event_for(endpoint)
    moved = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    _during_first_post(monkeypatch, lambda: moved.update(url=receiver.url + "new"))
    webhooks_send(event_ids=[first.pk, second.pk])
    assert [r.path[-3:] for r in receiver.requests] == ["old", "new"]


def test_an_endpoint_deleted_mid_batch_gets_nothing_more(
    hook_settings, receiver, make_endpoint, monkeypatch
):
    endpoint = make_endpoint(url=receiver.url)
    ids = [event_for(endpoint).pk for _ in range(3)]
    _during_first_post(monkeypatch, lambda: WebhookEndpoint.objects.filter(pk=endpoint.pk).delete())
    results = [r.outcome for r in webhooks_send(event_ids=ids)]
    assert len(receiver.requests) == 1
    assert results.count(Outcome.SENT) == 0 and not WebhookEvent.objects.exists()


def test_a_batch_mixing_endpoints_signs_each_with_its_own(hook_settings, receiver, make_endpoint):
    """Held: a batch is one endpoint's by construction; a mixed one still sends each event to
    its own endpoint, signed with its own secret."""
    one, two = make_endpoint(url=receiver.url), make_endpoint(url=receiver.url, name="B")
    first = WebhookEvent.objects.get(pk=record_test_event(one))
    second = WebhookEvent.objects.get(pk=record_test_event(two))
    results = webhooks_send(event_ids=[first.pk, second.pk])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    by_id = {r.headers["webhook-id"]: r for r in receiver.requests}
    verified(one, by_id[first.webhook_id])
    verified(two, by_id[second.webhook_id])
    with pytest.raises(WebhookVerificationError):
        Webhook(one.secret).verify(by_id[second.webhook_id].body, by_id[second.webhook_id].headers)


def test_two_batches_sharing_events_send_each_once(hook_settings, receiver, make_endpoint):
    """Held: the second batch's claim skips what the first holds."""
    endpoint = make_endpoint(url=receiver.url)
    ids = [event_for(endpoint).pk for _ in range(3)]
    first = webhooks_send(event_ids=ids[:2])
    second = webhooks_send(event_ids=ids[1:])
    assert [r.outcome for r in first] == [Outcome.SENT] * 2
    assert {r.event_id: r.outcome for r in second} == {
        ids[1]: Outcome.SKIPPED,
        ids[2]: Outcome.SENT,
    }
    assert len(receiver.requests) == 3


# ---- The admin, as staff who may only view ---------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "secret__startswith=whsec_",
        "secret__regex=%5Ewhsec_",
        "secret__gt=whsec_",
        "secret__contains=a",
    ],
)
def test_view_only_staff_cannot_probe_the_secret_through_a_list_filter(client, db, query):
    """Found: the admin lets any local field be filtered from the query string, so
    ``?secret__startswith=whsec_A`` was an oracle: one character at a time (about 64 requests
    each), a member of staff who may only view read the whole secret off the list's count."""
    admin_endpoint()
    staff(client, "view_webhookendpoint", "view_webhookevent")
    response = client.get(reverse(ENDPOINTS) + "?" + query)
    assert response.status_code == 400


def test_the_event_list_cannot_filter_on_the_endpoints_secret(client, db):
    """Held: a lookup through a relation must be a list filter's."""
    endpoint = admin_endpoint()
    admin_event(endpoint)
    staff(client, "view_webhookendpoint", "view_webhookevent")
    response = client.get(reverse(EVENTS) + "?endpoint__secret__startswith=whsec_")
    assert response.status_code == 400


# ---- The docs' promises to a receiver --------------------------------------------------------


def _doc(path: str) -> str:
    return " ".join((ROOT / path).read_text(encoding="utf-8").split())


def test_the_reference_says_a_test_event_goes_to_a_switched_off_endpoint():
    """Found: the events reference said a test event pressed while the endpoint is switched off
    waits until it is on; it goes at once (test_a_test_event_goes_to_a_switched_off_endpoint)."""
    text = _doc("docs/reference/webhook-events.md")
    assert "it waits until it is on" not in text
    assert "goes out even while the endpoint is switched off" in text


def test_the_howto_names_both_webhook_tasks():
    """Found: the how-to named ``deliver_webhook`` as "the task"; a site routing tasks by name
    would leave every backlog batch (``deliver_webhook_batch``) on another queue."""
    text = _doc("docs/howto/webhooks.md")
    assert "`backpain_report.deliver_webhook_batch`" in text


# ---- The hooks: replays and a re-subscription -------------------------------------------------


def test_replays_record_one_event_each(make_subscriber, make_endpoint):
    """Held: a second unsubscribe click, a repeated bounce, a second confirmation record no
    second event (each hook sits behind its change's conditional UPDATE)."""
    from backpain_report.rights.suppression import subscriber_suppress
    from backpain_report.services.subscribers import subscriber_confirm, subscriber_unsubscribe

    make_endpoint()
    subscriber = make_subscriber(confirmed_at=None)
    for _ in range(2):
        subscriber_confirm(subscriber=subscriber)
        subscriber_unsubscribe(subscriber_id=subscriber.pk)
        subscriber_suppress(subscriber_id=subscriber.pk, reason="bounced")
    counts = {}
    for event_type in WebhookEvent.objects.values_list("event_type", flat=True):
        counts[event_type] = counts.get(event_type, 0) + 1
    assert counts == {
        "subscriber.confirmed": 1,
        "subscriber.unsubscribed": 1,
        "subscriber.suppressed": 1,
    }


def test_a_resubscription_reports_the_reader_as_subscribed_again(article, make_endpoint):
    """Held: the re-subscription's ``subscriber.created`` is built from the row after the change
    (``subscribed`` true), not the stale one that had unsubscribed."""
    import json

    from backpain_report.services.subscribers import subscriber_signup, subscriber_unsubscribe

    make_endpoint()
    first = subscriber_signup(name="Ann", email="ann@example.com", article=article).subscriber
    subscriber_unsubscribe(subscriber_id=first.pk)
    subscriber_signup(name="Ann", email="ann@example.com", article=article)
    created = WebhookEvent.objects.filter(event_type="subscriber.created").order_by("pk")
    bodies = [json.loads(body) for body in created.values_list("body", flat=True)]
    assert [b["data"]["subscriber"]["subscribed"] for b in bodies] == [True, True]
