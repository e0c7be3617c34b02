"""Hostile or absurd times in a bounce webhook, or an absurd but accepted window,
must never be a 500 (the email service retries a 500 for days) nor a wrong suppression."""

from __future__ import annotations

import pytest
from django.test import override_settings

from backpain_report.checks import check_settings
from backpain_report.models import MailEvent
from backpain_report.rights.suppression import mail_event_record
from tests.test_bounces import anymail_test_backend, post_ses, ses_bounce  # noqa: F401

pytest.importorskip("anymail")
pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("stamp", ["0001-01-01T00:30:00+01:00", "0001-01-01T05:00:00+14:00"])
def test_an_ses_soft_bounce_dated_in_year_1_with_an_offset_is_no_error(
    client, make_subscriber, stamp
):
    """Year 1 with a positive UTC offset is before 0001-01-01 UTC: converting it for the
    database overflows (OverflowError in mail_event_record), a 500 instead of "too old to
    count". The same moment written as 0001-01-01T00:00:00Z is accepted."""
    reader = make_subscriber(email="ann@example.com")
    sns = ses_bounce("ann@example.com", bounce_type="Transient")
    sns["Timestamp"] = stamp  # the SNS envelope's time: anymail's event.timestamp for SES
    client.raise_request_exception = False
    assert post_ses(client, sns).status_code == 200
    event = MailEvent.objects.get(subscriber=reader)
    assert event.kind == MailEvent.Kind.SOFT_BOUNCE
    reader.refresh_from_db()
    assert reader.suppressed_at is None


@pytest.mark.parametrize("seconds", [10**11, 10**15])
def test_a_soft_bounce_window_the_check_accepts_is_no_error(make_subscriber, seconds):
    """E013 accepts any two positive ints; a window longer than the time since year 1 makes
    ``now - timedelta(seconds=...)`` overflow on every soft bounce (a 500 for every webhook)."""
    limit = {"FROM_EMAIL": "r@example.com", "SITE_URL": "https://reports.example.com"}
    with override_settings(BACKPAIN_REPORT={**limit, "SOFT_BOUNCE_LIMIT": (2, seconds)}):
        assert "backpain_report.E013" not in {e.id for e in check_settings()}
        reader = make_subscriber(email="ann@example.com")
        for n in (1, 2):
            result = mail_event_record(
                esp="Mailgun", event_id=f"soft-{n}", kind=MailEvent.Kind.SOFT_BOUNCE,
                recipient=reader.email,
            )  # fmt: skip
        assert result.suppressed
