"""Webhooks core: events recorded with their change, signed, posted to a real loopback receiver,
retried, swept; and what an attacker or a crash at the worst moment can do to it."""

from __future__ import annotations

import datetime
import email.utils
import json
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from backpain_report import broker, tasks
from backpain_report.conf import app_settings
from backpain_report.delivery import webhook_http
from backpain_report.delivery.sending import Outcome, delivery_send
from backpain_report.delivery.sweep import webhook_events_sweep
from backpain_report.delivery.webhooks import webhook_claim, webhook_send
from backpain_report.models import Delivery, WebhookEndpoint, WebhookEvent
from backpain_report.rights.suppression import subscriber_suppress
from backpain_report.services.privacy import subscriber_erase, subscribers_delete
from backpain_report.services.subscribers import (
    subscriber_confirm,
    subscriber_signup,
    subscriber_unsubscribe,
)
from backpain_report.webhooks.endpoints import secret_new, url_problem
from backpain_report.webhooks.events import SUBSCRIBABLE, EventType
from backpain_report.webhooks.outbox import WEBHOOK_TASK, events_record
from backpain_report.webhooks.outbox import test_event_record as record_test_event
from tests.webhook_loopback import Handler, Loopback

ALL_TYPES = " ".join(choice.value for choice in SUBSCRIBABLE)


def app_set(settings, **values) -> None:
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, **values}


@pytest.fixture
def hook_settings(settings):
    """A development site: DEBUG on, loopback allowed, short timeouts."""
    settings.DEBUG = True
    app_set(
        settings,
        WEBHOOK_ALLOWED_NETWORKS=["127.0.0.0/8"],
        WEBHOOK_CONNECT_TIMEOUT=1,
        WEBHOOK_READ_TIMEOUT=2,
        MAX_ATTEMPTS=3,
    )
    return settings


@pytest.fixture
def published(monkeypatch):
    """Every message published: (task name, args, options)."""
    sent: list[tuple[str, list, dict]] = []

    def record(name, args=None, **options):
        sent.append((name, args, options))

    monkeypatch.setattr(broker.current_app, "send_task", record)
    return sent


@pytest.fixture
def receiver():
    with Loopback() as loopback:
        yield loopback


@pytest.fixture
def make_endpoint(db):
    def make(url: str = "https://crm.example.com/hook", **fields) -> WebhookEndpoint:
        defaults = {"name": "CRM", "secret": secret_new(), "event_types": ALL_TYPES}
        return WebhookEndpoint.objects.create(url=url, **{**defaults, **fields})

    return make


def event_for(endpoint: WebhookEndpoint, subscriber=None, event_type=EventType.SUBSCRIBER_CREATED):
    with transaction.atomic():
        (pk,) = events_record(event_type, subscriber, subscriber_id=None if subscriber else 7)
    return WebhookEvent.objects.get(pk=pk)


def verified(endpoint: WebhookEndpoint, request) -> dict:
    """The request's payload, after checking its signature as a receiver would."""
    return Webhook(endpoint.secret).verify(request.body, request.headers)


# --- recording: one row per wanting endpoint, exactly when the change commits -----------------


def _signup(article):
    return subscriber_signup(name="Ann", email="ann@example.com", article=article).subscriber


@pytest.mark.parametrize(
    "event_type, change",
    [
        (EventType.SUBSCRIBER_CREATED, lambda s, article: _signup(article)),
        (EventType.SUBSCRIBER_CONFIRMED, lambda s, article: subscriber_confirm(subscriber=s)),
        (
            EventType.SUBSCRIBER_UNSUBSCRIBED,
            lambda s, article: subscriber_unsubscribe(subscriber_id=s.pk),
        ),
        (
            EventType.SUBSCRIBER_SUPPRESSED,
            lambda s, article: subscriber_suppress(subscriber_id=s.pk, reason="bounced"),
        ),
        (EventType.SUBSCRIBER_ERASED, lambda s, article: subscriber_erase(subscriber=s)),
        (
            EventType.REPORT_DELIVERED,
            lambda s, article: delivery_send(
                delivery_id=Delivery.objects.create(
                    subscriber=s, report=article.report, edition=article.report.edition
                ).pk
            ),
        ),
    ],
)
def test_each_event_is_recorded_when_its_change_commits_and_not_on_rollback(
    event_type,
    change,
    article,
    make_subscriber,
    make_endpoint,
    published,
    django_capture_on_commit_callbacks,
):
    wants = make_endpoint(name="wants it", event_types=event_type.value)
    make_endpoint(name="wants others", event_types="test subscriber.nothing")
    make_endpoint(name="switched off", event_types=ALL_TYPES, is_active=False)
    for_this_article = make_endpoint(name="this article", article=article)
    subscriber = make_subscriber(email="zed@example.com")

    class Rollback(Exception):
        pass

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Rollback),
        transaction.atomic(),
    ):
        change(subscriber, article)
        assert WebhookEvent.objects.filter(event_type=event_type).exists()
        raise Rollback
    assert not WebhookEvent.objects.exists()
    assert not [c for c in callbacks if "events_publish" in repr(c)]
    assert not [p for p in published if p[0] == WEBHOOK_TASK]

    subscriber.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        change(subscriber, article)
    rows = WebhookEvent.objects.filter(event_type=event_type).order_by("endpoint_id")
    assert [row.endpoint_id for row in rows] == [wants.pk, for_this_article.pk]
    assert {row.webhook_id for row in rows} == {row.webhook_id for row in rows if row.webhook_id}
    assert len({row.webhook_id for row in rows}) == 2
    hooks = [(args, options) for name, args, options in published if name == WEBHOOK_TASK]
    assert sorted(args[0] for args, _o in hooks) == sorted(row.pk for row in rows)
    assert {options["queue"] for _a, options in hooks} == {"backpain_webhooks"}


def test_an_endpoint_for_another_article_gets_nothing(article, make_subscriber, make_endpoint):
    other = type(article).objects.create(title="Other", slug="other", report=article.report)
    make_endpoint(article=other)
    with transaction.atomic():
        assert events_record(EventType.SUBSCRIBER_CREATED, make_subscriber()) == []


def test_without_endpoints_recording_costs_one_query(make_subscriber):
    subscriber = make_subscriber()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        assert events_record(EventType.SUBSCRIBER_CREATED, subscriber) == []
    assert len([q for q in queries if "SAVEPOINT" not in q["sql"]]) == 1
    from backpain_report.webhooks.outbox import events_record_by_id

    with CaptureQueriesContext(connection) as queries:
        assert events_record_by_id(EventType.SUBSCRIBER_SUPPRESSED, subscriber.pk) == []
    assert len(queries) == 1


# --- payloads ------------------------------------------------------------------------------


def test_payload_schema_v1_for_each_personal_event(
    settings, article, make_subscriber, make_endpoint
):
    app_set(settings, HASH_IP=False)
    endpoint = make_endpoint()
    subscriber = make_subscriber(consent_ip="203.0.113.9", utm_source="news")
    for event_type in SUBSCRIBABLE:
        if event_type is EventType.SUBSCRIBER_ERASED:
            continue
        payload = json.loads(event_for(endpoint, subscriber, event_type).body)
        assert payload["type"] == event_type.value
        assert payload["timestamp"].endswith("Z")
        data = payload["data"]
        assert data["schema_version"] == 1
        assert set(data) == {"schema_version", "subscriber", "article", "report"}
        person = data["subscriber"]
        assert person["id"] == subscriber.pk and person["email"] == subscriber.email
        assert person["name"] == subscriber.name
        assert set(person) == {
            "id", "email", "name", "language", "source", "consent", "subscribed", "suppressed"
        }  # fmt: skip
        assert set(person["source"]) == {
            "utm_source", "utm_medium", "utm_campaign", "referrer_host", "page"
        }  # fmt: skip
        assert person["source"]["utm_source"] == "news"
        assert person["consent"]["ip"] == "203.0.113.9"
        assert set(data["article"]) == {"id", "slug", "title", "url"}
        assert data["article"]["url"].startswith("https://reports.example.com/")
        assert data["report"]["id"] == article.report.pk
        assert set(data["report"]) == {"id", "slug", "title", "edition"}


def test_with_hash_ip_on_the_payload_has_no_ip(settings, make_subscriber, make_endpoint):
    app_set(settings, HASH_IP=True)
    payload = json.loads(event_for(make_endpoint(), make_subscriber(consent_ip="abc")).body)
    assert "ip" not in payload["data"]["subscriber"]["consent"]


def test_erased_carries_the_id_only_and_blanks_earlier_bodies(
    make_subscriber, make_endpoint, published, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint()
    subscriber = make_subscriber(email="secret.person@example.com", name="Secret Person")
    earlier = event_for(endpoint, subscriber)
    with django_capture_on_commit_callbacks(execute=True):
        subscriber_erase(subscriber=subscriber)
    erased = WebhookEvent.objects.get(event_type=EventType.SUBSCRIBER_ERASED)
    payload = json.loads(erased.body)
    assert payload["data"] == {"schema_version": 1, "subscriber": {"id": subscriber.pk}}
    assert not erased.personal
    for row in WebhookEvent.objects.all():
        assert "secret" not in row.body.lower() and "Secret" not in row.last_error
    earlier.refresh_from_db()
    assert (earlier.status, earlier.body) == (WebhookEvent.Status.CANCELLED, "")


def test_deleting_subscribers_records_erased_for_each(make_subscriber, make_endpoint):
    make_endpoint()
    readers = [make_subscriber(), make_subscriber()]
    subscribers_delete(type(readers[0]).objects.filter(pk__in=[r.pk for r in readers]))
    assert sorted(
        WebhookEvent.objects.filter(event_type=EventType.SUBSCRIBER_ERASED).values_list(
            "subscriber_ref", flat=True
        )
    ) == sorted(r.pk for r in readers)


# --- sending to a real loopback receiver ----------------------------------------------------


def test_a_2xx_is_sent_signed_with_the_stored_body(
    hook_settings, receiver, make_subscriber, make_endpoint
):
    endpoint = make_endpoint(url=receiver.url)
    event = event_for(endpoint, make_subscriber())
    result = webhook_send(event_id=event.pk)
    assert result.outcome is Outcome.SENT
    [request] = receiver.requests
    assert request.path == "/hook?x=1"
    assert request.body == event.body.encode("utf-8")
    assert verified(endpoint, request) == json.loads(event.body)
    assert request.headers["webhook-id"] == event.webhook_id
    assert request.headers["Content-Type"] == "application/json"
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_status_code) == ("sent", 1, 200)
    assert event.sent_at is not None
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED  # never twice
    assert len(receiver.requests) == 1


def test_500_then_200_retries_with_the_same_id_and_a_fresh_timestamp(
    hook_settings, receiver, make_subscriber, make_endpoint, clock
):
    endpoint = make_endpoint(url=receiver.url)
    event = event_for(endpoint, make_subscriber())
    receiver.script = [500]
    first = webhook_send(event_id=event.pk)
    assert first.outcome is Outcome.RETRY and first.retry_in > 0
    event.refresh_from_db()
    assert (event.status, event.last_status_code) == ("pending", 500)
    assert event.last_error == "HTTP 500: ok"
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED  # not due yet
    clock.shift(first.retry_in + 1)
    assert webhook_send(event_id=event.pk).outcome is Outcome.SENT
    one, two = receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == event.webhook_id
    assert one.body == two.body
    assert int(two.headers["webhook-timestamp"]) - int(one.headers["webhook-timestamp"]) >= int(
        first.retry_in
    )
    for request in (one, two):
        verified(endpoint, request)


def _status_with(status: int, headers: dict[str, str], body: bytes = b""):
    def step(handler: Handler) -> None:
        handler.answer(status, body, headers)

    return step


def test_429_waits_at_least_retry_after(hook_settings, receiver, make_endpoint):
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [_status_with(429, {"Retry-After": "120"})]
    before = timezone.now()
    result = webhook_send(event_id=event.pk)
    assert result.outcome is Outcome.RETRY and result.retry_in >= 120
    event.refresh_from_db()
    assert event.next_attempt_at >= before + datetime.timedelta(seconds=120)


def test_503_with_an_http_date_retry_after(hook_settings, receiver, make_endpoint):
    event = event_for(make_endpoint(url=receiver.url))
    when = email.utils.format_datetime(
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2), usegmt=True
    )
    receiver.script = [_status_with(503, {"Retry-After": when})]
    result = webhook_send(event_id=event.pk)
    assert result.outcome is Outcome.RETRY
    assert 7000 <= result.retry_in <= 7300


@pytest.mark.parametrize(
    "value, at_least, at_most",
    [
        ("999999999999999999999999", 24 * 3600, 24 * 3600),  # capped at a day
        ("-5", 0, 3600),
        ("soon", 0, 3600),
        ("1.5e3", 0, 3600),
        ("\u00b2", 0, 3600),  # a digit to str.isdigit, not to float()
        ("\u0661\u0662\u0660", 0, 3600),  # Arabic-Indic digits
        ("Mon, 01 Jan 99999 00:00:00 GMT", 0, 3600),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0, 3600),
    ],
)
def test_a_hostile_retry_after_never_breaks_the_retry(
    hook_settings, receiver, make_endpoint, value, at_least, at_most
):
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [_status_with(503, {"Retry-After": value})]
    result = webhook_send(event_id=event.pk)
    assert result.outcome is Outcome.RETRY, result
    assert at_least <= result.retry_in <= at_most


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_is_final(hook_settings, receiver, make_endpoint, status):
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [status]
    assert webhook_send(event_id=event.pk).outcome is Outcome.FAILED
    event.refresh_from_db()
    assert (event.status, event.last_status_code, event.attempts) == ("failed", status, 1)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_final_and_never_followed(hook_settings, receiver, make_endpoint, status):
    event = event_for(make_endpoint(url=receiver.url))
    target = receiver.url.replace("/hook", "/elsewhere")
    receiver.script = [
        _status_with(status, {"Location": target}),
        _status_with(status, {"Location": "http://169.254.169.254/latest/meta-data/"}),
    ]
    assert webhook_send(event_id=event.pk).outcome is Outcome.FAILED
    assert [r.path for r in receiver.requests] == ["/hook?x=1"]
    event.refresh_from_db()
    assert "not followed" in event.last_error and "/elsewhere" in event.last_error


def _sleep(seconds: float):
    def step(handler: Handler) -> None:
        handler.loopback.closing.wait(seconds)
        handler.answer(200, b"late")

    return step


def test_a_read_timeout_is_retried(hook_settings, receiver, make_endpoint):
    app_set(hook_settings, WEBHOOK_READ_TIMEOUT=0.3)
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [_sleep(5)]
    started = time.monotonic()
    result = webhook_send(event_id=event.pk)
    assert time.monotonic() - started < 3
    assert result.outcome is Outcome.RETRY
    event.refresh_from_db()
    assert event.status == "pending" and "timed out" in event.last_error.lower()


def _trickle(first: bytes, every: float = 0.05, most: float = 6.0):
    def step(handler: Handler) -> None:
        handler.wfile.write(first)
        handler.wfile.flush()
        stop = time.monotonic() + most
        while time.monotonic() < stop and not handler.loopback.closing.wait(every):
            handler.wfile.write(b"a")
            handler.wfile.flush()
        handler.close_connection = True

    return step


def test_a_trickling_receiver_is_cut_at_the_deadline(hook_settings, receiver, make_endpoint):
    app_set(hook_settings, WEBHOOK_CONNECT_TIMEOUT=0.3, WEBHOOK_READ_TIMEOUT=0.5)
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [_trickle(b"HTTP/1.1 200")]  # the status line never ends
    started = time.monotonic()
    result = webhook_send(event_id=event.pk)
    assert time.monotonic() - started < 2.5
    assert result.outcome is Outcome.RETRY
    event.refresh_from_db()
    assert "no complete answer within 0.8 s" in event.last_error


def test_a_2xx_whose_body_never_ends_counts_as_delivered(hook_settings, receiver, make_endpoint):
    """The status line is the answer; a body trickled past the deadline must not turn a
    delivered event into a retry (and a duplicate at the receiver)."""
    app_set(hook_settings, WEBHOOK_CONNECT_TIMEOUT=0.3, WEBHOOK_READ_TIMEOUT=0.5)
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [_trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")]
    started = time.monotonic()
    assert webhook_send(event_id=event.pk).outcome is Outcome.SENT
    assert time.monotonic() - started < 2.5


def test_a_large_answer_is_read_only_up_to_the_limit(
    hook_settings, receiver, make_endpoint, monkeypatch
):
    app_set(hook_settings, WEBHOOK_MAX_RESPONSE_BYTES=1000)
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [_status_with(500, {}, b"x" * 5_000_000)]
    seen: list[webhook_http.Answer] = []
    post = webhook_http.post
    monkeypatch.setattr(
        webhook_http, "post", lambda *a, **k: seen.append(post(*a, **k)) or seen[-1]
    )
    assert webhook_send(event_id=event.pk).outcome is Outcome.RETRY
    assert len(seen[0].body) == 1000
    event.refresh_from_db()
    assert len(event.last_error) < 300


def test_max_attempts_exhausted_fails(hook_settings, receiver, make_endpoint, clock):
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [502, 502, 502]
    outcomes = []
    for _ in range(3):
        outcomes.append(webhook_send(event_id=event.pk).outcome)
        clock.shift(4000)
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.FAILED]
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_status_code) == ("failed", 3, 502)
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED
    assert len(receiver.requests) == 3


def test_a_connection_refused_is_retried(hook_settings, make_endpoint):
    with Loopback() as gone:
        url = gone.url
    event = event_for(make_endpoint(url=url))
    result = webhook_send(event_id=event.pk)
    assert result.outcome is Outcome.RETRY
    event.refresh_from_db()
    assert "ConnectionRefused" in event.last_error


def test_two_claims_of_one_event_send_once(hook_settings, receiver, make_endpoint):
    event = event_for(make_endpoint(url=receiver.url))
    assert webhook_claim(event_id=event.pk) is not None
    assert webhook_claim(event_id=event.pk) is None
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED
    assert receiver.requests == []


def test_worker_dies_after_the_post_the_stale_claim_is_sent_again_with_the_same_id(
    hook_settings, receiver, make_endpoint, clock, published
):
    """A worker that posted and died before recording: its claim goes stale, the sweep
    re-publishes the row, the next run posts again with the same webhook-id (the receiver
    deduplicates); at the attempt limit the claim is failed instead."""
    endpoint = make_endpoint(url=receiver.url)
    event = event_for(endpoint)
    claimed = webhook_claim(event_id=event.pk)
    from backpain_report.delivery.webhooks import _call

    _call(claimed)  # posted; the worker dies here, nothing recorded
    clock.shift(float(app_settings.CLAIM_LEASE) + 3600)
    assert webhook_events_sweep().found == 1
    assert [args for _n, args, _o in published] == [[event.pk]]
    assert webhook_send(event_id=event.pk).outcome is Outcome.SENT
    one, two = receiver.requests
    assert one.headers["webhook-id"] == two.headers["webhook-id"]
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("sent", 2)


def test_a_stale_claim_at_the_limit_is_failed(hook_settings, receiver, make_endpoint, clock):
    event = event_for(make_endpoint(url=receiver.url))
    WebhookEvent.objects.filter(pk=event.pk).update(
        status="sending", attempts=3, claimed_at=timezone.now()
    )
    clock.shift(3 * 3600)
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED
    event.refresh_from_db()
    assert event.status == "failed" and "Worker lost" in event.last_error
    assert receiver.requests == []


def test_erase_during_a_retry_cancels_and_never_sends(
    hook_settings, receiver, make_subscriber, make_endpoint, clock
):
    endpoint = make_endpoint(url=receiver.url)
    subscriber = make_subscriber()
    event = event_for(endpoint, subscriber)
    receiver.script = [500]
    assert webhook_send(event_id=event.pk).outcome is Outcome.RETRY
    subscriber_erase(subscriber=subscriber)
    event.refresh_from_db()
    assert (event.status, event.body, event.next_attempt_at) == ("cancelled", "", None)
    clock.shift(4000)
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED
    assert len(receiver.requests) == 1


def test_erase_while_sending_skips_the_record(
    hook_settings, receiver, make_subscriber, make_endpoint, monkeypatch
):
    endpoint = make_endpoint(url=receiver.url)
    subscriber = make_subscriber()
    event = event_for(endpoint, subscriber)

    post = webhook_http.post

    def erase_then_post(*args, **kwargs):
        subscriber_erase(subscriber=subscriber)  # in another process, as the POST goes out
        return post(*args, **kwargs)

    monkeypatch.setattr(webhook_http, "post", erase_then_post)
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED
    event.refresh_from_db()
    assert (event.status, event.body) == ("cancelled", "")


def test_a_switched_off_endpoint_keeps_its_backlog_until_switched_on(
    hook_settings, receiver, make_endpoint, clock, published
):
    endpoint = make_endpoint(url=receiver.url)
    event = event_for(endpoint)
    published.clear()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    assert webhook_send(event_id=event.pk).outcome is Outcome.SKIPPED
    clock.shift(3 * 3600)
    assert webhook_events_sweep().found == 0
    assert published == []
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=True)
    assert webhook_events_sweep().found == 1
    assert [(n, a, o["queue"]) for n, a, o in published] == [
        (WEBHOOK_TASK, [event.pk], "backpain_webhooks")
    ]
    assert webhook_send(event_id=event.pk).outcome is Outcome.SENT


def test_broker_down_at_commit_the_sweep_publishes(
    make_subscriber, make_endpoint, monkeypatch, django_capture_on_commit_callbacks, published
):
    make_endpoint()

    def down(name, args=None, **options):
        raise ConnectionError("broker down")

    monkeypatch.setattr(broker.current_app, "send_task", down)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        events_record(EventType.SUBSCRIBER_CREATED, make_subscriber())
    event = WebhookEvent.objects.get()
    assert event.publish_failed_at is not None
    sent: list = []
    monkeypatch.setattr(
        broker.current_app, "send_task", lambda name, args=None, **o: sent.append((args, o))
    )
    result = webhook_events_sweep()
    assert (result.found, result.published) == (1, 1)
    assert sent == [([event.pk], sent[0][1])] and sent[0][1]["queue"] == "backpain_webhooks"
    event.refresh_from_db()
    assert event.publish_failed_at is None


def test_the_task_publishes_a_retry_with_its_countdown(
    hook_settings, receiver, make_endpoint, published
):
    event = event_for(make_endpoint(url=receiver.url))
    published.clear()
    receiver.script = [_status_with(429, {"Retry-After": "300"})]
    assert tasks.deliver_webhook(event.pk) == Outcome.RETRY.value
    [(name, args, options)] = published
    assert (name, args, options["queue"]) == (WEBHOOK_TASK, [event.pk], "backpain_webhooks")
    assert options["countdown"] >= 300


def test_a_test_event_goes_to_an_inactive_endpoint_row(make_endpoint, published):
    endpoint = make_endpoint(is_active=False)
    event = WebhookEvent.objects.get(pk=record_test_event(endpoint))
    assert json.loads(event.body)["data"] == {"schema_version": 1, "endpoint": "CRM"}


# --- attacks ---------------------------------------------------------------------------------


def test_a_nul_in_the_answer_is_not_stored(hook_settings, receiver, make_endpoint):
    """PostgreSQL refuses NUL in text: storing a receiver's raw answer would crash the task."""
    event = event_for(make_endpoint(url=receiver.url))
    receiver.script = [_status_with(500, {}, b"bad\x00\xff\xfeanswer\x1b[31m")]
    assert webhook_send(event_id=event.pk).outcome is Outcome.RETRY
    event.refresh_from_db()
    assert "\x00" not in event.last_error and "\x1b" not in event.last_error
    assert event.last_error.startswith("HTTP 500: bad")


def test_a_redirect_location_with_control_characters_is_not_stored_raw(
    hook_settings, receiver, make_endpoint
):
    event = event_for(make_endpoint(url=receiver.url))

    def step(handler: Handler) -> None:
        handler.wfile.write(b"HTTP/1.1 302 Found\r\nLocation: /x\x00\x7f\r\nContent-Length: 0\r\n")
        handler.wfile.write(b"Connection: close\r\n\r\n")

    receiver.script = [step]
    assert webhook_send(event_id=event.pk).outcome is Outcome.FAILED
    event.refresh_from_db()
    assert "\x00" not in event.last_error


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!", "whsec_\u00e9t\u00e9", ""])
def test_a_broken_secret_fails_the_event_instead_of_crashing(
    hook_settings, receiver, make_endpoint, secret
):
    endpoint = make_endpoint(url=receiver.url)
    event = event_for(endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=secret)
    result = webhook_send(event_id=event.pk)
    assert result.outcome is Outcome.FAILED
    event.refresh_from_db()
    assert event.status == "failed" and "secret" in event.last_error
    assert receiver.requests == []


def test_a_secret_without_padding_still_verifies(hook_settings, receiver, make_endpoint):
    endpoint = make_endpoint(url=receiver.url)
    event = event_for(endpoint)
    unpadded = endpoint.secret.rstrip("=")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=unpadded)
    assert webhook_send(event_id=event.pk).outcome is Outcome.SENT
    verified(endpoint, receiver.requests[0])


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.example.com/a b",
        "https://crm.example.com/a\r\nX-Injected: 1",
        "https://crm.example.com/\u00e9",
        "https://crm.example.com:0/",
    ],
)
def test_a_url_that_cannot_be_requested_is_final_and_injects_nothing(
    hook_settings, make_endpoint, monkeypatch, url
):
    monkeypatch.setattr(
        webhook_http.socket,
        "getaddrinfo",
        lambda *a, **k: [(2, 1, 6, "", ("93.184.216.34", 443))],
    )
    connected: list = []

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(webhook_http.socket, "create_connection", create_connection)
    event = event_for(make_endpoint(url=url))
    assert webhook_send(event_id=event.pk).outcome is Outcome.FAILED
    assert connected == []
    event.refresh_from_db()
    assert event.attempts == 1 and "URL" in event.last_error


def test_only_the_standard_headers_are_sent(hook_settings, receiver, make_endpoint):
    """Nothing the endpoint or the event holds becomes a header of its own."""
    event = event_for(make_endpoint(url=receiver.url))
    webhook_send(event_id=event.pk)
    assert {name.lower() for name in receiver.requests[0].headers} == {
        "host", "accept-encoding", "content-length", "content-type", "user-agent",
        "webhook-id", "webhook-timestamp", "webhook-signature",
    }  # fmt: skip


def test_a_non_http_answer_is_retried(hook_settings, receiver, make_endpoint):
    event = event_for(make_endpoint(url=receiver.url))

    def garbage(handler: Handler) -> None:
        handler.wfile.write(b"\xff\xfe\x00garbage\r\n\r\n")

    receiver.script = [garbage]
    assert webhook_send(event_id=event.pk).outcome is Outcome.RETRY
    event.refresh_from_db()
    assert "\x00" not in event.last_error


def test_url_problem_refuses_port_zero_and_control_characters_but_not_an_idn_host():
    assert url_problem("https://crm.example.com:0/hook") is not None
    assert url_problem("https://crm.example.com/a\x00b") is not None
    assert url_problem("https://crm.example.com/a\tb") is not None
    assert url_problem("https://b\u00fccher.example/hook") is None


def test_a_2xx_whose_body_stalls_past_the_read_timeout_counts_as_delivered(
    hook_settings, receiver, make_endpoint
):
    app_set(hook_settings, WEBHOOK_CONNECT_TIMEOUT=1, WEBHOOK_READ_TIMEOUT=0.3)
    event = event_for(make_endpoint(url=receiver.url))

    def stall(handler: Handler) -> None:
        handler.wfile.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nabc")
        handler.wfile.flush()
        handler.loopback.closing.wait(5)

    receiver.script = [stall]
    assert webhook_send(event_id=event.pk).outcome is Outcome.SENT
    assert len(receiver.requests) == 1


def test_a_tls_handshake_that_trickles_is_cut_at_the_deadline():
    """A receiver that answers the ClientHello with a TLS record one byte at a time, each byte
    within the read timeout: the handshake as a whole is bounded (Python's ssl applies the
    socket timeout to the whole handshake, before the overall deadline can reach the socket)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KiB follows...
            while not stop.wait(0.05):
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return

    thread = threading.Thread(target=serve)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            webhook_http.post(
                f"https://127.0.0.1:{port}/hook",
                b"{}",
                {},
                connect_timeout=0.3,
                read_timeout=0.5,
                max_bytes=100,
                allowed=webhook_http.networks_parse(["127.0.0.0/8"]),
            )
        assert time.monotonic() - started < 2.5
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_broker_down_for_a_retry_the_sweep_publishes_it_once_due(
    hook_settings, receiver, make_endpoint, monkeypatch, clock
):
    event = event_for(make_endpoint(url=receiver.url))

    def down(name, args=None, **options):
        raise ConnectionError("broker down")

    monkeypatch.setattr(broker.current_app, "send_task", down)
    receiver.script = [_status_with(503, {"Retry-After": "600"})]
    assert tasks.deliver_webhook(event.pk) == Outcome.RETRY.value
    event.refresh_from_db()
    assert event.status == "pending" and event.publish_failed_at is not None
    sent: list = []
    monkeypatch.setattr(
        broker.current_app, "send_task", lambda name, args=None, **o: sent.append(args)
    )
    assert webhook_events_sweep().found == 0  # not due: a message now would only be early
    clock.shift(601)
    assert webhook_events_sweep().found == 1
    assert sent == [[event.pk]]
    assert tasks.deliver_webhook(event.pk) == Outcome.SENT.value
