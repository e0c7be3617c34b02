"""Bounces and complaints: anymail's real tracking webhooks suppress addresses, and nothing is
sent to a suppressed address again (docs, "Bounces and complaints").

Payloads have the shapes Amazon SES (inside its SNS envelope) and Mailgun post; they go to the
webhook URLs of the test site (``/anymail/...``, tests/urls.py) with the auth set in
tests/settings.py. Mail goes through anymail's ``test`` EmailBackend.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import uuid

import django
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from backpain_report import broker, selectors, stats, tasks
from backpain_report.delivery import publishing
from backpain_report.delivery.sending import Outcome, delivery_send
from backpain_report.delivery.sweep import deliveries_sweep
from backpain_report.models import Delivery, MailEvent, Subscriber
from backpain_report.rights import bounces
from backpain_report.rights.suppression import SUPPRESSED_PREFIX
from backpain_report.services import deliveries, privacy, subscribers

pytest.importorskip("anymail")

ANYMAIL_TEST_BACKEND = "anymail.backends.test.EmailBackend"

SES_URL = "/anymail/amazon_ses/tracking/"
MAILGUN_URL = "/anymail/mailgun/tracking/"
BASIC_AUTH = "Basic " + base64.b64encode(b"webhook-user:webhook-password").decode()
MAILGUN_KEY = b"mailgun-signing-key-for-tests"


@pytest.fixture(autouse=True)
def anymail_test_backend():
    """Every send goes through anymail's test backend (it collects into ``mail.outbox``)."""
    if django.VERSION >= (6, 1):
        mail_settings = {"MAILERS": {"default": {"BACKEND": ANYMAIL_TEST_BACKEND}}}
    else:
        mail_settings = {"EMAIL_BACKEND": ANYMAIL_TEST_BACKEND}
    with override_settings(**mail_settings):
        mail.outbox = []
        yield mail.outbox


@pytest.fixture
def sent_report(make_subscriber, make_delivery):
    """A reader who was sent the report (through the test backend), with our Message-ID."""
    reader = make_subscriber(email="ann@example.com", name="Ann")
    delivery = make_delivery(subscriber=reader)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    delivery.refresh_from_db()
    assert delivery.message_id and len(mail.outbox) == 1
    return delivery


# --- payloads ---------------------------------------------------------------------------------


def _iso(when: datetime.datetime) -> str:
    """A time as SES and SNS write it (``YYYY-MM-DDThh:mm:ss.mmmZ``, UTC)."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{when.microsecond // 1000:03d}Z"
    )


def _sns(ses_event: dict, *, message_id: str | None = None) -> dict:
    """An SNS Notification carrying an SES event, as SNS posts it to an HTTPS subscription.

    Every time in these payloads is built from the test's clock (``timezone.now()``), never
    written in: a date near today ages out of the window it was written for (issue 20).
    """
    message_id = message_id or str(uuid.uuid4())
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:backpain-ses-events",
        "Message": json.dumps(ses_event),
        "Timestamp": _iso(timezone.now()),
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJlLW5vdC1jaGVja2VkLWluLXRlc3Rz",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&x=y",
    }


def _ses_mail(recipient: str, our_message_id: str = "", *, sent: datetime.datetime) -> dict:
    headers = {"from": ["Back Pain Reports <reports@example.com>"], "to": [recipient]}
    if our_message_id:
        headers["messageId"] = our_message_id
    return {
        "timestamp": _iso(sent),
        "source": "reports@example.com",
        "sendingAccountId": "123456789012",
        "messageId": "0102018f-ses-own-id-000000",  # SES's id, not ours
        "destination": [recipient],
        "headersTruncated": False,
        "commonHeaders": {**headers, "subject": "Your free report"},
    }


def ses_bounce(
    recipient: str,
    bounce_type: str = "Permanent",
    our_message_id: str = "",
    *,
    when: datetime.datetime | None = None,
) -> dict:
    when = when or timezone.now()
    sub_type = "General" if bounce_type == "Permanent" else "MailboxFull"
    return _sns(
        {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": sub_type,
                "bouncedRecipients": [
                    {
                        "emailAddress": recipient,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": _iso(when),
                "feedbackId": "0102018f-feedback-1",
                "reportingMTA": "dns; mx.example.net",
            },
            "mail": _ses_mail(recipient, our_message_id, sent=when - datetime.timedelta(seconds=1)),
        }
    )


def ses_complaint(recipient: str) -> dict:
    when = timezone.now()
    return _sns(
        {
            "notificationType": "Complaint",  # the older notification format
            "complaint": {
                "complainedRecipients": [{"emailAddress": recipient}],
                "timestamp": _iso(when),
                "feedbackId": "0102018f-feedback-2",
                "userAgent": "ExampleMail/1.0",
                "complaintFeedbackType": "abuse",
            },
            "mail": _ses_mail(recipient, sent=when - datetime.timedelta(minutes=5)),
        }
    )


def post_ses(client, sns: dict, *, auth: bool = True):
    headers = {"x-amz-sns-message-type": sns["Type"], "x-amz-sns-message-id": sns["MessageId"]}
    if auth:
        headers["authorization"] = BASIC_AUTH
    return client.post(
        SES_URL, data=json.dumps(sns), content_type="text/plain; charset=UTF-8", headers=headers
    )


def mailgun_event(event: str, recipient: str, **fields) -> dict:
    """Mailgun's JSON webhook body: a signature block and ``event-data``, signed."""
    token = fields.pop("token", None) or uuid.uuid4().hex
    timestamp = str(int(fields.pop("when", timezone.now()).timestamp()))
    signature = hmac.new(MAILGUN_KEY, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    data = {
        "event": event,
        "timestamp": float(timestamp),
        "id": uuid.uuid4().hex[:22],
        "recipient": recipient,
        "message": {
            "headers": {
                "to": recipient,
                "message-id": fields.pop("message_id", f"{uuid.uuid4().hex[:12]}.1@mg.example.com"),
                "from": "reports@example.com",
                "subject": "Your free report",
            }
        },
        **fields,
    }
    return {
        "signature": {"token": token, "timestamp": timestamp, "signature": signature},
        "event-data": data,
    }


def mailgun_failed(recipient: str, severity: str = "permanent", **fields) -> dict:
    permanent = severity == "permanent"
    status = {
        "attempt-no": 1,
        "code": 550 if permanent else 452,
        "description": "" if permanent else "Mailbox temporarily full",
        "message": "550 5.1.1 No such user" if permanent else "452 4.2.2 Mailbox full",
    }
    return mailgun_event(
        "failed",
        recipient,
        severity=severity,
        reason="bounce" if permanent else "generic",
        **{"log-level": "error" if permanent else "warn", "delivery-status": status},
        **fields,
    )


def post_webhook(client, url: str, body: dict):
    """POST an email service's JSON webhook body with the test site's basic auth."""
    return client.post(
        url,
        data=json.dumps(body),
        content_type="application/json",
        headers={"authorization": BASIC_AUTH},
    )


def post_mailgun(client, body: dict):
    return post_webhook(client, MAILGUN_URL, body)


# --- suppressing --------------------------------------------------------------------------------


def test_the_receiver_is_connected_when_anymail_is_installed():
    from anymail.signals import tracking

    assert bounces.connect() is True  # again: still one receiver (dispatch_uid)
    assert tracking.disconnect(dispatch_uid="backpain_report.bounces") is True
    assert tracking.disconnect(dispatch_uid="backpain_report.bounces") is False
    assert bounces.connect() is True


def test_an_ses_hard_bounce_suppresses_the_address_and_cancels_what_is_queued(
    client, sent_report, make_delivery
):
    queued = make_delivery(subscriber=sent_report.subscriber, reason=Delivery.Reason.RESEND)
    # The address as the mail server wrote it; found by its canonical form.
    response = post_ses(
        client, ses_bounce("ann@EXAMPLE.com", our_message_id=sent_report.message_id)
    )
    assert response.status_code == 200
    reader = Subscriber.objects.get(pk=sent_report.subscriber_id)
    assert reader.suppressed_at is not None
    assert reader.suppressed_reason == "Hard bounce (Amazon SES): Permanent: General"
    event = MailEvent.objects.get()
    assert (event.kind, event.esp, event.delivery_id) == (
        "hard_bounce",
        "Amazon SES",
        sent_report.pk,
    )
    queued.refresh_from_db()
    assert queued.status == Delivery.Status.CANCELLED
    assert queued.last_error.startswith(SUPPRESSED_PREFIX)
    assert "Hard bounce (Amazon SES)" in queued.last_error


def test_an_ses_complaint_suppresses(client, sent_report):
    assert post_ses(client, ses_complaint("ann@example.com")).status_code == 200
    reader = Subscriber.objects.get(pk=sent_report.subscriber_id)
    assert reader.suppressed_reason == "Complaint (Amazon SES): abuse"


def test_a_mailgun_hard_bounce_complaint_and_reject_each_suppress(client, make_subscriber):
    bounced = make_subscriber(email="bounced@example.com")
    complained = make_subscriber(email="complained@example.com")
    rejected = make_subscriber(email="rejected@example.com")
    assert post_mailgun(client, mailgun_failed("bounced@example.com")).status_code == 200
    assert (
        post_mailgun(client, mailgun_event("complained", "complained@example.com")).status_code
        == 200
    )
    reject = mailgun_event(
        "rejected",
        "rejected@example.com",
        reject={"reason": "Address is on the suppression list", "description": ""},
    )
    assert post_mailgun(client, reject).status_code == 200
    reasons = dict(
        Subscriber.objects.filter(pk__in=[bounced.pk, complained.pk, rejected.pk])
        .exclude(suppressed_at=None)
        .values_list("email_canonical", "suppressed_reason")
    )
    assert reasons == {
        "bounced@example.com": "Hard bounce (Mailgun): 550 5.1.1 No such user",
        "complained@example.com": "Complaint (Mailgun)",
        "rejected@example.com": (
            "Rejected by the email service (Mailgun): Address is on the suppression list"
        ),
    }


def test_mailgun_finds_the_reader_by_our_message_id_when_the_recipient_is_unknown(
    client, sent_report
):
    body = mailgun_failed("someone-else@example.com", message_id=sent_report.message_id)
    assert post_mailgun(client, body).status_code == 200
    assert Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at is not None


@pytest.mark.parametrize("brackets", ["without", "with"])
def test_mailgun_finds_the_delivery_by_a_message_id_with_or_without_angle_brackets(
    client, sent_report, brackets
):
    """Mailgun's ``message-id`` header field comes without angle brackets (anymail adds them
    today; an older release, or another path, may not): either way it finds the delivery."""
    bare = sent_report.message_id.strip("<>")
    message_id = bare if brackets == "without" else f"<{bare}>"
    body = mailgun_failed("someone-else@example.com", message_id=message_id)
    assert post_mailgun(client, body).status_code == 200
    assert Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at is not None
    assert MailEvent.objects.get().delivery_id == sent_report.pk


@pytest.mark.parametrize("written", ["{}", "<{}>", " <{}> ", "{} "])
def test_ses_finds_the_delivery_by_our_message_id_with_or_without_angle_brackets(
    client, sent_report, written
):
    """SES's ``mail.commonHeaders.messageId`` is the header as written (the documentation's
    examples show it without brackets); SES's own ``mail.messageId`` is not ours."""
    ours = written.format(sent_report.message_id.strip("<>"))
    sns = ses_bounce("someone-else@example.com", our_message_id=ours)
    assert post_ses(client, sns).status_code == 200
    assert Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at is not None
    assert MailEvent.objects.get().delivery_id == sent_report.pk


def test_a_bare_message_id_from_any_service_finds_the_delivery(sent_report):
    from backpain_report.rights.suppression import mail_event_record

    result = mail_event_record(
        esp="Postmark",
        event_id="evt-1",
        kind=MailEvent.Kind.HARD_BOUNCE,
        recipient="",
        message_ids=[sent_report.message_id.strip("<>")],
        occurred_at=None,
        description="",
    )
    assert result is not None
    assert MailEvent.objects.get().delivery_id == sent_report.pk
    assert Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at is not None


def test_an_unknown_recipient_is_ignored(client, make_subscriber):
    reader = make_subscriber(email="ann@example.com")
    assert post_ses(client, ses_bounce("stranger@example.com")).status_code == 200
    assert post_mailgun(client, mailgun_failed("stranger@example.com")).status_code == 200
    assert not MailEvent.objects.exists()
    reader.refresh_from_db()
    assert reader.suppressed_at is None


def test_other_events_change_nothing(client, sent_report):
    delivered = mailgun_event("delivered", "ann@example.com", message_id=sent_report.message_id)
    assert post_mailgun(client, delivered).status_code == 200
    assert post_mailgun(client, mailgun_event("opened", "ann@example.com")).status_code == 200
    assert not MailEvent.objects.exists()
    assert Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at is None


def test_a_replayed_event_is_recorded_once(client, sent_report):
    sns = ses_bounce("ann@example.com")
    assert post_ses(client, sns).status_code == 200
    first = Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at
    assert post_ses(client, sns).status_code == 200  # SNS retries; same MessageId
    assert MailEvent.objects.count() == 1
    assert Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at == first


def test_webhooks_without_their_auth_are_refused_and_change_nothing(client, sent_report):
    assert post_ses(client, ses_bounce("ann@example.com"), auth=False).status_code == 401
    forged = mailgun_failed("ann@example.com")
    forged["signature"]["signature"] = "0" * 64
    assert post_mailgun(client, forged).status_code == 400
    assert not MailEvent.objects.exists()
    assert Subscriber.objects.get(pk=sent_report.subscriber_id).suppressed_at is None


# --- soft bounces -------------------------------------------------------------------------------


@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (3, 86400)})
def test_soft_bounces_suppress_only_at_the_limit_within_the_window(client, make_subscriber):
    reader = make_subscriber(email="ann@example.com")
    old = timezone.now() - datetime.timedelta(days=2)
    # Outside the window: does not count.
    post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary", when=old))
    post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary"))
    # Amazon SES reports temporary failures as bounces of type Transient: soft too.
    assert (
        post_ses(client, ses_bounce("ann@example.com", bounce_type="Transient")).status_code == 200
    )
    reader.refresh_from_db()
    assert reader.suppressed_at is None  # 2 of 3 within the window
    assert MailEvent.objects.filter(kind="soft_bounce").count() == 3
    replay = mailgun_failed("ann@example.com", severity="temporary")
    post_mailgun(client, replay)
    post_mailgun(client, replay)  # the same event again: not a fourth
    reader.refresh_from_db()
    assert reader.suppressed_at is not None
    assert reader.suppressed_reason.startswith("3 soft bounces (Mailgun)")
    assert MailEvent.objects.filter(kind="soft_bounce").count() == 4


@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (2, 86400)})
def test_a_replayed_soft_bounce_does_not_reach_the_limit(client, make_subscriber):
    reader = make_subscriber(email="ann@example.com")
    body = mailgun_failed("ann@example.com", severity="temporary")
    for _ in range(3):
        assert post_mailgun(client, body).status_code == 200
    reader.refresh_from_db()
    assert reader.suppressed_at is None


# --- never sent again ---------------------------------------------------------------------------


@pytest.fixture
def suppressed(client, sent_report):
    assert post_ses(client, ses_bounce("ann@example.com")).status_code == 200
    reader = Subscriber.objects.get(pk=sent_report.subscriber_id)
    assert reader.suppressed_at is not None
    mail.outbox.clear()
    return reader


def test_the_sweep_sends_nothing_to_a_suppressed_address(suppressed, make_delivery, monkeypatch):
    # A delivery still pending (e.g. written by a sign-up in flight when the bounce came).
    stranded = make_delivery(
        subscriber=suppressed,
        reason=Delivery.Reason.RESEND,
        enqueued_at=timezone.now() - datetime.timedelta(hours=1),
    )

    def run_inline(name, args=None, **options):  # the worker, at once
        {publishing.DELIVER_TASK: tasks.deliver_report}[name](*args)

    monkeypatch.setattr(broker.current_app, "send_task", run_inline)
    assert deliveries_sweep().published == 1
    assert mail.outbox == []
    stranded.refresh_from_db()
    assert stranded.status == Delivery.Status.CANCELLED
    assert stranded.last_error.startswith(SUPPRESSED_PREFIX)


def test_a_resend_sends_nothing_to_a_suppressed_address(admin_client, suppressed):
    before = Delivery.objects.count()
    response = admin_client.post(
        reverse("admin:backpain_report_subscriber_changelist"),
        {"action": "resend_report", ACTION_CHECKBOX_NAME: [suppressed.pk]},
        follow=True,
    )
    assert "whose address is suppressed" in response.content.decode()
    assert Delivery.objects.count() == before and mail.outbox == []
    call_command("backpain_resend", "ann@example.com", stdout=(out := __import__("io").StringIO()))
    assert "0 new deliveries" in out.getvalue() and "1 suppressed" in out.getvalue()
    assert Delivery.objects.count() == before and mail.outbox == []


def test_a_new_signup_sends_nothing_to_a_suppressed_address(client, article, suppressed):
    Delivery.objects.all().delete()  # out of THROTTLE_ADDRESS_WINDOW
    with transaction.atomic():
        signup = subscribers.signup_submit(name="Ann", email="Ann@example.com", article=article)
    assert tasks.process_signup(signup.pk) == "nothing"
    assert mail.outbox == []
    refused = Delivery.objects.get()
    assert refused.status == Delivery.Status.CANCELLED
    assert refused.last_error.startswith(SUPPRESSED_PREFIX)
    suppressed.refresh_from_db()
    assert suppressed.suppressed_at is not None  # a sign-up does not lift it
    with transaction.atomic():  # again, within THROTTLE_ADDRESS_WINDOW: no second row
        signup = subscribers.signup_submit(name="Ann", email="ann@example.com", article=article)
    assert tasks.process_signup(signup.pk) == "nothing"
    assert Delivery.objects.count() == 1 and mail.outbox == []


def test_retrying_failed_deliveries_leaves_a_suppressed_readers_alone(suppressed, make_delivery):

    failed = make_delivery(
        subscriber=suppressed, reason=Delivery.Reason.RESEND, status=Delivery.Status.FAILED
    )
    assert deliveries.deliveries_retry_failed(Delivery.objects.filter(pk=failed.pk)) == 0
    failed.refresh_from_db()
    assert failed.status == Delivery.Status.FAILED


@pytest.mark.parametrize(
    ("esp", "event_type", "bounce_type", "kind"),
    [
        ("Amazon SES", "bounced", "Permanent", "hard_bounce"),
        ("Amazon SES", "bounced", "Transient", "soft_bounce"),
        ("Amazon SES", "bounced", "Undetermined", "soft_bounce"),
        ("Mailgun", "bounced", "", "hard_bounce"),
        ("Mailgun", "deferred", "", "soft_bounce"),
        ("Postmark", "complained", "", "complaint"),
        ("SendGrid", "rejected", "", "rejected"),
        ("Mailgun", "delivered", "", None),
        ("Mailgun", "opened", "", None),
    ],
)
def test_what_is_hard_and_what_is_soft(esp, event_type, bounce_type, kind):
    from anymail.signals import AnymailTrackingEvent

    esp_event = {"bounce": {"bounceType": bounce_type}} if bounce_type else {}
    event = AnymailTrackingEvent(event_type=event_type, esp_event=esp_event)
    assert bounces.event_kind(event, esp) == kind


def test_a_suppression_arriving_during_the_render_stops_the_send(
    make_subscriber, make_delivery, monkeypatch
):
    from backpain_report.delivery import sending
    from backpain_report.rights import suppression

    reader = make_subscriber(email="ann@example.com")
    delivery = make_delivery(subscriber=reader)
    build = sending._build_message

    def build_then_bounce(*args, **kwargs):
        message = build(*args, **kwargs)
        suppression.subscriber_suppress(subscriber_id=reader.pk, reason="Complaint (test)")
        return message

    monkeypatch.setattr(sending, "_build_message", build_then_bounce)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SKIPPED
    delivery.refresh_from_db()
    assert mail.outbox == [] and delivery.status == Delivery.Status.CANCELLED
    assert "Complaint (test)" in delivery.last_error


# --- lifting, the admin, the funnel, privacy ----------------------------------------------------


def test_lifting_a_suppression_lets_a_resend_through(admin_client, suppressed):
    changelist = reverse("admin:backpain_report_subscriber_changelist")
    response = admin_client.post(
        changelist,
        {"action": "lift_suppression", ACTION_CHECKBOX_NAME: [suppressed.pk]},
        follow=True,
    )
    assert "Lifted the suppression of 1 subscriber. Nothing was sent" in response.content.decode()
    suppressed.refresh_from_db()
    assert suppressed.suppressed_at is None and suppressed.suppression_lifted_at is not None
    again = admin_client.post(
        changelist,
        {"action": "lift_suppression", ACTION_CHECKBOX_NAME: [suppressed.pk]},
        follow=True,
    )
    assert "None of the selected subscribers is suppressed." in again.content.decode()
    delivery = deliveries.delivery_resend(subscriber=suppressed, publish=False)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    assert len(mail.outbox) == 1


@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (2, 86400)})
def test_soft_bounces_before_a_lift_no_longer_count(client, make_subscriber):
    reader = make_subscriber(email="ann@example.com")
    post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary"))
    post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary"))
    from backpain_report.rights.suppression import subscribers_unsuppress

    assert subscribers_unsuppress(Subscriber.objects.filter(pk=reader.pk)) == 1
    post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary"))
    reader.refresh_from_db()
    assert reader.suppressed_at is None  # one since the lift
    post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary"))
    reader.refresh_from_db()
    assert reader.suppressed_at is not None


def test_the_admin_filters_and_shows_suppression(admin_client, suppressed, make_subscriber):
    make_subscriber(email="fine@example.com")
    changelist = reverse("admin:backpain_report_subscriber_changelist")
    listed = admin_client.get(changelist, {"suppressed": "yes"}).content.decode()
    assert "ann@example.com" in listed and "fine@example.com" not in listed
    others = admin_client.get(changelist, {"suppressed": "no"}).content.decode()
    assert "fine@example.com" in others and "ann@example.com" not in others
    page = admin_client.get(
        reverse("admin:backpain_report_subscriber_change", args=[suppressed.pk])
    ).content.decode()
    assert "Bounces and complaints" in page
    assert "Hard bounce (Amazon SES): Permanent: General" in page
    assert "Suppressed: nothing is sent to this address" in page  # the timeline
    assert "Hard bounce reported by Amazon SES" in page


def test_the_funnel_counts_suppressed_addresses(suppressed, admin_client):
    today = timezone.localdate()
    assert stats.funnel(start=today, end=today).total.counts["suppressed"] == 1
    page = admin_client.get(reverse("admin:backpain_report_pageview_changelist")).content.decode()
    assert "Suppressed (bounced or complained)" in page


def test_export_holds_the_suppression_and_erasure_clears_its_texts(suppressed):
    data = selectors.subscriber_export(subscriber=suppressed)
    assert data["suppressed_reason"].startswith("Hard bounce")
    assert data["bounces_and_complaints"][0]["kind"] == "hard_bounce"
    privacy.subscriber_erase(subscriber=suppressed)
    suppressed.refresh_from_db()
    assert suppressed.suppressed_reason == "" and suppressed.suppressed_at is not None
    assert list(MailEvent.objects.values_list("description", flat=True)) == [""]


@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": "3/week"})
def test_a_misshapen_soft_bounce_limit_falls_back_to_the_default(client, make_subscriber):
    reader = make_subscriber(email="ann@example.com")
    for _ in range(2):
        post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary"))
    reader.refresh_from_db()
    assert reader.suppressed_at is None  # the default: 3 within 7 days
    post_mailgun(client, mailgun_failed("ann@example.com", severity="temporary"))
    reader.refresh_from_db()
    assert reader.suppressed_at is not None
