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
from django.db.models import Max, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import get_language

from .. import selectors, signals
from ..conf import app_settings
from ..config.validators import FOLLOWUPS_CONSENT_SUFFIX
from ..delivery.publishing import publish_deliveries, publish_on_commit, publish_signup_on_commit
from ..delivery.sending import UNSUBSCRIBED_ERROR
from ..models import Article, Delivery, PendingSignup, Report, Subscriber
from ..page.sources import SOURCE_FIELDS, Source, source_clean
from ..rights.addresses import canonical_email
from ..rights.consent import awaits_confirmation
from ..rights.suppression import suppressed_error
from ..signals import send_after_commit
from ..webhooks.events import EventType
from ..webhooks.outbox import events_record, events_record_by_id

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
    *,
    ip: str | None,
    user_agent: str,
    source_url: str,
    source: Source | None = None,
    followups: bool = False,
) -> dict:
    """The consent record of a sign-up, with where the reader came from (cleaned).

    ``followups``: the text shown named the follow-up emails (``FOLLOWUP_CONSENT_TEXT``) and the
    report offers them; it is recorded with its own version (``CONSENT_VERSION+followups``)."""
    text = app_settings.FOLLOWUP_CONSENT_TEXT if followups else app_settings.CONSENT_TEXT
    version = str(app_settings.CONSENT_VERSION)
    return {
        **source_clean(source or {}),
        "consent_text": str(text),  # as shown: in the reader's language
        "consent_version": version + FOLLOWUPS_CONSENT_SUFFIX if followups else version,
        "followups_consented": followups,
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
    followups: bool = False,
) -> PendingSignup:
    """Accept a sign-up in the web request: one INSERT and, after commit, one message.

    The same work whatever the address (new, known, confirmed, unsubscribed or throttled), so
    neither the answer nor its timing tells whether an address is on the list; the worker
    decides what the sign-up means (:func:`signup_process`). ``source`` is where the reader
    came from (``utm_*``, the referring host: see :mod:`sources`), kept with the consent.
    ``followups``: the consent shown named the follow-up emails (the form's ``followups``);
    it is recorded as such only while the report offers them (a forged or stale form's claim
    is not).
    """
    followups = followups and _followups_offered(article)
    signup = PendingSignup.objects.create(
        email=email,
        email_canonical=canonical_email(email),
        name=name,
        article=article,
        enqueued_at=timezone.now(),  # about to be published; a failed publish is recorded
        **_consent_fields(
            ip=ip, user_agent=user_agent, source_url=source_url, source=source, followups=followups
        ),
    )
    publish_signup_on_commit(signup.pk)  # at once in autocommit, else after the commit
    return signup


def _followups_offered(article: Article | None) -> bool:
    """Whether ``article``'s report offers follow-ups in the active language now (read with
    the article by :func:`selectors.article_ref_for_signup`, else looked up)."""
    if article is None:
        return False
    offered = getattr(article, "followups_on", None)
    if offered is not None:
        return bool(offered)
    report_id = Article.objects.filter(pk=article.pk).values_list("report_id", flat=True).first()
    return selectors.followups_offered(report_id=report_id, language=signup_language())


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
                "followups_consented": pending.followups_consented,
                **{name: getattr(pending, name) for name in SOURCE_FIELDS},
            },
            publish=False,
        )


def _address_window() -> timedelta:
    """``THROTTLE_ADDRESS_WINDOW`` as a span, at most what the calendar can hold from now."""
    return timedelta(seconds=min(int(app_settings.THROTTLE_ADDRESS_WINDOW), _LONGEST_WINDOW))


#: Longer windows count as this long (about 100 years): "never twice", without an overflow.
_LONGEST_WINDOW = 100 * 366 * 24 * 3600


def _emails(subscriber: Subscriber) -> QuerySet[Delivery]:
    """This reader's emails, each with ``emailed_at``: when it went (``sent_at``), or when it is
    due to go (a waiting or retried one's ``next_attempt_at``), else when it was made."""
    return (
        subscriber.deliveries.exclude(status=Delivery.Status.CANCELLED)
        .annotate(emailed_at=Coalesce("sent_at", "next_attempt_at", "created_at"))
        .order_by()
    )


def _recently_emailed(subscriber: Subscriber) -> bool:
    """Whether a report or confirmation went to (or is on its way to) this reader within
    ``THROTTLE_ADDRESS_WINDOW``: then a sign-up sends nothing new."""
    return _window_end(subscriber) is not None


def _window_end(subscriber: Subscriber) -> datetime | None:
    """When ``THROTTLE_ADDRESS_WINDOW`` after the last email to this reader (sent, or due to
    go) ends, if it has not yet; None when the reader may be written to now."""
    now = timezone.now()
    window = _address_window()
    last = _emails(subscriber).aggregate(last=Max("emailed_at"))["last"]
    if last is None or last + window <= now:
        return None
    return last + window


def _asked_to_confirm_recently(subscriber: Subscriber) -> bool:
    """Whether this consent's confirmation is on its way (however long it waits), or went out
    within ``CONFIRM_MAX_AGE`` and its link may still work: then a sign-up sends no other one
    (an ignored request is not followed by more until its link has expired).

    Only a confirmation made for this consent counts (see :func:`confirmations_for_consent`):
    the link of one sent before the reader unsubscribed stopped working with the new consent.
    """
    link_life = timedelta(seconds=int(app_settings.CONFIRM_MAX_AGE))
    live = Q(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING]) | Q(
        status=Delivery.Status.SENT, sent_at__gte=timezone.now() - link_life
    )
    return confirmations_for_consent(subscriber).filter(live).exists()


def confirmations_for_consent(subscriber: Subscriber) -> QuerySet[Delivery]:
    """The confirmation requests made for the reader's current consent (since the worker
    recorded it, by its own clock)."""
    asked = subscriber.deliveries.filter(kind=Delivery.Kind.CONFIRMATION)
    since = _consent_recorded(subscriber)
    return asked if since is None else asked.filter(created_at__gte=since)


def _consent_recorded(subscriber: Subscriber) -> datetime | None:
    """When the current consent was recorded (by the worker's clock; rows from before that was
    kept: the consent's own time)."""
    return subscriber.consent_recorded_at or subscriber.consented_at


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
    since = _consent_recorded(subscriber)
    if since is not None:
        has_it = has_it.filter(created_at__gte=since)
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
    given_at = consent.get("consented_at") or timezone.now()  # the web request's clock
    with transaction.atomic():
        now = timezone.now()  # this worker's clock: what its deliveries are dated by
        # Under double opt-in a first consent waits for its confirmation from the start (even
        # when its article offers no report to ask with): nothing else reaches the address.
        waits = {"confirmation_requested_at": now} if app_settings.DOUBLE_OPT_IN else {}
        subscriber, created = Subscriber.objects.get_or_create(
            email_canonical=canonical,
            defaults={
                "email": email,
                "name": name,
                "source_article": article,
                **consent,
                **waits,
                "consent_recorded_at": now,
                "latest_signup_at": given_at,
            },
        )
        resubscribed = False
        if not created:  # one sign-up of an address at a time decides what it means
            subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
            if _given_before_unsubscribing(subscriber, given_at):
                logger.info(
                    "Sign-up for subscriber %s was given before they unsubscribed; ignored.",
                    subscriber.pk,
                )
                return SignupResult(subscriber=subscriber, delivery=None, created=False)
            if subscriber.unsubscribed_at is not None:
                resubscribed = _resubscribe(subscriber, name, consent, now=now)
            elif _is_latest_signup(subscriber, given_at):
                _latest_signup_record(subscriber, name, consent.get("language"), given_at)
        delivery = _delivery_decide(subscriber, article.report, created=created, publish=publish)
        if created or resubscribed:
            events_record(EventType.SUBSCRIBER_CREATED, subscriber)
            send_after_commit(signals.subscriber_created, sender=Subscriber, subscriber=subscriber)
    return SignupResult(subscriber=subscriber, delivery=delivery, created=created)


def _given_before_unsubscribing(subscriber: Subscriber, given_at: datetime) -> bool:
    """Whether this sign-up was given before the reader unsubscribed (a message delayed, then
    processed after the unsubscribe): the unsubscribe withdrew it, so it changes nothing."""
    return subscriber.unsubscribed_at is not None and given_at < subscriber.unsubscribed_at


def _is_latest_signup(subscriber: Subscriber, given_at: datetime) -> bool:
    """Whether no sign-up of the address given later was processed before this one."""
    return subscriber.latest_signup_at is None or given_at >= subscriber.latest_signup_at


def _resubscribe(subscriber: Subscriber, name: str, consent: dict, *, now: datetime) -> bool:
    """Record a new consent for an address that had unsubscribed; True if this call did.

    With double opt-in it is confirmed anew, and it takes the name given with it (no report or
    download link reaches the address until it is confirmed)."""
    fresh = {
        "unsubscribed_at": None,
        "followups_consented": False,  # unless the new consent named them
        **consent,
        "consent_recorded_at": now,
        "latest_signup_at": consent.get("consented_at") or now,
    }
    if app_settings.DOUBLE_OPT_IN:
        fresh.update(confirmed_at=None, confirmation_requested_at=now, name=name)
    # Conditional: of two concurrent re-subscriptions, one wins.
    done = Subscriber.objects.filter(pk=subscriber.pk, unsubscribed_at__isnull=False).update(
        **fresh
    )
    subscriber.refresh_from_db()
    return bool(done)


def _latest_signup_record(
    subscriber: Subscriber, name: str, language: str | None, given_at: datetime
) -> None:
    """A known, subscribed address signed up again: the latest sign-up's language, and under
    double opt-in the name of a consent not yet confirmed, replace the earlier ones.

    That name is only a request: the report greets the name given last before the confirmation
    (the confirmation email shows no name; no download link of the address works meanwhile). A
    confirmed reader's name, or that of a reader from before double opt-in, is never changed by
    a sign-up."""
    changes: dict = {"latest_signup_at": given_at}
    if language:
        changes["language"] = language
    if name and awaits_confirmation(subscriber):
        changes["name"] = name
    Subscriber.objects.filter(pk=subscriber.pk).update(**changes)
    for field, value in changes.items():
        setattr(subscriber, field, value)


def _delivery_decide(
    subscriber: Subscriber, report: Report | None, *, created: bool, publish: bool
) -> Delivery | None:
    """What a sign-up of this (locked) subscriber sends: a confirmation, the report or nothing."""
    if report is None or not subscriber.is_subscribed:
        return None
    if subscriber.is_suppressed:
        return _suppressed_signup_record(subscriber, report)
    if awaits_confirmation(subscriber):  # double opt-in: a consent not yet confirmed
        if _asked_to_confirm_recently(subscriber):
            return None
        # This consent gets its request, after the address's window if one is running.
        return _confirmation_for_signup(
            subscriber, report, publish=publish, not_before=_window_end(subscriber)
        )
    if not created and _recently_emailed(subscriber):
        logger.info("Subscriber %s was emailed recently; nothing new sent.", subscriber.pk)
        return None
    return _delivery_for_signup(subscriber, report, publish=publish)


def _suppressed_signup_record(subscriber: Subscriber, report: Report) -> Delivery | None:
    """A sign-up of a suppressed address sends nothing: it leaves a cancelled delivery saying
    why (on the subscriber's timeline), at most one per ``THROTTLE_ADDRESS_WINDOW``."""
    since = timezone.now() - _address_window()
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
        # The consent the link was made for (``subscriber`` as its token was read): a
        # re-subscription in between is another consent, which this link does not confirm.
        changed = Subscriber.objects.filter(
            pk=subscriber.pk,
            email_canonical=subscriber.email_canonical,
            consented_at=subscriber.consented_at,
            confirmed_at__isnull=True,
            unsubscribed_at__isnull=True,
        ).update(confirmed_at=timezone.now())
        if not changed:
            return False
        asked = subscriber.confirmation_requested_at is not None
        subscriber.refresh_from_db()
        report = selectors.report_for_subscriber(subscriber=subscriber)
        # A consent that waited for this gets its report, even if double opt-in was turned off
        # meanwhile.
        if report is not None and (app_settings.DOUBLE_OPT_IN or asked):
            _delivery_for_signup(subscriber, report)
        events_record(EventType.SUBSCRIBER_CONFIRMED, subscriber)
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


def confirmation_fresh(*, subscriber: Subscriber) -> Delivery | None:
    """A fresh confirmation asked for on an expired link's page, sent as a sign-up's would be.

    None while this consent's request is on its way or went out with a link that may still
    work; otherwise it goes after the address's ``THROTTLE_ADDRESS_WINDOW``, if one is running.
    Only for a consent waiting for its confirmation (double opt-in).
    """
    with transaction.atomic():
        subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if not awaits_confirmation(subscriber) or not subscriber.is_subscribed:
            return None
        if subscriber.is_suppressed or _asked_to_confirm_recently(subscriber):
            return None
        report = selectors.report_for_subscriber(subscriber=subscriber)
        if report is None:
            return None
        return _confirmation_for_signup(subscriber, report, not_before=_window_end(subscriber))


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
            events_record_by_id(EventType.SUBSCRIBER_UNSUBSCRIBED, subscriber_id)
            transaction.on_commit(lambda: _announce_unsubscribe(subscriber_id), robust=True)
    return bool(changed)


def _announce_unsubscribe(subscriber_id: int) -> None:
    """Send ``subscriber_unsubscribed`` (reading the row only when someone listens)."""
    if signals.subscriber_unsubscribed.has_listeners(Subscriber):
        subscriber = Subscriber.objects.get(pk=subscriber_id)
        signals.send_robustly(
            signals.subscriber_unsubscribed, sender=Subscriber, subscriber=subscriber
        )
