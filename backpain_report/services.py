"""Writes: sign-ups, resends and the bundled content. Plain keyword-only functions, no HTTP."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import seed, signals
from .addresses import canonical_email
from .conf import app_settings
from .models import Article, Delivery, Report, Subscriber
from .publishing import publish_on_commit

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


def _consent_fields(*, ip: str | None, user_agent: str, source_url: str) -> dict:
    return {
        "consent_text": app_settings.CONSENT_TEXT,
        "consent_version": str(app_settings.CONSENT_VERSION),
        "consented_at": timezone.now(),
        "consent_ip": consent_ip(ip),
        "consent_user_agent": user_agent[:500],
        "source_url": source_url[:500],
    }


def _confirmation_for_signup(subscriber: Subscriber, report: Report) -> Delivery:
    """A confirmation email, unless one is already on its way."""
    waiting = subscriber.deliveries.filter(
        kind=Delivery.Kind.CONFIRMATION,
        status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING],
    ).first()
    if waiting is not None:
        return waiting
    delivery = Delivery.objects.create(
        subscriber=subscriber,
        report=report,
        edition=report.edition,
        kind=Delivery.Kind.CONFIRMATION,
    )
    publish_on_commit(delivery.pk)
    return delivery


def _delivery_for_signup(subscriber: Subscriber, report: Report) -> Delivery | None:
    """The sign-up delivery of the current edition, created (and published on commit) once."""
    lookup = {
        "subscriber": subscriber,
        "report": report,
        "edition": report.edition,
        "reason": Delivery.Reason.SIGNUP,
        "kind": Delivery.Kind.REPORT,
    }
    try:
        with transaction.atomic():
            delivery, created = Delivery.objects.get_or_create(**lookup)
    except IntegrityError:
        return Delivery.objects.get(**lookup)
    if created:
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
) -> SignupResult:
    """Record a sign-up and queue the report; a known address makes no second subscriber.

    A known, subscribed address gets no new email for an edition it already has; an address
    that had unsubscribed is re-subscribed with fresh consent.
    """
    canonical = canonical_email(email)
    consent = _consent_fields(ip=ip, user_agent=user_agent, source_url=source_url)
    with transaction.atomic():
        subscriber, created = Subscriber.objects.get_or_create(
            email_canonical=canonical,
            defaults={"email": email, "name": name, "source_article": article, **consent},
        )
        resubscribed = False
        if not created and subscriber.unsubscribed_at is not None:
            Subscriber.objects.filter(pk=subscriber.pk).update(unsubscribed_at=None, **consent)
            subscriber.refresh_from_db()
            resubscribed = True
        delivery = None
        if article.report is None:
            pass
        elif app_settings.DOUBLE_OPT_IN and subscriber.confirmed_at is None:
            delivery = _confirmation_for_signup(subscriber, article.report)
        else:
            delivery = _delivery_for_signup(subscriber, article.report)
        if created or resubscribed:
            transaction.on_commit(
                lambda: signals.subscriber_created.send(sender=Subscriber, subscriber=subscriber)
            )
    return SignupResult(subscriber=subscriber, delivery=delivery, created=created)


def subscriber_confirm(*, subscriber: Subscriber) -> bool:
    """Record the reader's confirmation and, with double opt-in, queue the report.

    True if this call confirmed the address; False if it was already confirmed (one use).
    """
    with transaction.atomic():
        changed = Subscriber.objects.filter(
            pk=subscriber.pk, confirmed_at__isnull=True, unsubscribed_at__isnull=True
        ).update(confirmed_at=timezone.now())
        if not changed:
            return False
        subscriber.refresh_from_db()
        report = _report_for(subscriber)
        if app_settings.DOUBLE_OPT_IN and report is not None:
            _delivery_for_signup(subscriber, report)
        transaction.on_commit(
            lambda: signals.subscriber_confirmed.send(sender=Subscriber, subscriber=subscriber)
        )
    return True


def confirmation_resend(*, subscriber: Subscriber) -> Delivery | None:
    """A fresh confirmation email for an unconfirmed, subscribed reader; None otherwise."""
    if subscriber.confirmed_at is not None or not subscriber.is_subscribed:
        return None
    report = _report_for(subscriber)
    if report is None:
        return None
    with transaction.atomic():
        return _confirmation_for_signup(subscriber, report)


def delivery_resend(
    *, subscriber: Subscriber, report: Report | None = None, publish: bool = True
) -> Delivery | None:
    """Queue a fresh copy of the report for a subscriber (a staff action); None if unsubscribed.

    With ``publish=False`` the caller publishes (e.g. many deliveries in batches).
    """
    if not subscriber.is_subscribed:
        return None
    report = report or _report_for(subscriber)
    if report is None:
        return None
    with transaction.atomic():
        delivery = Delivery.objects.create(
            subscriber=subscriber,
            report=report,
            edition=report.edition,
            reason=Delivery.Reason.RESEND,
        )
        if publish:
            publish_on_commit(delivery.pk)
    return delivery


def _report_for(subscriber: Subscriber) -> Report | None:
    """The report a subscriber asked for: their source article's, else their last one's."""
    if subscriber.source_article_id and subscriber.source_article.report_id:
        return subscriber.source_article.report
    last = subscriber.deliveries.select_related("report").order_by("-created_at").first()
    if last is not None:
        return last.report
    return Report.objects.order_by("pk").first()


#: Fields whose change alters the PDF, so a new edition is due.
EDITION_FIELDS = frozenset({"title", "subtitle", "author", "body", "template_name"})


def report_save(*, report: Report, changed_fields: Iterable[str], created: bool = False) -> bool:
    """Save an edited ``report``, bumping its edition when its content changed.

    Returns True when the edition was bumped; the report's cached PDF bodies are then dropped
    (a new edition has a new cache name anyway: this only keeps the storage tidy).
    """
    bumped = not created and bool(EDITION_FIELDS.intersection(changed_fields))
    with transaction.atomic():
        if report._state.adding:
            report.save()
        else:  # every field but the edition: a stale copy would write its old number back
            fields = [
                f.name
                for f in Report._meta.concrete_fields
                if not f.primary_key and f.name != "edition"
            ]
            report.save(update_fields=fields)
        if bumped:  # in the database, so two editors at once make two editions
            Report.objects.filter(pk=report.pk).update(edition=F("edition") + 1)
        report.refresh_from_db(fields=["edition"])
    if bumped:
        from . import pdfcache  # WeasyPrint is heavy: import it only when needed

        try:
            pdfcache.invalidate(report)
        except OSError:
            logger.warning("Report %s: could not delete its cached PDFs", report.pk, exc_info=True)
    return bumped


def content_seed(*, overwrite: bool = False) -> tuple[Article, Report]:
    """Create the bundled article and report, or restore their text when ``overwrite``."""
    report_fields = seed.report_fields()
    article_fields = seed.article_fields()
    with transaction.atomic():
        report, report_created = Report.objects.get_or_create(
            slug=seed.REPORT_SLUG, defaults=report_fields
        )
        if overwrite and not report_created:
            changed = [f for f, value in report_fields.items() if getattr(report, f) != value]
            for field, value in report_fields.items():
                setattr(report, field, value)
            report_save(report=report, changed_fields=changed)
        article, article_created = Article.objects.get_or_create(
            slug=seed.ARTICLE_SLUG,
            defaults={
                **article_fields,
                "report": report,
                "status": Article.Status.PUBLISHED,
                "published_at": timezone.now(),
            },
        )
        if overwrite and not article_created:
            for field, value in article_fields.items():
                setattr(article, field, value)
            article.report = report
            article.save()
    return article, report
