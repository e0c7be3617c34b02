"""Subscribers: a sign-up (in the web request and in the worker), confirmation, unsubscribing.

Plain keyword-only functions, no HTTP. The web request only records a sign-up
(:func:`signup_submit`); the worker decides what it means (:func:`signup_process`, which calls
:func:`subscriber_signup`) and creates the delivery to send.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import get_language

from .. import selectors, signals
from ..addresses import canonical_email
from ..conf import app_settings
from ..models import Article, Delivery, PendingSignup, Report, Subscriber
from ..publishing import publish_deliveries, publish_on_commit, publish_signup_on_commit
from ..sending import UNSUBSCRIBED_ERROR
from ..signals import send_after_commit
from ..sources import SOURCE_FIELDS, Source, source_clean
from ..suppression import suppressed_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignupResult:
    subscriber: Subscriber
    delivery: Delivery | None
    created: bool


def consent_ip(ip: str | None) -> str:
    """The IP to store with a consent record: a keyed hash unless ``HASH_IP`` is off."""
    if not ip:
        return ""
    if not app_settings.HASH_IP:
        return ip
    key = settings.SECRET_KEY.encode()
    return "sha256:" + hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:32]


def _consent_fields(
    *, ip: str | None, user_agent: str, source_url: str, source: Source | None = None
) -> dict:
    """The consent record of a sign-up, with where the reader came from (cleaned)."""
    return {
        **source_clean(source or {}),
        "consent_text": str(app_settings.CONSENT_TEXT),  # as shown: in the reader's language
        "consent_version": str(app_settings.CONSENT_VERSION),
        "consented_at": timezone.now(),
        "consent_ip": consent_ip(ip),
        "consent_user_agent": user_agent[:500],
        "source_url": source_url[:500],
        "language": signup_language(),
    }


def signup_language() -> str:
    """The language the reader signs up in (the request's active language): their emails
    and report are written in it."""
    return (get_language() or settings.LANGUAGE_CODE)[:16]


def signup_submit(
    *,
    name: str,
    email: str,
    article: Article | None,
    ip: str | None = None,
    user_agent: str = "",
    source_url: str = "",
    source: Source | None = None,
) -> PendingSignup:
    """Accept a sign-up in the web request: one INSERT and, after commit, one message.

    The same work whatever the address (new, known, confirmed, unsubscribed or throttled), so
    neither the answer nor its timing tells whether an address is on the list; the worker
    decides what the sign-up means (:func:`signup_process`). ``source`` is where the reader
    came from (``utm_*``, the referring host: see :mod:`sources`), kept with the consent.
    """
    signup = PendingSignup.objects.create(
        email=email,
        email_canonical=canonical_email(email),
        name=name,
        article=article,
        enqueued_at=timezone.now(),  # about to be published; a failed publish is recorded
        **_consent_fields(ip=ip, user_agent=user_agent, source_url=source_url, source=source),
    )
    publish_signup_on_commit(signup.pk)  # at once in autocommit, else after the commit
    return signup


def signup_process(*, signup_id: int) -> SignupResult | None:
    """Turn a pending sign-up into a subscriber and a delivery (the worker's side of a sign-up).

    Runs once per sign-up: the row is deleted in the same transaction, so a duplicate message
    (or a second worker) finds nothing. Returns None when there was nothing to do; the caller
    sends ``result.delivery`` (it is not published).
    """
    with transaction.atomic():
        pending = PendingSignup.objects.filter(pk=signup_id).first()
        if pending is None or not PendingSignup.objects.filter(pk=signup_id).delete()[0]:
            return None  # processed already (a redelivered message, or another worker)
        # The reader asked for this article's report, even if it was unpublished meanwhile.
        article = (
            Article.objects.select_related("report").filter(pk=pending.article_id).first()
            if pending.article_id is not None
            else None
        ) or selectors.article_for_signup(slug=None)
        if article is None:
            logger.warning("Sign-up %s: no published article to sign up for.", signup_id)
            return None
        return subscriber_signup(
            name=pending.name,
            email=pending.email,
            article=article,
            consent={
                "consent_text": pending.consent_text,
                "consent_version": pending.consent_version,
                "consented_at": pending.consented_at,
                "consent_ip": pending.consent_ip,
                "consent_user_agent": pending.consent_user_agent,
                "source_url": pending.source_url,
                "language": pending.language,
                **{name: getattr(pending, name) for name in SOURCE_FIELDS},
            },
            publish=False,
        )


def _recently_emailed(subscriber: Subscriber) -> bool:
    """Whether a report or confirmation went to (or is on its way to) this reader within
    ``THROTTLE_ADDRESS_WINDOW``: then a sign-up sends nothing new."""
    since = timezone.now() - timedelta(seconds=int(app_settings.THROTTLE_ADDRESS_WINDOW))
    return (
        subscriber.deliveries.filter(created_at__gte=since)
        .exclude(status=Delivery.Status.CANCELLED)
        .exists()
    )


def _window_end(subscriber: Subscriber) -> datetime | None:
    """When ``THROTTLE_ADDRESS_WINDOW`` after the last email to this reader ends, if it has
    not yet; None when the reader may be written to now."""
    window = timedelta(seconds=int(app_settings.THROTTLE_ADDRESS_WINDOW))
    last = (
        subscriber.deliveries.filter(created_at__gte=timezone.now() - window)
        .exclude(status=Delivery.Status.CANCELLED)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return None if last is None else last + window


def _asked_to_confirm_recently(subscriber: Subscriber) -> bool:
    """Whether this consent's confirmation is on its way, or went out within
    ``CONFIRM_MAX_AGE`` and its link may still work: then a sign-up sends no other one (an
    ignored request is not followed by more until its link has expired).

    Only a confirmation asked for this consent counts (made at or after
    ``confirmation_requested_at``, which a re-subscription sets before asking): the link of one
    sent before the reader unsubscribed stopped working with the new consent.
    """
    since = timezone.now() - timedelta(seconds=int(app_settings.CONFIRM_MAX_AGE))
    asked = subscriber.deliveries.filter(kind=Delivery.Kind.CONFIRMATION, created_at__gte=since)
    if subscriber.confirmation_requested_at is not None:
        asked = asked.filter(created_at__gte=subscriber.confirmation_requested_at)
    return asked.exclude(status__in=[Delivery.Status.CANCELLED, Delivery.Status.FAILED]).exists()


def _confirmation_for_signup(
    subscriber: Subscriber,
    report: Report,
    *,
    publish: bool = True,
    not_before: datetime | None = None,
) -> Delivery:
    """A confirmation email for a sign-up; stamps the request's time.

    With ``not_before`` (the end of the address's ``THROTTLE_ADDRESS_WINDOW``) it waits until
    then: it is published with that countdown whatever ``publish`` says, and the sweep sends
    it if that message is lost.
    """
    now = timezone.now()
    Subscriber.objects.filter(pk=subscriber.pk).update(confirmation_requested_at=now)
    subscriber.confirmation_requested_at = now
    deferred = not_before is not None and not_before > now
    delivery = Delivery.objects.create(
        subscriber=subscriber,
        report=report,
        edition=report.edition,
        kind=Delivery.Kind.CONFIRMATION,
        next_attempt_at=not_before if deferred else None,
        enqueued_at=None if publish or deferred else now,  # not published: handed to this worker
    )
    if deferred:
        assert not_before is not None
        countdown = (not_before - now).total_seconds()
        transaction.on_commit(
            lambda: publish_deliveries([delivery.pk], countdown=countdown), robust=True
        )
        logger.info(
            "Subscriber %s was emailed recently; their confirmation waits until %s.",
            subscriber.pk,
            not_before.isoformat(),
        )
    elif publish:
        publish_on_commit(delivery.pk)
    return delivery


#: Report deliveries that count as the reader having (or about to have) the report.
_DELIVERED_OR_ON_ITS_WAY = [Delivery.Status.PENDING, Delivery.Status.SENDING, Delivery.Status.SENT]


def _delivery_for_signup(
    subscriber: Subscriber, report: Report, *, publish: bool = True
) -> Delivery:
    """The current edition for this reader, unless they already have it since their consent.

    A reader "has" the edition when a report of it is on its way, or was sent after their
    latest consent and its download link still works (``DOWNLOAD_MAX_AGE``): a failed or
    cancelled one does not count, nor one sent before they unsubscribed and signed up afresh,
    nor one whose link has expired (its page tells the reader to sign up again for a fresh
    copy). The first report of an edition is the unique sign-up delivery; any later one is a
    "signed up again" delivery.
    """
    link_works_since = timezone.now() - timedelta(seconds=int(app_settings.DOWNLOAD_MAX_AGE))
    has_it = subscriber.deliveries.filter(
        kind=Delivery.Kind.REPORT,
        report=report,
        edition=report.edition,
        status__in=_DELIVERED_OR_ON_ITS_WAY,
    ).exclude(status=Delivery.Status.SENT, sent_at__lt=link_works_since)
    if subscriber.consented_at is not None:
        has_it = has_it.filter(created_at__gte=subscriber.consented_at)
    existing = has_it.order_by("-created_at").first()
    if existing is not None:
        return existing
    lookup = {
        "subscriber": subscriber,
        "report": report,
        "edition": report.edition,
        "reason": Delivery.Reason.SIGNUP,
        "kind": Delivery.Kind.REPORT,
    }
    # Not published: handed to the worker that runs this (it sends at once).
    handed_over = {"enqueued_at": None if publish else timezone.now()}
    try:
        with transaction.atomic():
            delivery, created = Delivery.objects.get_or_create(**lookup, defaults=handed_over)
    except IntegrityError:
        delivery, created = Delivery.objects.get(**lookup), False
    if not created:  # that one failed, was cancelled, or predates the latest consent
        delivery = Delivery.objects.create(
            **{**lookup, "reason": Delivery.Reason.SIGNUP_AGAIN}, **handed_over
        )
    if publish:
        publish_on_commit(delivery.pk)
    return delivery


def subscriber_signup(
    *,
    name: str,
    email: str,
    article: Article,
    ip: str | None = None,
    user_agent: str = "",
    source_url: str = "",
    consent: dict | None = None,
    publish: bool = True,
) -> SignupResult:
    """Record a sign-up and queue the report; a known address makes no second subscriber.

    A known, subscribed address gets no new email for an edition it already has (see
    :func:`_delivery_for_signup`), nor anything within ``THROTTLE_ADDRESS_WINDOW`` of the last
    email, nor a second confirmation while an unanswered one's link may still work. An address
    that had unsubscribed is re-subscribed: that is a new consent, so with double opt-in it is
    asked to confirm again, and once confirmed (or at once without double opt-in) the report goes
    out again. ``consent`` carries the consent record taken in the request (else it is made
    from ``ip``, ``user_agent`` and ``source_url``); with ``publish=False`` the caller sends.
    """
    canonical = canonical_email(email)
    consent = consent or _consent_fields(ip=ip, user_agent=user_agent, source_url=source_url)
    with transaction.atomic():
        subscriber, created = Subscriber.objects.get_or_create(
            email_canonical=canonical,
            defaults={"email": email, "name": name, "source_article": article, **consent},
        )
        if not created:  # one sign-up of an address at a time decides what it means
            subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
            language = consent.get("language")
            if language and subscriber.language != language:  # the latest sign-up's language
                Subscriber.objects.filter(pk=subscriber.pk).update(language=language)
                subscriber.language = language
        resubscribed = False
        if not created and subscriber.unsubscribed_at is not None:
            fresh = {"unsubscribed_at": None, **consent}
            if app_settings.DOUBLE_OPT_IN:  # a new consent is confirmed anew, with its name
                fresh.update(confirmed_at=None, confirmation_requested_at=timezone.now(), name=name)
            # Conditional: of two concurrent re-subscriptions, one wins.
            resubscribed = bool(
                Subscriber.objects.filter(pk=subscriber.pk, unsubscribed_at__isnull=False).update(
                    **fresh
                )
            )
            subscriber.refresh_from_db()
        delivery = None
        report = article.report
        if report is None or not subscriber.is_subscribed:
            pass
        elif subscriber.is_suppressed:
            delivery = _suppressed_signup_record(subscriber, report)
        elif app_settings.DOUBLE_OPT_IN and subscriber.confirmed_at is None:
            if not created:
                _unconfirmed_name_update(subscriber, name)
            if not _asked_to_confirm_recently(subscriber):  # this consent gets its request,
                delivery = _confirmation_for_signup(  # after the window if one is running
                    subscriber, report, publish=publish, not_before=_window_end(subscriber)
                )
        elif not created and _recently_emailed(subscriber):
            logger.info("Subscriber %s was emailed recently; nothing new sent.", subscriber.pk)
        else:
            delivery = _delivery_for_signup(subscriber, report, publish=publish)
        if created or resubscribed:
            send_after_commit(signals.subscriber_created, sender=Subscriber, subscriber=subscriber)
    return SignupResult(subscriber=subscriber, delivery=delivery, created=created)


def _unconfirmed_name_update(subscriber: Subscriber, name: str) -> None:
    """Under double opt-in, an unconfirmed address's name is only a request: the latest
    sign-up's replaces it, so the report greets the name given last before the confirmation
    (the confirmation email shows no name). A confirmed reader's name is never changed by a
    sign-up."""
    if name and subscriber.name != name:
        Subscriber.objects.filter(pk=subscriber.pk, confirmed_at__isnull=True).update(name=name)
        subscriber.name = name


def _suppressed_signup_record(subscriber: Subscriber, report: Report) -> Delivery | None:
    """A sign-up of a suppressed address sends nothing: it leaves a cancelled delivery saying
    why (on the subscriber's timeline), at most one per ``THROTTLE_ADDRESS_WINDOW``."""
    since = timezone.now() - timedelta(seconds=int(app_settings.THROTTLE_ADDRESS_WINDOW))
    if subscriber.deliveries.filter(created_at__gte=since).exists():
        return None
    logger.info("Subscriber %s is suppressed; the sign-up sends nothing.", subscriber.pk)
    return Delivery.objects.create(
        subscriber=subscriber,
        report=report,
        edition=report.edition,
        reason=Delivery.Reason.SIGNUP_AGAIN,
        status=Delivery.Status.CANCELLED,
        last_error=suppressed_error(subscriber.suppressed_reason),
    )


def subscriber_confirm(*, subscriber: Subscriber) -> bool:
    """Record the reader's confirmation and, with double opt-in, queue the report.

    True if this call confirmed the address; False if it was already confirmed (one use) or the
    reader has unsubscribed meanwhile. The report goes out again when this confirms a
    re-subscription of a reader who had it before.
    """
    with transaction.atomic():
        changed = Subscriber.objects.filter(
            pk=subscriber.pk, confirmed_at__isnull=True, unsubscribed_at__isnull=True
        ).update(confirmed_at=timezone.now())
        if not changed:
            return False
        subscriber.refresh_from_db()
        report = selectors.report_for_subscriber(subscriber=subscriber)
        if app_settings.DOUBLE_OPT_IN and report is not None:
            _delivery_for_signup(subscriber, report)
        send_after_commit(signals.subscriber_confirmed, sender=Subscriber, subscriber=subscriber)
    return True


def confirmation_resend(*, subscriber: Subscriber) -> Delivery | None:
    """A fresh confirmation email for an unconfirmed, subscribed, unsuppressed reader; None
    otherwise."""
    if subscriber.confirmed_at is not None or not subscriber.is_subscribed:
        return None
    if subscriber.is_suppressed:
        return None
    report = selectors.report_for_subscriber(subscriber=subscriber)
    if report is None:
        return None
    with transaction.atomic():
        return _confirmation_for_signup(subscriber, report)


def subscriber_unsubscribe(*, subscriber_id: int) -> bool:
    """Unsubscribe and cancel anything still queued; True if this call changed anything.

    Replaying it (a second click, a mail client retrying) is harmless.
    """
    with transaction.atomic():
        changed = Subscriber.objects.filter(pk=subscriber_id, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now()
        )
        if changed:
            Delivery.objects.filter(
                subscriber_id=subscriber_id, status=Delivery.Status.PENDING
            ).update(status=Delivery.Status.CANCELLED, last_error=UNSUBSCRIBED_ERROR)
            transaction.on_commit(lambda: _announce_unsubscribe(subscriber_id), robust=True)
    return bool(changed)


def _announce_unsubscribe(subscriber_id: int) -> None:
    """Send ``subscriber_unsubscribed`` (reading the row only when someone listens)."""
    if signals.subscriber_unsubscribed.has_listeners(Subscriber):
        subscriber = Subscriber.objects.get(pk=subscriber_id)
        signals.send_robustly(
            signals.subscriber_unsubscribed, sender=Subscriber, subscriber=subscriber
        )
