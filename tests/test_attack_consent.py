"""An independent review's attacks on issue 22's consent fixes (double opt-in, resends, names).

Each test names the documented promise it breaks and fails on the code it was written against
(bb96a0e). The helpers are those of ``test_consent_rounds``.
"""

from __future__ import annotations

import datetime

import pytest
from django.core import mail

from backpain_report.delivery.tokens import ConfirmState, read_confirm_token
from backpain_report.models import Delivery, Subscriber
from backpain_report.services.deliveries import deliveries_resend

from .test_consent_rounds import (
    HOUR,
    confirm,
    confirm_link_in,
    confirmed_reader_with_report,
    is_confirmation,
    send_due,
    sign_up,
    unsubscribe,
)

DAY = datetime.timedelta(days=1)
MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture
def double_opt_in(settings):
    """Double opt-in with the app's defaults otherwise (a one-hour address window, links that
    work seven days)."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}


def emails_within(window: datetime.timedelta) -> int:
    """The most emails one address was sent inside any window of that length, after its report.

    The first confirmation request and the report that the reader's click sends at once are left
    out: the clock is stopped, so they go at the same instant, and the promise is about what
    sign-ups send, not about the reader's own click.
    """
    report_sent = Delivery.objects.filter(kind="report").earliest("sent_at").sent_at
    times = sorted(
        Delivery.objects.filter(status="sent", sent_at__gt=report_sent).values_list(
            "sent_at", flat=True
        )
    )
    return max((sum(1 for t in times if start <= t < start + window) for start in times), default=0)


# Docs, Unsubscribe: "Either way at most one email per THROTTLE_ADDRESS_WINDOW: with double
# opt-in, a new consent inside the window of the last email gets its confirmation request when
# that window ends". The window after a waiting confirmation is counted from when its row was
# made, not from when it was sent, so the next consent's request follows it within the window.
def test_attack_the_window_after_a_waiting_confirmation_counts_from_when_it_was_sent(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    reader = confirmed_reader_with_report(client, capture)  # the report at 0
    clock.shift(20 * MINUTE)
    unsubscribe(reader)
    sign_up(client, capture)  # +20 min: a new consent, its request waits until +60 min
    clock.shift(41 * MINUTE)
    send_due()  # +61 min: the request goes
    assert is_confirmation(mail.outbox[-1]) and len(mail.outbox) == 3
    clock.shift(4 * MINUTE)
    unsubscribe(reader)  # +65 min: "not now" (the request's own unsubscribe link)
    clock.shift(5 * MINUTE)
    sign_up(client, capture)  # +70 min: and yes after all: a new consent inside the window
    for _ in range(12):  # the workers, every five minutes for an hour
        clock.shift(5 * MINUTE)
        send_due()
    assert emails_within(HOUR) == 1  # fails: a second request 20 minutes after the first


# Docs, How delivery works: "a confirmation, unless one for this consent went out whose link
# may still work (an ignored request is not followed by more until it has expired ...)".
# "Went out within CONFIRM_MAX_AGE" is measured from the row's creation; a request that waited
# for the window is sent (and its link built) up to a window later, so a sign-up in that last
# stretch of its link's life gets a second request while the first link still works.
def test_attack_no_second_request_while_a_waited_requests_link_still_works(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    capture = django_capture_on_commit_callbacks
    reader = confirmed_reader_with_report(client, capture)
    clock.shift(10 * MINUTE)
    unsubscribe(reader)
    sign_up(client, capture)  # waits until +60 min
    clock.shift(51 * MINUTE)
    send_due()
    first = mail.outbox[-1]
    assert is_confirmation(first) and len(mail.outbox) == 3
    clock.shift(7 * DAY - 10 * MINUTE)  # the first link has ten minutes left
    assert read_confirm_token(confirm_link_in(first)).state is ConfirmState.VALID
    sign_up(client, capture)
    send_due()
    assert len(mail.outbox) == 3  # fails: a second request while the first link works


# Docs, Unsubscribe: "at most one email per THROTTLE_ADDRESS_WINDOW" and How delivery works:
# no other confirmation while this consent's "is on its way". An operator with a long window
# (30 days, "one email a month") and the default 7-day links: a request that has waited longer
# than CONFIRM_MAX_AGE no longer counts as on its way, so each later sign-up queues another one
# and they all go out together when the window ends.
def test_attack_a_request_still_waiting_counts_as_on_its_way_however_long_it_waits(
    client,
    article,
    double_opt_in,
    settings,
    no_broker,
    django_capture_on_commit_callbacks,
    clock,
):
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "THROTTLE_ADDRESS_WINDOW": 30 * 24 * 3600,
    }
    capture = django_capture_on_commit_callbacks
    reader = confirmed_reader_with_report(client, capture)
    clock.shift(HOUR)
    unsubscribe(reader)
    sign_up(client, capture)  # a new consent: its request waits for the month to end
    for _ in range(3):  # a sign-up every eight days while it waits
        clock.shift(8 * DAY)
        sign_up(client, capture)
    waiting = Delivery.objects.filter(kind="confirmation", status="pending").count()
    assert waiting == 1  # fails: 4 requests queued for the same consent
    clock.shift(30 * DAY)
    send_due()
    assert emails_within(30 * DAY) == 1


# Docs, Double opt-in: "Readers who signed up before double opt-in was turned on were never
# asked, and are not held back." and "A confirmed reader's name is never changed by a sign-up."
# A single opt-in reader has confirmed_at NULL; once double opt-in is on, one anonymous sign-up
# of their address by a stranger renames them and holds them back from every staff resend.
def test_attack_a_stranger_cannot_hold_back_or_rename_a_reader_from_before_double_opt_in(
    client, article, make_subscriber, no_broker, django_capture_on_commit_callbacks, settings
):
    earlier = make_subscriber(name="Ann", email="ann@example.com")  # single opt-in, had it
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    sign_up(client, django_capture_on_commit_callbacks, name="Stranger Chosen Words")
    send_due()
    mail.outbox.clear()
    result = deliveries_resend([Subscriber.objects.get(pk=earlier.pk)])
    name = Subscriber.objects.get(pk=earlier.pk).name
    assert (result.queued, name) == (1, "Ann")  # fails: (0, 'Stranger Chosen Words')


# Docs, Double opt-in: "An address asked to confirm gets nothing but the confirmation request,
# whoever asks: a staff resend (admin or backpain_resend) ... skip it". "Asked" is read as
# confirmation_requested_at being set, which a sign-up under double opt-in leaves empty when
# the article it names offers no report (the form's hidden field is the attacker's to set).
# A staff resend then sends the site's first report, greeting the stranger's name, to an
# address that never confirmed anything.
def test_attack_a_sign_up_under_double_opt_in_is_never_sent_the_report_unconfirmed(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks
):
    from backpain_report.models import Article

    other = Article.objects.create(
        slug="no-offer-here",
        title="An article without a report",
        body="Text.",
        status=Article.Status.PUBLISHED,
        published_at=article.published_at,
    )
    victim = sign_up(
        client,
        django_capture_on_commit_callbacks,
        name="Stranger Chosen Words",
        email="victim@example.com",
        article=other.slug,
    )
    send_due()
    assert mail.outbox == []  # nothing to confirm: no report offered
    deliveries_resend([Subscriber.objects.get(pk=victim.pk)])  # staff: "resend the report"
    send_due()
    greetings = [m.body.splitlines()[0] for m in mail.outbox]
    assert greetings == []  # fails: ['Hello Stranger Chosen Words,'], the PDF attached


# Bad configuration must not become a traceback: under double opt-in a brand-new address now
# computes the end of its window too (before bb96a0e only a known address did), so a window
# longer than the calendar behind "now" (an operator's "never email an address twice") makes
# every new sign-up's worker raise OverflowError: the new consent never gets its request.
def test_attack_a_huge_window_does_not_crash_a_new_sign_up_under_double_opt_in(
    article, double_opt_in, settings, no_broker
):
    from backpain_report.services.subscribers import subscriber_signup

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_ADDRESS_WINDOW": 10**11}
    result = subscriber_signup(name="Ann", email="new@example.com", article=article)
    assert result.delivery is not None and result.delivery.kind == "confirmation"


# Docs, Privacy operations: "The purge ... only for a request that was sent (a confirmation
# made for their latest consent and delivered: never one still waiting, failed or never
# made)". A reader sent a request for their latest consent who ignored it, whose later
# request for the same consent (their link had expired and they signed up again) failed, is
# never purged: the code counts only a confirmation made after the latest *request*, not the
# latest consent. Either the sentence or the rule is wrong; the table entry for
# purge-unconfirmed ("who were sent that request") says the other thing.
def test_attack_the_purge_follows_the_readme_consent_not_request(
    client, article, double_opt_in, no_broker, django_capture_on_commit_callbacks, clock
):
    from backpain_report.services.privacy import subscribers_unconfirmed_stale

    capture = django_capture_on_commit_callbacks
    reader = sign_up(client, capture)
    send_due()
    assert is_confirmation(mail.outbox[0])  # delivered, for this consent, and ignored
    clock.shift(8 * DAY)
    sign_up(client, capture)  # the link expired: a second request for the same consent ...
    Delivery.objects.filter(kind="confirmation", status="pending").update(status="failed")
    consent = Subscriber.objects.get(pk=reader.pk).consented_at
    clock.shift(9 * DAY)
    assert Subscriber.objects.get(pk=reader.pk).consented_at == consent  # the same consent
    assert list(subscribers_unconfirmed_stale(older_than_days=8)) == [reader]  # fails: []


# Docs, Double opt-in: an address gets "nothing but the confirmation request" until it
# confirms, and then the report; and "at most one email per THROTTLE_ADDRESS_WINDOW". Once
# confirmed, a confirmation request still queued for the address (here one of those that
# piled up behind a long window) is sent anyway: the worker checks a report's reader, never a
# confirmation's, so the reader gets a pointless "please confirm" after their report.
def test_attack_a_confirmed_reader_is_not_sent_a_confirmation_still_queued(
    client,
    article,
    double_opt_in,
    settings,
    no_broker,
    django_capture_on_commit_callbacks,
    clock,
):
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "THROTTLE_ADDRESS_WINDOW": 30 * 24 * 3600,
    }
    capture = django_capture_on_commit_callbacks
    reader = confirmed_reader_with_report(client, capture)
    clock.shift(HOUR)
    unsubscribe(reader)
    sign_up(client, capture)
    clock.shift(8 * DAY)
    sign_up(client, capture)
    first_due = Delivery.objects.filter(kind="confirmation", status="pending").earliest(
        "next_attempt_at"
    )
    clock.move_to(first_due.next_attempt_at + MINUTE)
    send_due()  # the first request of this consent goes; the second still waits
    assert len(mail.outbox) == 3 and is_confirmation(mail.outbox[2])
    confirm(mail.outbox[2])
    clock.shift(2 * HOUR)
    send_due()
    kinds = ["confirmation" if is_confirmation(m) else "report" for m in mail.outbox[3:]]
    assert kinds == ["report"]  # fails: ['report', 'confirmation'], an hour apart


# Docs, Double opt-in: "A confirmed reader's name is never changed by a sign-up" and a
# stranger's name reaches an address "nothing until the address is confirmed". Under double
# opt-in a re-subscription now takes the new sign-up's name at once, and re-subscribing
# re-opens the reader's old download links (valid while "subscribed"): a stranger who signs
# up the address of a reader who unsubscribed makes her own old link, from the report she
# confirmed, render a PDF greeting the stranger's words, before anyone confirmed anything.
def test_attack_a_readers_old_download_link_never_greets_a_strangers_name(
    client, article, double_opt_in, settings, no_broker, django_capture_on_commit_callbacks, clock
):
    import subprocess

    from django.urls import reverse

    from backpain_report.delivery.tokens import make_download_token

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "both"}
    capture = django_capture_on_commit_callbacks
    reader = confirmed_reader_with_report(client, capture)
    report = Delivery.objects.get(kind="report")
    clock.shift(HOUR)
    unsubscribe(reader)
    clock.shift(2 * HOUR)
    sign_up(client, capture, name="Stranger Chosen Words")  # not Ann: a new, unconfirmed consent
    old_link = reverse("backpain_report:download", args=[make_download_token(report)])
    response = client.get(old_link)
    if response.status_code == 200:
        pdf = b"".join(response.streaming_content) if response.streaming else response.content
        text = subprocess.run(
            ["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True
        ).stdout.decode()
        assert "Stranger" not in text  # fails: the cover greets "Stranger Chosen Words"
