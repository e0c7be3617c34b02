import contextlib
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from backpain_report.models import Delivery, Subscriber
from backpain_report.selectors import subscriber_export
from backpain_report.services.privacy import subscriber_erase


def test_export_holds_the_consent_record_and_deliveries(make_delivery):
    delivery = make_delivery(last_error="SMTP 451")
    data = subscriber_export(subscriber=delivery.subscriber)
    assert data["email"] == delivery.subscriber.email
    assert set(data["consent"]) == {"text", "version", "given_at", "ip", "user_agent", "followups"}
    assert data["deliveries"][0]["last_error"] == "SMTP 451"
    json.dumps(data)


def test_erase_removes_personal_data_and_cancels_queued(make_delivery):
    delivery = make_delivery(last_error="550 ann@example.com unknown")
    subscriber = delivery.subscriber
    subscriber_erase(subscriber=subscriber)
    subscriber.refresh_from_db()
    delivery.refresh_from_db()
    assert subscriber.name == "" and "erased" in subscriber.email
    assert subscriber.consent_ip == "" and subscriber.consent_user_agent == ""
    assert delivery.status == Delivery.Status.CANCELLED and delivery.last_error == ""


def test_admin_export_and_erase_actions(admin_client, make_delivery):
    subscriber = make_delivery().subscriber
    url = reverse("admin:backpain_report_subscriber_changelist")
    response = admin_client.post(
        url, {"action": "export_data", "_selected_action": [subscriber.pk]}
    )
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)[0]["email"] == subscriber.email
    admin_client.post(url, {"action": "erase_data", "_selected_action": [subscriber.pk]})
    subscriber.refresh_from_db()
    assert subscriber.name == ""


def test_privacy_command(make_subscriber, capsys):
    subscriber = make_subscriber(email="ann@example.com")
    call_command("backpain_privacy", "export", "ANN@example.com")
    assert json.loads(capsys.readouterr().out)["email"] == "ann@example.com"
    call_command("backpain_privacy", "erase", "ann@example.com")
    assert "Erased subscriber" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No subscriber"):
        call_command("backpain_privacy", "export", "ann@example.com")
    with pytest.raises(CommandError, match="Not an email address"):
        call_command("backpain_privacy", "export", "a@\udcff")
    subscriber.refresh_from_db()


@pytest.fixture
def double_opt_in(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}


def _asked(make_subscriber, days_ago: int, **fields) -> Subscriber:
    """A reader asked to confirm ``days_ago`` days ago (signed up a year ago): the request
    made and its email sent then (a purge counts only a request that went out)."""
    now = timezone.now()
    subscriber = make_subscriber(**fields)
    asked = now - timezone.timedelta(days=days_ago)
    signed_up = now - timezone.timedelta(days=365)
    Subscriber.objects.filter(pk=subscriber.pk).update(
        created_at=signed_up, consented_at=signed_up, confirmation_requested_at=asked
    )
    report = subscriber.source_article.report
    request = Delivery.objects.create(
        subscriber=subscriber, report=report, edition=report.edition, kind="confirmation"
    )
    Delivery.objects.filter(pk=request.pk).update(created_at=asked, status="sent", sent_at=asked)
    return subscriber


def test_purge_with_single_opt_in_deletes_nobody_and_says_why(make_subscriber, capsys):
    """Issue 10.1: with double opt-in off (the default) every reader is unconfirmed."""
    old = make_subscriber()
    Subscriber.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=400)
    )
    call_command("backpain_privacy", "purge-unconfirmed", "--days", "30")
    out = capsys.readouterr().out
    assert "Nothing to purge" in out and "Double opt-in is off" in out
    assert Subscriber.objects.count() == 1


def test_purge_ages_from_the_confirmation_request(make_subscriber, double_opt_in, capsys):
    stale = _asked(make_subscriber, 40)
    resigned = _asked(make_subscriber, 1)  # signed up long ago, asked again yesterday: kept
    confirmed = _asked(make_subscriber, 40, confirmed_at=timezone.now())
    never_asked = make_subscriber()  # a single opt-in reader from before double opt-in
    Subscriber.objects.filter(pk=never_asked.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=400)
    )
    call_command("backpain_privacy", "purge-unconfirmed", "--days", "30", "--dry-run")
    out = capsys.readouterr().out
    assert f"#{stale.pk} r…@example.com asked to confirm" in out
    assert "Would delete 1 unconfirmed sign-ups (dry run)." in out
    assert Subscriber.objects.count() == 4  # a dry run deletes nothing

    call_command("backpain_privacy", "purge-unconfirmed", "--days", "30")
    assert "Deleted 1 unconfirmed" in capsys.readouterr().out
    assert set(Subscriber.objects.values_list("pk", flat=True)) == {
        resigned.pk,
        confirmed.pk,
        never_asked.pk,
    }


def test_purge_refuses_ages_shorter_than_a_confirmation_link_lives(make_subscriber, double_opt_in):
    _asked(make_subscriber, 3)
    for days in ("0", "3"):
        with pytest.raises(CommandError, match="Confirmation links work for 7 days"):
            call_command("backpain_privacy", "purge-unconfirmed", "--days", days)
    assert Subscriber.objects.count() == 1


def test_admin_purge_action_lists_first_then_deletes(admin_client, make_subscriber, double_opt_in):
    stale = _asked(make_subscriber, 10)
    fresh = _asked(make_subscriber, 2)
    url = reverse("admin:backpain_report_subscriber_changelist")
    selection = {"action": "purge_unconfirmed", "_selected_action": [stale.pk, fresh.pk]}
    page = admin_client.post(url, selection)
    assert page.status_code == 200
    html = page.content.decode()
    assert stale.email in html and fresh.email not in html and "Yes, delete them" in html
    assert Subscriber.objects.count() == 2  # the list is the dry run

    done = admin_client.post(url, {**selection, "confirm_purge": "yes"}, follow=True)
    assert "Deleted 1 sign-up that never confirmed." in done.content.decode()
    assert list(Subscriber.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_admin_purge_action_with_single_opt_in_deletes_nobody(admin_client, make_subscriber):
    reader = make_subscriber()
    url = reverse("admin:backpain_report_subscriber_changelist")
    done = admin_client.post(
        url,
        {"action": "purge_unconfirmed", "_selected_action": [reader.pk], "confirm_purge": "yes"},
        follow=True,
    )
    assert "Double opt-in is off" in done.content.decode()
    assert Subscriber.objects.count() == 1


def test_erase_drops_pending_signups_of_the_address(make_subscriber, article):
    from backpain_report.models import PendingSignup
    from backpain_report.services.subscribers import signup_submit

    subscriber = make_subscriber(email="ann@example.com")
    signup_submit(name="Ann", email="Ann@Example.com", article=article)
    subscriber_erase(subscriber=subscriber)
    assert not PendingSignup.objects.exists()


# --- Hostile review (issue 10): erasure and purge promises ---------------------------------


def test_erase_command_erases_an_address_whose_signup_waits_in_the_inbox(article):
    from backpain_report.models import PendingSignup
    from backpain_report.services.subscribers import signup_submit

    signup_submit(name="Ann", email="ann@example.com", article=article)  # worker not run yet
    # "No subscriber with the address": the erasure request is not carried out.
    with contextlib.suppress(CommandError):
        call_command("backpain_privacy", "erase", "ann@example.com")
    assert not PendingSignup.objects.filter(email_canonical="ann@example.com").exists()


def test_erasure_during_a_render_leaves_no_pdf_with_the_name(make_delivery, settings, monkeypatch):
    from backpain_report.delivery import sending
    from backpain_report.report import pdfstore
    from backpain_report.report.privatestorage import private_storage

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "link"}
    delivery = make_delivery()

    def render_while_erased(claimed):
        subscriber_erase(subscriber=claimed.subscriber)  # staff erase the reader mid-render
        return b"%PDF-1.7 the reader's PDF, with their name on the cover"

    monkeypatch.setattr(sending, "delivery_pdf", render_while_erased)
    result = sending.delivery_send(delivery_id=delivery.pk)
    assert result.outcome is sending.Outcome.SKIPPED  # nothing was sent: the claim was gone
    storage = private_storage()
    left = []
    for folder in pdfstore._delivery_dirs(delivery.pk):
        if storage.exists(folder):
            left += storage.listdir(folder)[1]
    assert left == []  # docs: erasing a subscriber deletes their stored PDFs


def test_purge_keeps_a_reader_who_signs_up_afresh_while_it_runs(
    make_subscriber, double_opt_in, article, monkeypatch
):
    from backpain_report.services import privacy, subscribers

    reader = _asked(make_subscriber, 30, email="ann@example.com")

    class RacingDelivery:
        """The worker processes Ann's new sign-up right after the purge chose its rows."""

        Kind, Status = Delivery.Kind, Delivery.Status

        class objects:
            @staticmethod
            def filter(*args, **lookup):
                if "subscriber_id__in" in lookup:  # the purge has chosen its rows
                    subscribers.subscriber_signup(
                        name="Ann", email="ann@example.com", article=article
                    )
                return Delivery.objects.filter(*args, **lookup)

    monkeypatch.setattr(privacy, "Delivery", RacingDelivery)
    privacy.subscribers_purge_unconfirmed(older_than_days=8)
    # docs: "counted from the latest request, so a reader who signed up afresh is kept"
    assert Subscriber.objects.filter(pk=reader.pk).exists()


def test_purge_at_the_minimum_age_deletes_nobody_holding_a_working_link(
    make_subscriber, double_opt_in, make_delivery
):
    from unittest import mock

    from backpain_report.delivery import links
    from backpain_report.delivery.tokens import ConfirmState, read_confirm_token
    from backpain_report.services.privacy import (
        subscribers_purge_min_days,
        subscribers_purge_unconfirmed,
    )

    reader = _asked(make_subscriber, 0)
    asked = timezone.now() - timezone.timedelta(days=7, hours=1)
    Subscriber.objects.filter(pk=reader.pk).update(confirmation_requested_at=asked)
    reader.refresh_from_db()
    # The confirmation went out two hours after the request (SMTP 4xx retries, a broker outage).
    built = (asked + timezone.timedelta(hours=2)).timestamp()
    with mock.patch("django.core.signing.time.time", return_value=built):
        token = links.confirm_url(reader).rstrip("/").rpartition("/")[2]
    assert read_confirm_token(token).state is ConfirmState.VALID  # the reader's link works
    subscribers_purge_unconfirmed(
        older_than_days=subscribers_purge_min_days()
    )  # --days 7, the allowed minimum
    assert Subscriber.objects.filter(pk=reader.pk).exists()


def test_export_holds_the_signups_still_in_the_inbox(make_subscriber, article):
    from backpain_report.services.subscribers import signup_submit

    subscriber = make_subscriber(email="ann@example.com")
    signup_submit(
        name="Ann Newname", email="ann@example.com", article=article, user_agent="AgentX/1.0"
    )
    exported = json.dumps(subscriber_export(subscriber=subscriber))
    assert "Ann Newname" in exported and "AgentX/1.0" in exported
