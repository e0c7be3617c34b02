"""Hostile and racing input against suppression, the reader's language and sign-up sources."""

from __future__ import annotations

import datetime

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from backpain_report import selectors
from backpain_report.models import MailEvent, Subscriber
from backpain_report.rights.suppression import mail_event_record

SOFT = MailEvent.Kind.SOFT_BOUNCE


def _soft(reader: Subscriber, event_id: str, hours_ago: float):
    return mail_event_record(
        esp="Mailgun",
        event_id=event_id,
        kind=SOFT,
        recipient=reader.email,
        occurred_at=timezone.now() - datetime.timedelta(hours=hours_ago),
    )


@pytest.mark.django_db
@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (3, 86400)})
def test_soft_bounces_arriving_out_of_order_still_reach_the_limit(make_subscriber):
    """Webhooks are retried and arrive out of order: three soft bounces within one day
    suppress, whichever arrives last (the last to arrive here is the middle one)."""
    reader = make_subscriber(email="ann@example.com")
    _soft(reader, "a", hours_ago=10)
    _soft(reader, "c", hours_ago=0)
    result = _soft(reader, "b", hours_ago=5)
    reader.refresh_from_db()
    assert result.suppressed and reader.suppressed_at is not None
    assert reader.suppressed_reason.startswith("3 soft bounces (Mailgun)")


@pytest.mark.django_db
@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (3, 86400)})
def test_soft_bounces_spread_wider_than_the_window_do_not_suppress(make_subscriber):
    reader = make_subscriber(email="ann@example.com")
    _soft(reader, "a", hours_ago=30)
    _soft(reader, "c", hours_ago=0)
    _soft(reader, "b", hours_ago=15)  # a-b and b-c within a day, a-c not: never 3 in a day
    reader.refresh_from_db()
    assert reader.suppressed_at is None


@pytest.mark.django_db
def test_an_event_with_control_characters_is_stored_without_them(make_subscriber):
    """The bounce text is the remote mail server's: a NUL in it must not reach the database
    (PostgreSQL refuses NUL in text, which would make the webhook a 500 the service retries)."""
    reader = make_subscriber(email="ann@example.com")
    result = mail_event_record(
        esp="Mail\x00gun",
        event_id="id\x00-1",
        kind=MailEvent.Kind.HARD_BOUNCE,
        recipient="ann@example.com\x00",
        description="550 user\x00 unknown\x07",
    )
    assert result.suppressed
    event = MailEvent.objects.get()
    reader.refresh_from_db()
    for text in (event.esp, event.event_id, event.description, reader.suppressed_reason):
        assert "\x00" not in text and "\x07" not in text
    assert event.description == "550 user unknown"


@pytest.mark.django_db
def test_a_mailgun_bounce_quoting_a_nul_is_answered_and_stored_clean(client, make_subscriber):
    pytest.importorskip("anymail")
    from .test_bounces import mailgun_failed, post_mailgun

    reader = make_subscriber(email="ann@example.com")
    body = mailgun_failed("ann@example.com")
    body["event-data"]["delivery-status"]["message"] = "550 5.1.1 \x00 no such user"
    assert post_mailgun(client, body).status_code == 200
    reader.refresh_from_db()
    assert reader.suppressed_reason == "Hard bounce (Mailgun): 550 5.1.1 no such user"


@pytest.mark.django_db
@override_settings(LANGUAGE_CODE="en", LANGUAGES=[("en", "English"), ("de", "German")])
def test_a_language_removed_from_languages_falls_back_to_language_code(make_subscriber):
    """A reader who signed up in a language the site no longer lists gets LANGUAGE_CODE, not
    a mix (Django's own French dates in an English email, a PDF tagged French)."""
    reader = make_subscriber(email="ann@example.com")
    reader.language = "fr"
    assert selectors.subscriber_language(reader) == "en"
    reader.language = "de-ch"  # a variant of a listed language: that language
    assert selectors.subscriber_language(reader) == "de"
    reader.language = "x" * 16
    assert selectors.subscriber_language(reader) == "en"
    reader.language = "de"
    assert selectors.subscriber_language(reader) == "de"


@pytest.mark.django_db
@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (3, 86400)})
def test_soft_bounces_dated_in_the_future_count_from_their_arrival(make_subscriber):
    """A skewed clock or a forged date cannot keep a soft bounce in the window: two dated ten
    days ahead count from their arrival and have aged out when a real one comes ten days on."""
    reader = make_subscriber(email="ann@example.com")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _soft(reader, "ahead-1", hours_ago=-240)
        _soft(reader, "ahead-2", hours_ago=-240)
        assert set(MailEvent.objects.values_list("occurred_at", flat=True)) == {start}
    with time_machine.travel(start + datetime.timedelta(days=10), tick=False):
        result = _soft(reader, "real", hours_ago=0)
    reader.refresh_from_db()
    assert not result.suppressed and reader.suppressed_at is None


@pytest.mark.django_db
@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (3, 86400)})
def test_soft_bounces_dated_long_ago_count_as_old(make_subscriber):
    """Three soft bounces within one day, thirty days ago, delivered late now: outside the
    window that ends now, so no suppression; an absurdly old date is no error either."""
    reader = make_subscriber(email="ann@example.com")
    for hours in (720, 721, 722):
        assert _soft(reader, f"old-{hours}", hours_ago=hours).recorded
    ancient = mail_event_record(
        esp="Mailgun",
        event_id="ancient",
        kind=SOFT,
        recipient=reader.email,
        occurred_at=datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc),
    )
    assert ancient.recorded and not ancient.suppressed
    reader.refresh_from_db()
    assert reader.suppressed_at is None
    _soft(reader, "now-1", hours_ago=1)
    _soft(reader, "now-2", hours_ago=0)
    reader.refresh_from_db()
    assert reader.suppressed_at is None  # two within the window: the old ones do not help
    assert _soft(reader, "now-3", hours_ago=2).suppressed
