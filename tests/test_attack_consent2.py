"""A second independent review's attacks on issue 22's consent rules (after 3028825).

Each test names the documented promise (or docstring rule) it breaks and fails on the code it was
written against. The helpers are those of ``test_consent_rounds``. A sign-up "whose message was
lost" is a ``PendingSignup`` written by :func:`signup_submit` outside any captured commit: its
message is never published, and the test processes it later, as the sweep's re-publish would.
"""

from __future__ import annotations

import datetime

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from backpain_report.delivery.tokens import ConfirmState, read_confirm_token
from backpain_report.models import Delivery, Subscriber
from backpain_report.services.subscribers import signup_process, signup_submit

from .test_consent_rounds import (
    HOUR,
    confirm,
    confirm_link_in,
    is_confirmation,
    send_due,
    sign_up,
    unsubscribe,
)

DAY = datetime.timedelta(days=1)
MINUTE = datetime.timedelta(minutes=1)
SECOND = datetime.timedelta(seconds=1)


@pytest.fixture
def double_opt_in(settings):
    """Double opt-in with the app's defaults otherwise (a one-hour address window, links that
    work seven days)."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}


def lost_sign_up(article, name: str = "Ann", email: str = "ann@example.com") -> int:
    """A sign-up accepted by the web request whose message was lost (a broker blip): its row
    waits for the sweep. Returns its id."""
    from unittest import mock

    with mock.patch("backpain_report.services.subscribers.publish_signup_on_commit"):
        return signup_submit(name=name, email=email, article=article).pk


def reports() -> list:
    return [m for m in mail.outbox if not is_confirmation(m)]


def confirmations() -> list:
    return [m for m in mail.outbox if is_confirmation(m)]


# --- A sign-up processed after a later event -----------------------------------------------------
#
# The worker reads "unsubscribed" as "this sign-up is a new consent", whatever the order in which
# the reader gave the consent and withdrew it. A sign-up whose message was lost (a double click on
# the button during a broker blip: one publish failed, one went) is processed by the sweep later;
# if the reader unsubscribed in between, that older consent re-subscribes them.


# Docs, Unsubscribe: "Signing up again later is a new consent" (a sign-up given *before* the
# reader unsubscribed is not one); single opt-in. The reader gets their report, unsubscribes,
# and then the sweep's late processing of their own earlier (duplicate) submission re-subscribes
# them and mails the report again, to an address that withdrew after the last consent it gave.
def test_attack2_a_sign_up_given_before_the_unsubscribe_does_not_resubscribe(
    client, article, no_broker, django_capture_on_commit_callbacks, clock
):
    lost = lost_sign_up(article)  # the double click: this one's publish failed ...
    clock.shift(SECOND)
    reader = sign_up(client, django_capture_on_commit_callbacks)  # ... this one went
    send_due()
    assert len(reports()) == 1
    clock.shift(10 * MINUTE)
    unsubscribe(reader)  # the reader withdraws
    clock.shift(2 * HOUR)
    signup_process(signup_id=lost)  # the sweep re-publishes the lost message
    send_due()
    assert Subscriber.objects.get(pk=reader.pk).unsubscribed_at is not None  # fails: None
    assert len(reports()) == 1  # fails: the report again, after the unsubscribe


# Docs, Double opt-in: a new consent gets its confirmation ("with double opt-in the address
# must be confirmed again ... before the report goes out again"; issue 22 item 1: "A new consent
# must get its confirmation"). The same late sign-up under double opt-in re-subscribes the reader
# with a consented_at *older* than the confirmation request of the consent before, so that
# request (created after consented_at) counts as "made for this consent, went out within
# CONFIRM_MAX_AGE": no request is made, and the only link the reader holds is revoked (its
# consent version changed). The new consent has no working confirmation link for seven days.
def test_attack2_a_late_resubscription_gets_a_working_confirmation_link(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    lost = lost_sign_up(article)
    clock.shift(SECOND)
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    assert len(reports()) == 1
    clock.shift(10 * MINUTE)
    unsubscribe(reader)
    clock.shift(2 * HOUR)
    signup_process(signup_id=lost)
    send_due()
    if Subscriber.objects.get(pk=reader.pk).unsubscribed_at is not None:
        return  # the older consent did not re-subscribe: nothing to confirm
    clock.shift(2 * HOUR)  # any window has ended
    send_due()
    states = [read_confirm_token(confirm_link_in(m)).state for m in confirmations()]
    assert ConfirmState.VALID in states  # fails: [REVOKED], no request made for the new consent


# Docs, Privacy operations: "The purge ... only for a request that was sent (a confirmation
# made for their latest consent and delivered: never one still waiting, failed or never made)".
# After the late re-subscription above, the request of the consent *before* counts as made for
# the latest one (it was created after the late consent's consented_at), so nine days later
# purge-unconfirmed deletes a reader who confirmed once and was never asked about this consent.
def test_attack2_a_late_resubscription_is_not_purged_for_the_previous_consents_request(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    from backpain_report.services.privacy import subscribers_unconfirmed_stale

    capture = django_capture_on_commit_callbacks
    lost = lost_sign_up(article)
    clock.shift(SECOND)
    reader = sign_up(client, capture)
    send_due()
    confirm(mail.outbox[0])
    send_due()
    clock.shift(10 * MINUTE)
    unsubscribe(reader)
    clock.shift(2 * HOUR)
    signup_process(signup_id=lost)
    send_due()
    if Subscriber.objects.get(pk=reader.pk).unsubscribed_at is not None:
        return
    asked_since = len(confirmations()) - 1  # requests after the first consent's
    clock.shift(9 * DAY)
    stale = list(subscribers_unconfirmed_stale(older_than_days=8))
    if asked_since == 0:
        assert stale == []  # fails: [reader], purged for the request of the consent before


# --- Clock skew between the web request and the worker ----------------------------------------
#
# consented_at is the web host's clock; a delivery's created_at is the worker's. "Made for this
# consent" is decided by created_at >= consented_at, so a web host a few minutes ahead of the
# worker makes every delivery of the consent look older than it.


# Docs, How delivery works: "a confirmation, unless one for this consent is waiting to go
# (however long) or went out within CONFIRM_MAX_AGE, so its link may still work (an ignored
# request is not followed by more until it has expired ...)". With the web host five minutes
# ahead of the worker, the consent's request does not count as its own: each sign-up after the
# window sends a second request while the first link still works (and the purge, which counts
# only requests made at or after consented_at, never sees the first one).
def test_attack2_clock_skew_no_second_request_while_the_first_link_works(
    article, double_opt_in, no_broker, clock
):
    start = timezone.now()
    clock.move_to(start + 5 * MINUTE)  # the web host's clock
    first = lost_sign_up(article)
    clock.move_to(start)  # the worker's
    signup_process(signup_id=first)
    send_due()
    assert len(confirmations()) == 1
    for hours in (2, 24, 72):  # the reader (or a stranger) signs up again; the link still works
        clock.move_to(start + hours * HOUR + 5 * MINUTE)
        again = lost_sign_up(article)
        clock.move_to(start + hours * HOUR)
        signup_process(signup_id=again)
        send_due()
    assert read_confirm_token(confirm_link_in(confirmations()[0])).state is ConfirmState.VALID
    assert len(confirmations()) == 1  # fails: 2, the second two hours after the first


# Docs, How delivery works (single opt-in, the default): "nothing for a reader who has this
# edition (a report of it sent, or on its way, since their latest consent ...)". With the web
# host ahead of the worker, the report sent for the consent predates it, so every sign-up of a
# known address after the window mails the same edition again.
def test_attack2_clock_skew_single_opt_in_does_not_resend_an_edition_the_reader_has(
    article, no_broker, clock
):
    start = timezone.now()
    clock.move_to(start + 5 * MINUTE)
    first = lost_sign_up(article)
    clock.move_to(start)
    signup_process(signup_id=first)
    send_due()
    assert len(reports()) == 1
    clock.move_to(start + 2 * HOUR + 5 * MINUTE)
    again = lost_sign_up(article)
    clock.move_to(start + 2 * HOUR)
    signup_process(signup_id=again)
    send_due()
    assert len(reports()) == 1  # fails: 2, the same edition again


# --- Names ----------------------------------------------------------------------------------------


# Docs, Double opt-in: "each sign-up's name replaces the one before, so the report greets the
# name given last before the confirmation (a stranger who signed the address up first does not
# name its owner ...)". "Last" is the order the worker processes sign-ups in, not the order
# they were given: a stranger's sign-up made *before* Ann's, whose message was delayed (the
# sweep, or simply a second worker), renames her after her own sign-up; she confirms and her
# report greets the stranger's words.
def test_attack2_a_strangers_earlier_sign_up_processed_late_does_not_name_the_owner(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    stranger = lost_sign_up(article, name="Stranger Chosen Words")  # given first
    clock.shift(MINUTE)
    sign_up(client, django_capture_on_commit_callbacks, name="Ann")  # given last, processed first
    send_due()
    [request] = confirmations()
    clock.shift(MINUTE)
    signup_process(signup_id=stranger)  # the stranger's message arrives late
    confirm(request)
    send_due()
    [report] = reports()
    assert "Hello Ann," in report.body  # fails: "Hello Stranger Chosen Words,"


# --- Toggling DOUBLE_OPT_IN ---------------------------------------------------------------------


# Docs, Double opt-in: "the report follows once the reader presses 'Confirm' on the page the
# link opens". An owner turns double opt-in off while requests are out: a reader who then
# confirms is recorded as confirmed and sent nothing (subscriber_confirm queues the report only
# "if DOUBLE_OPT_IN"), and their sign-up under double opt-in sent no report either: the reader who
# did everything asked never gets it, and a repeat sign-up inside the window is not mailed.
def test_attack2_a_reader_who_confirms_after_double_opt_in_was_turned_off_gets_the_report(
    client, article, double_opt_in, settings, no_broker, django_capture_on_commit_callbacks
):
    sign_up(client, django_capture_on_commit_callbacks)
    send_due()
    [request] = confirmations()
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": False}
    confirm(request)
    send_due()
    assert len(reports()) == 1  # fails: 0, confirmed and sent nothing


# --- Wrong settings -----------------------------------------------------------------------------


# Docs, Unsubscribe: "A window longer than a century counts as a century" (and bad input is
# never a traceback). The suppressed-address branch of a sign-up still subtracts the raw window
# from now: with an operator's "never twice" window every sign-up of a suppressed address raises
# OverflowError in the worker (the task fails and the sweep retries it forever).
def test_attack2_a_huge_window_does_not_crash_a_sign_up_of_a_suppressed_address(
    article, settings, make_subscriber, no_broker
):
    from backpain_report.services.subscribers import subscriber_signup

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_ADDRESS_WINDOW": 10**11}
    make_subscriber(
        email="ann@example.com", suppressed_at=timezone.now(), suppressed_reason="bounced"
    )
    result = subscriber_signup(name="Ann", email="ann@example.com", article=article)  # fails
    assert not any(d.status == "pending" for d in Delivery.objects.all())
    assert result.subscriber.email_canonical == "ann@example.com"


# --- backpain_resend's report -------------------------------------------------------------------


# Docs, Management commands: "backpain_resend EMAIL… | --status failed: ... says how many it
# skipped and why (unsubscribed, suppressed, or not confirmed under double opt-in)". With
# --status failed it names only the unconfirmed: failed deliveries of unsubscribed and of
# suppressed readers are left alone without a word ("Queued 0 failed deliveries again.").
def test_attack2_resend_status_failed_says_how_many_it_skipped_and_why(
    make_subscriber, make_delivery
):
    import io

    gone = make_subscriber(unsubscribed_at=timezone.now())
    bounced = make_subscriber(suppressed_at=timezone.now(), suppressed_reason="bounced")
    make_delivery(subscriber=gone, status="failed")
    make_delivery(subscriber=bounced, status="failed")
    out = io.StringIO()
    call_command("backpain_resend", "--status", "failed", stdout=out)
    text = out.getvalue()
    assert "Queued 0 failed deliveries again." in text
    assert "unsubscribed" in text and "suppressed" in text  # fails: neither is said


# --- The expired link's "Send me a fresh link" ---------------------------------------------------


# Docs, Threat model: "THROTTLE_ADDRESS_WINDOW: at most one email per address per window", and
# How delivery works: no other confirmation while this consent's "is waiting to go ... or went
# out within CONFIRM_MAX_AGE". The expired page's "Send me a fresh link" asks only the cache
# throttle, which no sign-up's email counts: right after a sign-up sent this consent a fresh
# request, a POST with the old (expired) link sends another one at once, minutes apart.
def test_attack2_a_fresh_link_from_an_expired_page_respects_the_window(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    from django.test import Client
    from django.urls import reverse

    capture = django_capture_on_commit_callbacks
    sign_up(client, capture)
    send_due()
    old = confirm_link_in(confirmations()[0])
    clock.shift(8 * DAY)  # the link expired unanswered
    sign_up(client, capture)  # a new request for the same consent, sent at once
    send_due()
    assert len(confirmations()) == 2
    clock.shift(5 * MINUTE)
    assert read_confirm_token(old).state is ConfirmState.EXPIRED
    with capture(execute=True):
        Client().post(reverse("backpain_report:confirm", args=[old]), {"resend": "1"})
    send_due()
    assert len(confirmations()) == 2  # fails: 3, two requests five minutes apart


# --- A previous consent's link, in a race -----------------------------------------------------


# Docs, Double opt-in: links "stop working when the reader signs up afresh". The confirm view
# checks the token (consent version included), then subscriber_confirm confirms the row with a
# conditional UPDATE that asks only "not confirmed, not unsubscribed", not "the same consent".
# If the address is unsubscribed and re-subscribed (by a stranger, with a name of their choosing)
# between the two, the click on the earlier consent's link confirms the stranger's consent, and
# the report greets the stranger's words. (The interleaving is forced here; on a live site it
# is the time between two queries, so low severity.)
def test_attack2_an_earlier_consents_link_never_confirms_a_later_consent(
    client,
    article,
    double_opt_in,
    no_broker,
    django_capture_on_commit_callbacks,
    clock,
    monkeypatch,
):
    from django.test import Client
    from django.urls import reverse

    from backpain_report.services import subscribers

    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    token = confirm_link_in(confirmations()[0])
    original = subscribers.subscriber_confirm

    def interleaved(*, subscriber):
        clock.shift(MINUTE)
        unsubscribe(subscriber)
        clock.shift(MINUTE)
        sign_up(client, capture, name="Stranger Chosen Words")  # a new consent
        return original(subscriber=subscriber)

    monkeypatch.setattr(subscribers, "subscriber_confirm", interleaved)
    with capture(execute=True):
        Client().post(reverse("backpain_report:confirm", args=[token]))
    send_due()
    assert Subscriber.objects.get(pk=reader.pk).confirmed_at is None  # fails: confirmed
    assert reports() == []
