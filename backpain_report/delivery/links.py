"""Absolute URLs carrying a reader's signed token: unsubscribing, confirming, downloading.

Built on the site's own address (:mod:`backpain_report.site`), so their host is IDNA-encoded too.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import get_language

from ..models import Delivery, Subscriber
from ..site import absolute
from .tokens import make_confirm_token, make_download_token, make_unsubscribe_token


def unsubscribe_url(subscriber: Subscriber) -> str:
    """The page that shows an "Unsubscribe" button (GET) and acts on POST."""
    token = make_unsubscribe_token(subscriber.pk)
    return absolute(reverse("backpain_report:unsubscribe", args=[token]), subscriber)


def one_click_unsubscribe_url(subscriber: Subscriber) -> str:
    """The RFC 8058 endpoint mail clients POST to from the List-Unsubscribe header."""
    token = make_unsubscribe_token(subscriber.pk)
    return absolute(reverse("backpain_report:one_click_unsubscribe", args=[token]), subscriber)


def confirm_url(subscriber: Subscriber) -> str:
    """The double opt-in page (GET shows a button, POST confirms)."""
    token = make_confirm_token(subscriber)
    return absolute(reverse("backpain_report:confirm", args=[token]), subscriber)


def download_url(delivery: Delivery) -> str:
    """The signed, expiring link to this delivery's PDF, in the active language: the one the
    email that carries it is written in, so the link serves what the email promised."""
    token = make_download_token(delivery, language=get_language() or "")
    return absolute(reverse("backpain_report:download", args=[token]), delivery.subscriber)
