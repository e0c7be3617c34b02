"""The webhook admin: the endpoint list (last success, last failure, backlog) in a few queries,
the secret shown once (on creation and rotation) and never again, permissions, the test event,
retrying failed events, the URL rule and the events' checkboxes."""

from __future__ import annotations

import datetime
import re

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone, translation
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from backpain_report.admin.webhooks import WebhookEndpointAdmin, WebhookEndpointForm
from backpain_report.models import WebhookEndpoint, WebhookEvent
from backpain_report.services.webhooks import webhook_events_retry
from backpain_report.webhooks.endpoints import secret_new
from backpain_report.webhooks.outbox import webhook_id_new

LIST = "admin:backpain_report_webhookendpoint_changelist"
ADD = "admin:backpain_report_webhookendpoint_add"
EVENTS = "admin:backpain_report_webhookevent_changelist"
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
Status = WebhookEvent.Status


def change_url(endpoint: WebhookEndpoint) -> str:
    return reverse("admin:backpain_report_webhookendpoint_change", args=[endpoint.pk])


def rotate_url(endpoint: WebhookEndpoint) -> str:
    return reverse("admin:backpain_report_webhookendpoint_rotate_secret", args=[endpoint.pk])


def send_test_url(endpoint: WebhookEndpoint) -> str:
    return reverse("admin:backpain_report_webhookendpoint_send_test", args=[endpoint.pk])


def staff(client, *codenames: str) -> User:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def make_endpoint(name: str = "CRM", **fields) -> WebhookEndpoint:
    defaults = {
        "url": "https://crm.example.com/hooks",
        "secret": secret_new(),
        "event_types": "subscriber.created subscriber.confirmed",
    }
    return WebhookEndpoint.objects.create(name=name, **{**defaults, **fields})


def make_event(endpoint: WebhookEndpoint, **fields) -> WebhookEvent:
    defaults = {
        "event_type": "subscriber.created",
        "webhook_id": webhook_id_new(),
        "body": '{"type":"subscriber.created","data":{"subscriber":{"id":1}}}',
        "subscriber_ref": 1,
        "occurred_at": timezone.now(),
    }
    return WebhookEvent.objects.create(endpoint=endpoint, **{**defaults, **fields})


def new_endpoint_data(**fields) -> dict:
    return {
        "name": "Zapier",
        "url": "https://hooks.zapier.example/catch/1",
        "event_types": ["subscriber.created", "report.delivered"],
        "is_active": "on",
        "article": "",
        **fields,
    }


def verifies(signing: str, verifying: str) -> bool:
    """Whether a message signed with ``signing`` verifies with ``verifying``."""
    msg_id, now, body = "msg_1", datetime.datetime.now(tz=datetime.timezone.utc), '{"a":1}'
    signature = Webhook(signing).sign(msg_id, now, body)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    try:
        Webhook(verifying).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


# ---- The list -----------------------------------------------------------------------------


def test_the_list_shows_last_success_failure_and_backlog_in_few_queries(
    admin_client, django_assert_max_num_queries, article
):
    now = timezone.now()
    for n in range(8):
        endpoint = make_endpoint(f"Endpoint {n}", article=article if n % 2 else None)
        make_event(endpoint, status=Status.SENT, sent_at=now - datetime.timedelta(hours=n + 1))
        make_event(endpoint, status=Status.PENDING)
        make_event(endpoint, status=Status.SENDING)
        make_event(endpoint, status=Status.FAILED, last_error="HTTP 410")
        make_event(endpoint, status=Status.CANCELLED, last_error="erased")
    quiet = make_endpoint("Quiet", event_types="", is_active=False)
    with django_assert_max_num_queries(7):
        html = admin_client.get(reverse(LIST)).content.decode()
    for column in ("endpoint", "events", "active", "last success", "last failure", "backlog"):
        assert column.lower() in html.lower(), column
    assert html.count("https://crm.example.com/hooks") >= 8
    assert article.title in html and "Quiet" in html
    # Backlog: pending + sending = 2 per busy endpoint, linked to the events; none for Quiet.
    backlog_link = (
        f"{reverse(EVENTS)}?endpoint__id__exact={endpoint.pk}&amp;status__in=pending,sending"
    )
    assert f'<a href="{backlog_link}">2</a>' in html
    row = html[html.index(f'href="{change_url(quiet)}"') :]
    row = row[: row.index("</tr>")]
    assert row.count("—") >= 3 and ">0<" in row  # no success, no failure, no backlog
    assert not SECRET.search(html)


def test_the_list_dates_are_the_latest(admin_client):
    endpoint = make_endpoint()
    now = timezone.now()
    make_event(endpoint, status=Status.SENT, sent_at=now - datetime.timedelta(days=3))
    make_event(endpoint, status=Status.SENT, sent_at=now - datetime.timedelta(days=1))
    make_event(endpoint, status=Status.PENDING, last_error="HTTP 503")  # failed, will retry
    annotated = WebhookEndpointAdmin(WebhookEndpoint, admin.site).get_queryset(None).get()  # type: ignore[arg-type]
    assert annotated.last_sent_at == now - datetime.timedelta(days=1)
    assert annotated.last_failed_at is not None and annotated.backlog_count == 1


# ---- The secret, once -----------------------------------------------------------------------


def test_the_secret_is_shown_once_on_creation_and_never_again(admin_client):
    response = admin_client.post(reverse(ADD), new_endpoint_data())
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.startswith("whsec_") and endpoint.secret_rotated_at is not None
    page = response.content.decode()
    assert SECRET.findall(page) == [endpoint.secret]
    assert "only time the secret is shown" in page
    assert verifies(endpoint.secret, SECRET.findall(page)[0])
    # Afterwards: not on its page, not in the list, not in the history, not in the log.
    for url in (
        change_url(endpoint),
        reverse(LIST),
        reverse("admin:backpain_report_webhookendpoint_history", args=[endpoint.pk]),
        rotate_url(endpoint),
    ):
        html = admin_client.get(url).content.decode()
        assert endpoint.secret not in html and not SECRET.search(html), url
    for entry in LogEntry.objects.all():
        assert "whsec_" not in f"{entry.change_message} {entry.object_repr}"


def test_editing_keeps_the_secret_and_shows_it_nowhere(admin_client):
    endpoint = make_endpoint()
    secret = endpoint.secret
    response = admin_client.post(
        change_url(endpoint), new_endpoint_data(name="Renamed"), follow=True
    )
    assert response.status_code == 200 and secret not in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.name == "Renamed" and endpoint.secret == secret
    assert all("whsec_" not in e.change_message for e in LogEntry.objects.all())


def test_rotation_shows_a_new_secret_once_and_the_old_one_stops_verifying(admin_client):
    endpoint = make_endpoint()
    old = endpoint.secret
    confirm = admin_client.get(rotate_url(endpoint)).content.decode()
    assert "stops working" in confirm and not SECRET.search(confirm)
    response = admin_client.post(rotate_url(endpoint))
    assert "no-store" in response["Cache-Control"]
    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert SECRET.findall(response.content.decode()) == [endpoint.secret]
    assert verifies(endpoint.secret, endpoint.secret)
    assert not verifies(old, endpoint.secret)
    html = admin_client.get(change_url(endpoint)).content.decode()
    assert endpoint.secret not in html and old not in html
    (entry,) = LogEntry.objects.filter(object_id=str(endpoint.pk))
    assert "signing secret" in entry.get_change_message() and "whsec_" not in entry.change_message


# ---- Permissions ----------------------------------------------------------------------------


def test_view_only_staff_sees_no_secret_and_cannot_act(client, db, no_broker):
    endpoint = make_endpoint()
    failed = make_event(endpoint, status=Status.FAILED)
    staff(client, "view_webhookendpoint", "view_webhookevent")
    for url in (reverse(LIST), change_url(endpoint), reverse(EVENTS)):
        response = client.get(url)
        html = response.content.decode()
        assert response.status_code == 200, url
        assert endpoint.secret not in html and not SECRET.search(html)
    page = client.get(change_url(endpoint)).content.decode()
    assert "rotate-secret" not in page and "send-test-event" not in page
    assert "A reader confirmed the address <code>subscriber.confirmed</code>" in page
    assert client.get(rotate_url(endpoint)).status_code == 403
    assert client.post(rotate_url(endpoint)).status_code == 403
    assert client.post(send_test_url(endpoint)).status_code == 403
    for action in ("send_test_event", "retry_failed"):
        assert f'value="{action}"' not in client.get(reverse(LIST)).content.decode()
        client.post(reverse(LIST), {"action": action, "_selected_action": [endpoint.pk]})
    client.post(reverse(EVENTS), {"action": "retry_failed", "_selected_action": [failed.pk]})
    assert client.post(reverse(ADD), new_endpoint_data()).status_code == 403
    old = endpoint.secret
    endpoint.refresh_from_db()
    assert endpoint.secret == old
    assert list(WebhookEvent.objects.values_list("status", flat=True)) == [Status.FAILED]
    assert not no_broker and WebhookEndpoint.objects.count() == 1


def test_staff_without_permission_sees_nothing(client, db):
    endpoint = make_endpoint()
    staff(client)
    assert client.get(reverse(LIST)).status_code == 403
    assert client.get(change_url(endpoint)).status_code == 403
    assert client.get(rotate_url(endpoint)).status_code == 403


def test_nobody_adds_or_edits_an_event(admin_client):
    event = make_event(make_endpoint())
    url = reverse("admin:backpain_report_webhookevent_change", args=[event.pk])
    assert admin_client.get(reverse("admin:backpain_report_webhookevent_add")).status_code == 403
    page = admin_client.get(url).content.decode()
    assert 'name="_save"' not in page and "&quot;subscriber.created&quot;" in page
    admin_client.post(url, {"status": "sent", "body": "x"})
    event.refresh_from_db()
    assert event.status == Status.PENDING and event.body.startswith("{")


def test_an_erased_body_is_shown_as_erased(admin_client):
    event = make_event(make_endpoint(), body="", status=Status.CANCELLED)
    url = reverse("admin:backpain_report_webhookevent_change", args=[event.pk])
    assert "erased with the subscriber" in admin_client.get(url).content.decode()


# ---- Test event and retries -----------------------------------------------------------------


def test_the_test_event_is_queued_and_the_page_says_where_to_look(
    admin_client, no_broker, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(is_active=False)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(send_test_url(endpoint), follow=True)
    (event,) = WebhookEvent.objects.all()
    assert event.event_type == "test" and event.endpoint == endpoint
    assert no_broker == [event.pk]
    html = response.content.decode()
    assert "A test event for “CRM” is queued." in html
    assert f"{reverse(EVENTS)}?endpoint__id__exact={endpoint.pk}" in html
    assert admin_client.get(send_test_url(endpoint)).status_code == 405  # a GET changes nothing


def test_the_test_event_action_on_the_list(
    admin_client, no_broker, django_capture_on_commit_callbacks
):
    one, two = make_endpoint("One"), make_endpoint("Two")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse(LIST), {"action": "send_test_event", "_selected_action": [one.pk, two.pk]}
        )
    assert sorted(WebhookEvent.objects.values_list("endpoint__name", flat=True)) == ["One", "Two"]
    assert sorted(no_broker) == sorted(WebhookEvent.objects.values_list("pk", flat=True))


def test_retry_puts_back_only_failed_sendable_events(
    db, no_broker, django_capture_on_commit_callbacks
):
    endpoint, off = make_endpoint(), make_endpoint("Off", is_active=False)
    failed = make_event(endpoint, status=Status.FAILED, attempts=5, last_error="HTTP 503")
    erased = make_event(endpoint, status=Status.FAILED, attempts=5, body="")
    switched_off = make_event(off, status=Status.FAILED, attempts=5)
    others = [
        make_event(endpoint, status=status, attempts=1)
        for status in (Status.PENDING, Status.SENDING, Status.SENT, Status.CANCELLED)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_retry(WebhookEvent.objects.all()) == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.next_attempt_at) == (Status.PENDING, 0, None)
    assert no_broker == [failed.pk]
    for event in (erased, switched_off):
        event.refresh_from_db()
        assert (event.status, event.attempts) == (Status.FAILED, 5)
    assert [WebhookEvent.objects.get(pk=e.pk).status for e in others] == [
        Status.PENDING, Status.SENDING, Status.SENT, Status.CANCELLED
    ]  # fmt: skip


@pytest.mark.parametrize("where", ["endpoints", "events"])
def test_the_retry_actions(admin_client, no_broker, django_capture_on_commit_callbacks, where):
    endpoint, other = make_endpoint(), make_endpoint("Other")
    failed = make_event(endpoint, status=Status.FAILED, attempts=5)
    erased = make_event(endpoint, status=Status.FAILED, attempts=5, body="")
    elsewhere = make_event(other, status=Status.FAILED, attempts=5)
    url, selected = (
        (reverse(LIST), [endpoint.pk])
        if where == "endpoints"
        else (reverse(EVENTS), [failed.pk, erased.pk])
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            url, {"action": "retry_failed", "_selected_action": selected}, follow=True
        )
    html = response.content.decode()
    assert "1 failed event queued again." in html and "Left 1 failed event alone" in html
    assert no_broker == [failed.pk]
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert statuses == {failed.pk: "pending", erased.pk: "failed", elsewhere.pk: "failed"}


# ---- The form -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://crm.example.com/hooks", "must use https://"),
        ("http://127.0.0.1:8000/hooks", "must use https://"),  # DEBUG is off
        ("https://user:pw@crm.example.com/hooks", "user name or password"),
        ("ftp://crm.example.com/hooks", "must use https://."),
    ],
)
def test_a_bad_url_is_a_form_error(admin_client, url, problem):
    response = admin_client.post(reverse(ADD), new_endpoint_data(url=url))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["url"]
    assert any(error.startswith("The URL ") and problem in error for error in errors), errors
    assert not WebhookEndpoint.objects.exists() and not SECRET.search(response.content.decode())


def test_loopback_http_is_allowed_with_debug(admin_client, settings):
    settings.DEBUG = True
    admin_client.post(reverse(ADD), new_endpoint_data(url="http://127.0.0.1:8000/hooks"))
    assert WebhookEndpoint.objects.get().url == "http://127.0.0.1:8000/hooks"


def test_the_url_error_is_translated(db):
    with translation.override("de"):
        form = WebhookEndpointForm(new_endpoint_data(url="http://crm.example.com/"))
        assert form.errors["url"] == [
            "Die URL muss https:// verwenden (http:// nur zu einem "
            "Loopback-Host, solange DEBUG an ist)."
        ]


def test_the_event_checkboxes_round_trip(admin_client):
    page = admin_client.get(reverse(ADD)).content.decode()
    assert page.count('type="checkbox" name="event_types"') == 6
    assert 'value="test"' not in page
    admin_client.post(
        reverse(ADD),
        new_endpoint_data(event_types=["subscriber.erased", "subscriber.created"]),
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == "subscriber.created subscriber.erased"  # the list's order
    page = admin_client.get(change_url(endpoint)).content.decode()
    box = r'<input type="checkbox" name="event_types" value="([a-z.]+)"[^>]*checked'
    checked = re.findall(box, page)
    assert sorted(checked) == ["subscriber.created", "subscriber.erased"]
    admin_client.post(change_url(endpoint), new_endpoint_data(event_types=["report.delivered"]))
    endpoint.refresh_from_db()
    assert endpoint.event_types == "report.delivered" and endpoint.wants("report.delivered")


def test_no_event_chosen_is_a_form_error(admin_client):
    response = admin_client.post(reverse(ADD), new_endpoint_data(event_types=[]))
    assert "Choose at least one event." in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_an_unknown_event_is_refused(admin_client):
    response = admin_client.post(reverse(ADD), new_endpoint_data(event_types=["test"]))
    assert response.context["adminform"].form.errors["event_types"]
    assert not WebhookEndpoint.objects.exists()


def test_the_list_warns_when_events_wait_for_a_first_attempt_for_long(admin_client, clock):
    """A site whose worker does not consume WEBHOOK_QUEUE sees its backlog grow: the list says
    which queue to consume."""
    endpoint = WebhookEndpoint.objects.create(
        name="CRM", url="https://crm.example.com/hook", secret="whsec_AAAA", event_types="test"
    )
    WebhookEvent.objects.create(
        endpoint=endpoint,
        event_type="test",
        webhook_id="msg_waiting",
        body="{}",
        occurred_at=timezone.now(),
    )
    url = reverse("admin:backpain_report_webhookendpoint_changelist")
    assert "without a first attempt" not in admin_client.get(url).content.decode()
    clock.shift(datetime.timedelta(minutes=11))
    page = admin_client.get(url).content.decode()
    assert "1 event has waited over 10 minutes without a first attempt" in page
    assert "backpain_webhooks" in page
