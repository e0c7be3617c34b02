"""Signed links: one salt per purpose, so a token made for one thing works for nothing else."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from django.core import signing
from django.db import transaction
from django.db.models import Exists, OuterRef

from ..conf import app_settings
from ..models import Delivery, Subscriber
from ..rights.consent import awaiting_confirmation_q, awaits_confirmation

UNSUBSCRIBE_SALT = "backpain_report.unsubscribe"
CONFIRM_SALT = "backpain_report.confirm"
DOWNLOAD_SALT = "backpain_report.download"


def _load(token: str, salt: str, max_age: int | None = None) -> tuple[dict | None, bool]:
    """The token's payload dict and whether it expired; ``(None, False)`` if it is not genuine.

    An expired token's payload is still returned (its signature is valid): callers decide.
    """
    try:
        data, expired = signing.loads(token, salt=salt, max_age=max_age), False
    except signing.SignatureExpired:
        data, expired = signing.loads(token, salt=salt), True
    except signing.BadSignature:
        return None, False
    return (data, expired) if isinstance(data, dict) else (None, False)


def make_unsubscribe_token(subscriber_id: int) -> str:
    """A token naming the subscriber; it does not expire, so old emails keep working."""
    return signing.dumps({"s": subscriber_id}, salt=UNSUBSCRIBE_SALT, compress=True)


def read_unsubscribe_token(token: str) -> int | None:
    """The subscriber id in a valid unsubscribe token, or None when it was tampered with."""
    data, _expired = _load(token, UNSUBSCRIBE_SALT)
    subscriber_id = data.get("s") if data else None
    return subscriber_id if isinstance(subscriber_id, int) else None


def consent_version(subscriber: Subscriber) -> str:
    """Changes when the address or the consent changes: older confirm links stop working."""
    consented = subscriber.consented_at.isoformat() if subscriber.consented_at else ""
    raw = f"{subscriber.email_canonical}|{consented}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def make_confirm_token(subscriber: Subscriber) -> str:
    return signing.dumps(
        {"s": subscriber.pk, "v": consent_version(subscriber)}, salt=CONFIRM_SALT, compress=True
    )


class ConfirmState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    USED = "used"  # already confirmed
    UNSUBSCRIBED = "unsubscribed"  # the reader unsubscribed after signing up: nothing to confirm
    REVOKED = "revoked"  # the subscriber was erased or signed up afresh
    INVALID = "invalid"  # tampered with, or not a confirm token


@dataclass(frozen=True)
class ConfirmToken:
    state: ConfirmState
    subscriber: Subscriber | None = None


def read_confirm_token(token: str) -> ConfirmToken:
    """Check a confirm token's signature, age and state (one use; revocable)."""
    data, expired = _load(token, CONFIRM_SALT, app_settings.CONFIRM_MAX_AGE)
    if data is None or not isinstance(data.get("s"), int):
        return ConfirmToken(ConfirmState.INVALID)
    subscriber = Subscriber.objects.filter(pk=data["s"]).first()
    if subscriber is None or consent_version(subscriber) != data.get("v"):
        return ConfirmToken(ConfirmState.REVOKED)
    if subscriber.unsubscribed_at is not None:
        return ConfirmToken(ConfirmState.UNSUBSCRIBED, subscriber)
    if subscriber.confirmed_at is not None:
        return ConfirmToken(ConfirmState.USED, subscriber)
    if expired:
        return ConfirmToken(ConfirmState.EXPIRED, subscriber)
    return ConfirmToken(ConfirmState.VALID, subscriber)


def make_download_token(delivery: Delivery, *, language: str = "") -> str:
    """A link to one delivery's PDF in ``language`` (the email's that carries it; none: the
    reader's current one); revoked when the delivery's ``link_version`` is bumped."""
    payload: dict[str, object] = {"d": delivery.pk, "v": delivery.link_version}
    if language:
        payload["l"] = language
    return signing.dumps(payload, salt=DOWNLOAD_SALT, compress=True)


class DownloadState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    INVALID = "invalid"


@dataclass(frozen=True)
class DownloadToken:
    state: DownloadState
    delivery: Delivery | None = None
    language: str = ""  # the PDF's language, as the link says ("" for a link made without)


def read_download_token(token: str) -> DownloadToken:
    """Check a download token's signature, age and revocation."""
    data, expired = _load(token, DOWNLOAD_SALT, app_settings.DOWNLOAD_MAX_AGE)
    if data is None or not isinstance(data.get("d"), int):
        return DownloadToken(DownloadState.INVALID)
    if expired:
        return DownloadToken(DownloadState.EXPIRED)
    delivery = Delivery.objects.select_related("subscriber", "report").filter(pk=data["d"]).first()
    if (
        delivery is None
        or delivery.link_version != data.get("v")
        or not delivery.subscriber.is_subscribed
        or awaits_confirmation(delivery.subscriber)  # a new consent, not yet confirmed
    ):
        return DownloadToken(DownloadState.REVOKED)
    language = data.get("l")
    return DownloadToken(
        DownloadState.VALID, delivery, language if isinstance(language, str) else ""
    )


def download_link_stands(delivery: Delivery) -> bool:
    """Whether a link found valid for ``delivery`` still is: not revoked, its reader subscribed
    (and, under double opt-in, not waiting to confirm a new consent).

    For re-checking after a slow step (a render). It first locks the delivery's row (where the
    database can): revoking links and erasing the reader both update that row, so a revocation
    or an erasure in flight is waited for. Then it looks in a second query: under READ
    COMMITTED that one sees what the waited-for transaction committed, whereas a locking read
    re-checks only the locked row itself, not the subscriber row behind it.
    """
    subscribed = Subscriber.objects.filter(
        pk=OuterRef("subscriber_id"), unsubscribed_at__isnull=True
    ).exclude(awaiting_confirmation_q())
    with transaction.atomic():
        list(Delivery.objects.select_for_update().filter(pk=delivery.pk).values_list("pk"))
        return Delivery.objects.filter(
            Exists(subscribed), pk=delivery.pk, link_version=delivery.link_version
        ).exists()
