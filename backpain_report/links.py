"""Absolute URLs for links that leave the site in emails and PDFs."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.urls import reverse

from .conf import app_settings
from .models import Delivery, Subscriber
from .tokens import make_confirm_token, make_download_token, make_unsubscribe_token


def site_url(subscriber: Subscriber | None = None) -> str:
    """``SITE_URL`` if set, else the origin of the page the subscriber signed up on."""
    configured = app_settings.SITE_URL
    if configured:
        return configured.rstrip("/")
    if subscriber is not None and subscriber.source_url:
        parts = urlsplit(subscriber.source_url)
        return f"{parts.scheme}://{parts.netloc}"
    return ""


def absolute(path: str, subscriber: Subscriber | None = None) -> str:
    return site_url(subscriber) + path


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
    """The signed, expiring link to this delivery's PDF."""
    token = make_download_token(delivery)
    return absolute(reverse("backpain_report:download", args=[token]), delivery.subscriber)
