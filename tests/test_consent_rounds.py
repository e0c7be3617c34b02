"""Issue 22, defects 1-3: under double opt-in every new consent gets its own confirmation, and
nothing but that request reaches an address that has not confirmed, whoever asks.

Each test fails on the code before the fix: a re-subscription inside the address's window was
never asked to confirm (and was purged for it), staff resends mailed unconfirmed addresses, and
a stranger's name outlived the owner's own sign-up.
"""

from __future__ import annotations

import datetime
import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backpain_report.delivery.sending import delivery_send
from backpain_report.delivery.tokens import ConfirmState, make_unsubscribe_token, read_confirm_token
from backpain_report.models import Delivery, Subscriber
from backpain_report.rights.consent import UNCONFIRMED_ERROR
from backpain_report.services.deliveries import (
    deliveries_resend,
    deliveries_retry_failed,
    deliveries_retry_skipped,
)
from backpain_report.services.privacy import subscribers_unconfirmed_stale
from backpain_report.services.subscribers import subscriber_signup

SIGNUP = {"name": "Ann", "email": "ann@example.com", "consent": "on"}
HOUR = datetime.timedelta(hours=1)


@pytest.fixture(autouse=True)
def _pdf_attached(settings):
    """These tests tell the report from the confirmation request by its PDF: attach it."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "attach"}


@pytest.fixture
def double_opt_in(settings):
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "DOUBLE_OPT_IN": True,
        "THROTTLE_ADDRESS_WINDOW": 3600,
    }


def sign_up(client, capture, **fields) -> Subscriber:
    with capture(execute=True):
        response = client.post(reverse("backpain_report:signup"), {**SIGNUP, **fields})
    assert response.status_code == 303
    return Subscriber.objects.get(email_canonical=fields.get("email", SIGNUP["email"]).lower())


def send_due() -> None:
    """What the workers and the sweep do: send every pending delivery that is due."""
    for delivery in Delivery.objects.filter(status="pending"):
        delivery_send(delivery_id=delivery.pk)


def confirm_link_in(message) -> str:
    [token] = re.findall(r"/confirm/([^/\s]+)/", message.body)
    return token


def confirm(message) -> None:
    token = confirm_link_in(message)
    assert read_confirm_token(token).state is ConfirmState.VALID
    Client().post(reverse("backpain_report:confirm", args=[token]))


def unsubscribe(subscriber: Subscriber) -> None:
    token = make_unsubscribe_token(subscriber.pk)
    Client().post(reverse("backpain_report:one_click_unsubscribe", args=[token]))


def confirmed_reader_with_report(client, capture) -> Subscriber:
    """A reader who signed up, confirmed and was sent the report (two emails)."""
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    assert [is_confirmation(m) for m in mail.outbox] == [True, False]
    return reader


def is_confirmation(message) -> bool:
    return not message.attachments and "/confirm/" in message.body


# --- 1. A re-subscription inside THROTTLE_ADDRESS_WINDOW ---------------------------------------


def test_a_resubscription_inside_the_window_is_asked_to_confirm_when_the_window_ends(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    assert [is_confirmation(m) for m in mail.outbox] == [True, False]  # the report went
    report_made = Delivery.objects.get(kind="report").created_at

    clock.shift(10 * 60)
    unsubscribe(reader)
    clock.shift(10 * 60)  # +20 minutes: a new consent, inside the window
    sign_up(client, capture)
    send_due()
    assert len(mail.outbox) == 2  # at most one email per window...
    [waiting] = Delivery.objects.filter(kind="confirmation", status="pending")
    assert waiting.next_attempt_at == report_made + HOUR  # ...and this consent's request waits

    clock.shift(10 * 60)
    sign_up(client, capture)  # another submit inside the window makes no second request
    assert Delivery.objects.filter(kind="confirmation", status="pending").count() == 1

    clock.move_to(report_made + HOUR + datetime.timedelta(seconds=1))
    send_due()
    assert len(mail.outbox) == 3 and is_confirmation(mail.outbox[2])
    new_link = confirm_link_in(mail.outbox[2])
    assert read_confirm_token(new_link).state is ConfirmState.VALID
    assert read_confirm_token(confirm_link_in(mail.outbox[0])).state is not ConfirmState.VALID

    for later in (2, 24, 72):  # its link works: signing up again sends nothing more
        clock.move_to(report_made + later * HOUR)
        sign_up(client, capture)
        send_due()
    assert len(mail.outbox) == 3

    clock.move_to(report_made + 72 * HOUR)
    confirm(mail.outbox[2])
    send_due()
    assert len(mail.outbox) == 4 and mail.outbox[3].attachments  # the report, again


def test_a_resubscription_outside_the_window_is_asked_at_once(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    unsubscribe(reader)
    clock.shift(2 * HOUR)
    sign_up(client, capture)
    send_due()
    assert len(mail.outbox) == 3 and is_confirmation(mail.outbox[2])


def test_a_consent_never_sent_its_confirmation_is_not_purged(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    """The review's +9 days: a reader who re-subscribed and was never sent the request for it
    is not purged; one who was sent it and ignored it is."""
    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    clock.shift(10 * 60)
    unsubscribe(reader)
    clock.shift(10 * 60)
    sign_up(client, capture)
    # Its request never goes (the mail server refuses it for good, say).
    Delivery.objects.filter(kind="confirmation", status="pending").update(status="failed")
    clock.shift(datetime.timedelta(days=9))
    assert not subscribers_unconfirmed_stale(older_than_days=8).exists()
    call_command("backpain_privacy", "purge-unconfirmed", "--days", "8")
    assert Subscriber.objects.filter(pk=reader.pk).exists()

    sign_up(client, capture)  # the reader asks again: this request goes, and is ignored
    send_due()
    assert is_confirmation(mail.outbox[-1])
    clock.shift(datetime.timedelta(days=9))
    assert list(subscribers_unconfirmed_stale(older_than_days=8)) == [reader]


# --- 2. Staff resends under double opt-in ------------------------------------------------------


def _stranger_signs_up_victim(client, capture) -> Subscriber:
    victim = sign_up(client, capture, name="Stranger Chosen Words", email="victim@example.com")
    send_due()
    mail.outbox.clear()  # the confirmation request: the only email the victim should get
    return victim


def test_a_staff_resend_does_not_mail_an_unconfirmed_address(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, capsys
):
    victim = _stranger_signs_up_victim(client, django_capture_on_commit_callbacks)
    result = deliveries_resend([victim])
    assert (result.queued, result.unconfirmed) == (0, 1)
    call_command("backpain_resend", "victim@example.com")
    out = capsys.readouterr().out
    assert "Queued 0 new deliveries" in out
    assert "Skipped 1 who have not confirmed their address (double opt-in)" in out
    send_due()
    assert mail.outbox == []
    assert not Delivery.objects.filter(kind="report").exists()


def test_the_admin_resend_says_how_many_were_held_back_and_why(
    admin_client, client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks
):
    victim = _stranger_signs_up_victim(client, django_capture_on_commit_callbacks)
    page = admin_client.post(
        reverse("admin:backpain_report_subscriber_changelist"),
        {"action": "resend_report", "_selected_action": [victim.pk]},
        follow=True,
    )
    text = page.content.decode()
    assert "Skipped 1 subscriber who has not confirmed their address (double opt-in)" in text
    send_due()
    assert mail.outbox == []


def test_retrying_failed_reports_holds_back_unconfirmed_readers(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, capsys
):
    victim = _stranger_signs_up_victim(client, django_capture_on_commit_callbacks)
    # A failed report of this address (from before double opt-in was turned on, say).
    Delivery.objects.create(
        subscriber=victim,
        report=article.report,
        edition=article.report.edition,
        status="failed",
        last_error="SMTP 451",
    )
    call_command("backpain_resend", "--status", "failed")
    out = capsys.readouterr().out
    assert "Queued 0 failed deliveries again." in out
    assert "Skipped 1 reports of readers who have not confirmed" in out
    send_due()
    assert mail.outbox == []
    assert deliveries_retry_skipped(Delivery.objects.all()).unconfirmed == 1
    assert deliveries_retry_failed(Delivery.objects.all()) == 0


def test_a_pending_report_of_an_unconfirmed_address_is_cancelled_not_sent(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks
):
    """The worker checks too, whoever made the row (the sweep re-publishes any pending row)."""
    victim = _stranger_signs_up_victim(client, django_capture_on_commit_callbacks)
    row = Delivery.objects.create(
        subscriber=victim, report=article.report, edition=article.report.edition, reason="resend"
    )
    delivery_send(delivery_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.last_error) == ("cancelled", UNCONFIRMED_ERROR)
    assert mail.outbox == []


def test_readers_from_before_double_opt_in_are_not_held_back(
    article, make_subscriber, double_opt_in, no_broker
):
    """Never asked to confirm (they signed up with single opt-in): a resend still reaches them."""
    earlier = make_subscriber()
    assert deliveries_resend([earlier]).queued == 1
    send_due()
    assert len(mail.outbox) == 1 and mail.outbox[0].attachments


def test_a_confirmed_reader_is_resent_as_before(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks
):
    reader = sign_up(client, django_capture_on_commit_callbacks)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    assert deliveries_resend([Subscriber.objects.get(pk=reader.pk)]).queued == 1
    send_due()
    assert [bool(m.attachments) for m in mail.outbox] == [False, True, True]


# --- 3. The name that reaches the reader -------------------------------------------------------


def test_the_report_greets_the_name_given_last_before_the_confirmation(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    sign_up(client, capture, name="Stranger Chosen Words")
    send_due()
    [request] = mail.outbox
    assert "Stranger" not in request.body  # the confirmation shows no typed name
    clock.shift(5 * 60)
    sign_up(client, capture, name="Ann")  # the owner asks; the link in her inbox still works
    confirm(request)
    send_due()
    report = mail.outbox[-1]
    assert report.attachments
    assert "Hello Ann," in report.body and "Stranger" not in report.body
    pdf = report.attachments[0][1]
    assert b"Stranger" not in pdf


def test_a_stranger_cannot_rename_a_confirmed_reader(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    clock.shift(3 * HOUR)
    sign_up(client, capture, name="Stranger Chosen Words")
    assert Subscriber.objects.get(pk=reader.pk).name == "Ann"


def test_a_resubscription_under_double_opt_in_takes_the_new_consents_name(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture, name="Ann Old")
    send_due()
    confirm(mail.outbox[0])
    send_due()
    unsubscribe(reader)
    clock.shift(2 * HOUR)
    sign_up(client, capture, name="Ann New")
    send_due()
    confirm(mail.outbox[-1])
    send_due()
    assert "Hello Ann New," in mail.outbox[-1].body


def test_single_opt_in_keeps_a_known_readers_name(article, make_subscriber, no_broker):
    """Without double opt-in nobody confirms anything: a sign-up never renames a reader."""
    reader = make_subscriber(name="Ann")
    subscriber_signup(name="Stranger", email=reader.email, article=article)
    assert Subscriber.objects.get(pk=reader.pk).name == "Ann"


def test_a_waiting_confirmation_whose_message_is_lost_is_sent_by_the_sweep(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    from backpain_report.delivery.sweep import deliveries_sweep

    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    unsubscribe(reader)
    clock.shift(10 * 60)
    sign_up(client, capture)  # its countdown message is then lost with the broker
    [waiting] = Delivery.objects.filter(kind="confirmation", status="pending")
    assert deliveries_sweep().found == 0  # not due yet: the sweep leaves it alone
    clock.move_to(waiting.next_attempt_at + datetime.timedelta(hours=1))
    no_broker.clear()
    assert deliveries_sweep().found == 1 and no_broker == [waiting.pk]


def test_the_name_is_the_last_given_before_the_click(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    """The docs' limit, pinned: a sign-up between the owner's and her click names her."""
    capture = django_capture_on_commit_callbacks
    sign_up(client, capture, name="Ann")
    send_due()
    clock.shift(5 * 60)
    sign_up(client, capture, name="Stranger Chosen Words")
    confirm(mail.outbox[0])
    send_due()
    assert "Hello Stranger Chosen Words," in mail.outbox[-1].body


def test_earlier_download_links_wait_for_the_new_consents_confirmation(
    client, article, double_opt_in, settings, no_broker, django_capture_on_commit_callbacks, clock
):
    from backpain_report.delivery.tokens import make_download_token

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "both"}
    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    link = reverse(
        "backpain_report:download", args=[make_download_token(Delivery.objects.get(kind="report"))]
    )
    assert Client().get(link).status_code == 200
    unsubscribe(reader)
    clock.shift(2 * HOUR)
    sign_up(client, capture, name="Someone Else")  # a new consent, not confirmed
    assert Client().get(link).status_code == 410  # "no longer available", as when unsubscribed
    send_due()
    confirm(mail.outbox[-1])
    assert Client().get(link).status_code == 200


def test_a_window_longer_than_a_century_counts_as_a_century(
    article, make_subscriber, make_delivery, double_opt_in, settings, no_broker
):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_ADDRESS_WINDOW": 10**12}
    reader = make_subscriber(email="ann@example.com", unsubscribed_at=timezone.now())
    make_delivery(subscriber=reader, status="sent", sent_at=timezone.now())
    result = subscriber_signup(name="Ann", email="ann@example.com", article=article)
    assert result.delivery is not None and result.delivery.kind == "confirmation"
    waits = result.delivery.next_attempt_at - timezone.now()
    assert datetime.timedelta(days=100 * 365) < waits <= datetime.timedelta(days=100 * 366)
