"""Articles, the free reports they offer, subscribers and their deliveries (the outbox)."""

from __future__ import annotations

from typing import TypedDict

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from .config.validators import CONSENT_VERSION_COLUMN_LENGTH, MESSAGE_ID_MAX_LENGTH

DEFAULT_REPORT_TEMPLATE = "backpain_report/report/report.html"


class Report(models.Model):
    """The free report: a PDF built from ``body`` (Markdown) through ``template_name``."""

    title = models.CharField(_("title"), max_length=200)
    subtitle = models.CharField(_("subtitle"), max_length=300, blank=True)
    slug = models.SlugField(_("slug"), max_length=200, unique=True)
    edition = models.PositiveIntegerField(
        _("edition"), default=1, help_text=_("Bumped whenever the content changes.")
    )
    author = models.CharField(_("author"), max_length=200, blank=True)
    body = models.TextField(_("body (Markdown)"))
    template_name = models.CharField(_("template"), max_length=200, default=DEFAULT_REPORT_TEMPLATE)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    # The follow-up sequence (FollowUpStep) goes out only while this is on: off by default, so
    # no site starts mailing readers without deciding to.
    followups_enabled = models.BooleanField(
        _("send the follow-up sequence"),
        default=False,
        db_default=False,
        help_text=_(
            "Readers who agreed to follow-ups get the active steps below, on schedule. "
            "The sign-up form's consent text names the follow-ups while this is on."
        ),
    )

    class Meta:
        ordering = ["title"]
        verbose_name = _("report")
        verbose_name_plural = _("reports")

    def __str__(self) -> str:
        return f"{self.title} (edition {self.edition})"


class FollowUpStep(models.Model):
    """One email of a report's follow-up sequence: sent ``delay_days`` whole days after the
    report was sent, at ``FOLLOWUP_SEND_HOUR`` local time (see
    :mod:`backpain_report.services.followups`), to readers whose consent named follow-ups.

    ``scheduled_through`` is the scheduler's cursor: report deliveries sent before it were
    considered. Switching a step off (``is_active``) pauses it.
    """

    report = models.ForeignKey(
        Report,
        verbose_name=_("report"),
        related_name="followup_steps",
        on_delete=models.CASCADE,
    )
    language = models.CharField(
        _("language"),
        max_length=16,
        blank=True,
        help_text=_("The readers' language this step is for; blank: every language."),
    )
    position = models.PositiveSmallIntegerField(_("position"), default=1)
    delay_days = models.PositiveSmallIntegerField(
        _("delay (days)"),
        default=2,
        validators=[MinValueValidator(1)],
        help_text=_("Whole days after the report was sent."),
    )
    subject = models.CharField(_("subject"), max_length=200)
    body = models.TextField(_("body (Markdown)"))
    is_active = models.BooleanField(_("active"), default=True)
    paused_at = models.DateTimeField(_("paused"), null=True, blank=True)
    edition = models.PositiveIntegerField(
        _("edition"), default=1, help_text=_("Bumped when a text that already went out changes.")
    )
    scheduled_through = models.DateTimeField(_("scheduled through"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["report", "language", "position"]
        verbose_name = _("follow-up step")
        verbose_name_plural = _("follow-up steps")

    def __str__(self) -> str:
        return f"{self.subject} (day {self.delay_days})"


class FollowUpEdition(models.Model):
    """The text of a follow-up step's earlier edition, as its readers got it."""

    step = models.ForeignKey(
        FollowUpStep,
        verbose_name=_("follow-up step"),
        related_name="editions",
        on_delete=models.CASCADE,
    )
    edition = models.PositiveIntegerField(_("edition"))
    subject = models.CharField(_("subject"), max_length=200)
    body = models.TextField(_("body (Markdown)"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["step", "-edition"]
        verbose_name = _("follow-up edition")
        verbose_name_plural = _("follow-up editions")
        constraints = [
            models.UniqueConstraint(
                fields=["step", "edition"], name="backpain_followup_edition_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} (edition {self.edition})"


class ArticleQuerySet(models.QuerySet):
    def published(self) -> ArticleQuerySet:
        return self.filter(status=Article.Status.PUBLISHED)


class Article(models.Model):
    """A published article; its call to action offers ``report``."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        PUBLISHED = "published", _("Published")

    title = models.CharField(_("title"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=200, unique=True)
    byline = models.CharField(_("byline"), max_length=200, blank=True)
    original_publication_date = models.DateField(_("originally published"), null=True, blank=True)
    summary = models.CharField(
        _("summary"), max_length=300, blank=True, help_text=_("Used as the meta description.")
    )
    body = models.TextField(_("body (Markdown)"))
    call_to_action = models.CharField(_("call to action"), max_length=300, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    report = models.ForeignKey(
        Report,
        verbose_name=_("report offered"),
        related_name="articles",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    published_at = models.DateTimeField(_("published"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = ArticleQuerySet.as_manager()

    class Meta:
        ordering = ["-published_at", "title"]
        verbose_name = _("article")
        verbose_name_plural = _("articles")

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("backpain_report:article_detail", kwargs={"slug": self.slug})


class _Empty(TypedDict):
    default: str
    db_default: str


# Blank in the database too: rows written without these columns (bulk loads, code of the
# previous release during a rolling deploy) get "".
_EMPTY: _Empty = {"default": "", "db_default": ""}


class SignupSource(models.Model):
    """Where a sign-up came from (see :mod:`backpain_report.page.sources`): the article page's
    ``utm_*`` parameters and the referring host, kept with the consent record."""

    utm_source = models.CharField(_("UTM source"), max_length=100, blank=True, **_EMPTY)
    utm_medium = models.CharField(_("UTM medium"), max_length=100, blank=True, **_EMPTY)
    utm_campaign = models.CharField(_("UTM campaign"), max_length=100, blank=True, **_EMPTY)
    referrer_host = models.CharField(_("referring host"), max_length=253, blank=True, **_EMPTY)

    class Meta:
        abstract = True


class Subscriber(SignupSource):
    """A reader who asked for a report, with the record of their consent."""

    email = models.EmailField(_("email as entered"), max_length=320)
    email_canonical = models.CharField(_("canonical email"), max_length=320, unique=True)
    name = models.CharField(_("name"), max_length=100)
    source_article = models.ForeignKey(
        Article,
        verbose_name=_("source article"),
        related_name="subscribers",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
    )
    source_url = models.URLField(_("source page"), max_length=500, blank=True)
    consent_text = models.TextField(_("consent text shown"), blank=True)
    consent_version = models.CharField(
        _("consent version"), max_length=CONSENT_VERSION_COLUMN_LENGTH, blank=True
    )
    consented_at = models.DateTimeField(_("consented"), null=True, blank=True)
    consent_ip = models.CharField(_("IP address or its hash"), max_length=128, blank=True)
    consent_user_agent = models.CharField(_("user agent"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("signed up"), auto_now_add=True, db_index=True)
    confirmed_at = models.DateTimeField(_("confirmed"), null=True, blank=True)
    # When a confirmation was last asked for (double opt-in): stale requests are purged by age
    # from here, so a reader who signed up afresh yesterday is kept.
    confirmation_requested_at = models.DateTimeField(
        _("confirmation requested"), null=True, blank=True
    )
    # When the worker recorded the current consent, by the worker's own clock: the deliveries
    # made for this consent are those made since (``consented_at`` is the web request's clock).
    consent_recorded_at = models.DateTimeField(_("consent recorded"), null=True, blank=True)
    # When the latest sign-up of the address was given (the web request's clock): a sign-up
    # given earlier but processed later (a delayed message) changes neither name nor language.
    latest_signup_at = models.DateTimeField(_("latest sign-up"), null=True, blank=True)
    unsubscribed_at = models.DateTimeField(_("unsubscribed"), null=True, blank=True)
    # Set by a hard bounce, a complaint or a reject (or enough soft bounces) reported by the
    # site's email service: nothing is sent to the address until staff lift it (suppression.py).
    suppressed_at = models.DateTimeField(_("suppressed"), null=True, blank=True)
    # A database default too, so rows written by raw INSERT or COPY (the dev tool
    # benchmarks/devtools/populate.py) need no value.
    suppressed_reason = models.CharField(
        _("why suppressed"), max_length=300, blank=True, default="", db_default=""
    )
    suppression_lifted_at = models.DateTimeField(_("suppression lifted"), null=True, blank=True)
    # The language the reader signed up in (a code from LANGUAGES): the emails and the report's
    # fixed texts are in it. Blank: the site's LANGUAGE_CODE.
    language = models.CharField(_("language"), max_length=16, blank=True)
    # The consent given named the follow-up sequence (FOLLOWUP_CONSENT_TEXT): without it the
    # reader gets the report and nothing more.
    followups_consented = models.BooleanField(
        _("agreed to follow-ups"), default=False, db_default=False
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("subscriber")
        verbose_name_plural = _("subscribers")
        permissions = [("export_subscriber", _("Can export subscribers (CSV)"))]
        indexes = [
            # The admin's list order (-created_at, -id) and its state filters, at 1M rows.
            models.Index(fields=["created_at", "id"], name="backpain_sub_list"),
            models.Index(fields=["confirmed_at"], name="backpain_sub_confirmed"),
            models.Index(fields=["unsubscribed_at"], name="backpain_sub_unsubscribed"),
            models.Index(fields=["suppressed_at"], name="backpain_sub_suppressed"),
            # The funnel joins deliveries to their reader's article: an index-only scan.
            models.Index(fields=["source_article", "id"], name="backpain_sub_article"),
            # The purge of confirmation requests never answered.
            models.Index(
                fields=["confirmation_requested_at"],
                name="backpain_sub_unconfirmed",
                condition=Q(confirmed_at__isnull=True, confirmation_requested_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def writing_language(self) -> str:
        """The language this reader's emails and report are written in: the one they signed up
        in (or its variant in ``LANGUAGES``), else the site's ``LANGUAGE_CODE``, also when the
        site no longer lists the stored one."""
        try:
            return translation.get_supported_language_variant(self.language or "")
        except LookupError:
            return settings.LANGUAGE_CODE

    @property
    def is_subscribed(self) -> bool:
        return self.unsubscribed_at is None

    @property
    def is_suppressed(self) -> bool:
        return self.suppressed_at is not None


class Delivery(models.Model):
    """One report edition on its way to one subscriber: the outbox row.

    The row is the source of truth; a broker message only says "look at row N".
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    class Reason(models.TextChoices):
        SIGNUP = "signup", _("Sign-up")
        RESEND = "resend", _("Resend")
        SIGNUP_AGAIN = "signup_again", _("Signed up again")

    class Kind(models.TextChoices):
        REPORT = "report", _("Report")
        CONFIRMATION = "confirmation", _("Confirmation request")
        FOLLOWUP = "followup", _("Follow-up")

    subscriber = models.ForeignKey(
        Subscriber,
        verbose_name=_("subscriber"),
        related_name="deliveries",
        on_delete=models.CASCADE,
    )
    report = models.ForeignKey(
        Report, verbose_name=_("report"), related_name="deliveries", on_delete=models.PROTECT
    )
    edition = models.PositiveIntegerField(_("edition"))
    # The follow-up step this row sends (kind "followup"); a step that went out is kept.
    step = models.ForeignKey(
        FollowUpStep,
        verbose_name=_("follow-up step"),
        related_name="deliveries",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
    )
    reason = models.CharField(
        _("reason"), max_length=12, choices=Reason.choices, default=Reason.SIGNUP
    )
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices, default=Kind.REPORT)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    enqueued_at = models.DateTimeField(_("last enqueued"), null=True, blank=True)
    publish_failed_at = models.DateTimeField(_("publish failed"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=MESSAGE_ID_MAX_LENGTH, blank=True)
    downloaded_at = models.DateTimeField(_("first downloaded"), null=True, blank=True)
    link_version = models.PositiveIntegerField(
        _("download link version"), default=1, help_text=_("Bumped to revoke download links.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["subscriber", "report", "edition"],
                condition=Q(reason="signup", kind="report"),
                name="backpain_report_one_signup_delivery_per_edition",
            ),
            # Never doubled by two schedulers (two beat hosts, an overlapping window).
            models.UniqueConstraint(
                fields=["subscriber", "step"],
                condition=Q(kind="followup"),
                name="backpain_report_one_followup_per_step",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="backpain_delivery_due"),
            # The admin's list order, its status filter, the subscriber's last delivery and
            # the funnel's "delivered" and "downloaded" days, at 1M rows.
            models.Index(fields=["created_at", "id"], name="backpain_delivery_list"),
            models.Index(fields=["status", "created_at"], name="backpain_delivery_status"),
            models.Index(fields=["subscriber", "created_at"], name="backpain_delivery_last"),
            models.Index(fields=["sent_at"], name="backpain_delivery_sent"),
            models.Index(fields=["downloaded_at"], name="backpain_delivery_downloaded"),
            # The follow-up scheduler's window: reports sent in a range of days.
            models.Index(
                fields=["sent_at"],
                name="backpain_delivery_report_sent",
                condition=Q(kind="report", status="sent"),
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery #{self.pk} ({self.get_status_display()})"


class PendingSignup(SignupSource):
    """A submitted sign-up waiting for a worker: the sign-up's inbox row.

    The web request only validates the form, inserts one of these and publishes one message, the
    same work whatever the address: whether it is new, known, confirmed, unsubscribed or
    throttled is decided by the worker
    (:func:`backpain_report.services.subscribers.signup_process`), which then deletes the row.
    The sweep re-publishes rows whose message was lost.
    """

    email = models.EmailField(_("email as entered"), max_length=320)
    email_canonical = models.CharField(_("canonical email"), max_length=320, db_index=True)
    name = models.CharField(_("name"), max_length=100)
    article = models.ForeignKey(
        Article, verbose_name=_("article"), on_delete=models.SET_NULL, null=True, blank=True
    )
    source_url = models.URLField(_("source page"), max_length=500, blank=True)
    consent_text = models.TextField(_("consent text shown"))
    consent_version = models.CharField(
        _("consent version"), max_length=CONSENT_VERSION_COLUMN_LENGTH
    )
    consented_at = models.DateTimeField(_("consented"))
    consent_ip = models.CharField(_("IP address or its hash"), max_length=128, blank=True)
    consent_user_agent = models.CharField(_("user agent"), max_length=500, blank=True)
    language = models.CharField(_("language"), max_length=16, blank=True)
    followups_consented = models.BooleanField(
        _("agreed to follow-ups"), default=False, db_default=False
    )
    enqueued_at = models.DateTimeField(_("last enqueued"), null=True, blank=True)
    publish_failed_at = models.DateTimeField(_("publish failed"), null=True, blank=True)
    created_at = models.DateTimeField(_("submitted"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name = _("pending sign-up")
        verbose_name_plural = _("pending sign-ups")

    def __str__(self) -> str:
        return f"Pending sign-up #{self.pk}"


class PageView(models.Model):
    """How many times an article was viewed on one day: a counter, no cookies, no visitor data.

    One row per (article, day), incremented in the database; bots are not counted (see
    :func:`backpain_report.stats.page_view_record`). The admin shows these rows as the funnel.
    """

    article = models.ForeignKey(
        Article, verbose_name=_("article"), related_name="page_views", on_delete=models.CASCADE
    )
    day = models.DateField(_("day"))
    views = models.PositiveIntegerField(_("views"), default=0)

    class Meta:
        ordering = ["-day"]
        verbose_name = _("daily page views")
        verbose_name_plural = _("funnel")
        constraints = [
            models.UniqueConstraint(fields=["article", "day"], name="backpain_pageview_day")
        ]
        indexes = [models.Index(fields=["day"], name="backpain_pageview_by_day")]

    def __str__(self) -> str:
        return f"{self.article_id} {self.day}: {self.views}"


class SourceView(SignupSource):
    """How many views of an article on one day came from one source (the page's ``utm_*`` and
    referring host, as its beacon reported them): a counter, nothing about the visitor.

    Written by :func:`backpain_report.stats.page_views_flush` together with :class:`PageView`
    (the same views, not split); the funnel's per-source table reads it.
    """

    article = models.ForeignKey(
        Article, verbose_name=_("article"), related_name="source_views", on_delete=models.CASCADE
    )
    day = models.DateField(_("day"))
    #: A digest of the four source fields: the unique key (the fields are too long to index).
    source_key = models.CharField(_("source key"), max_length=32)
    views = models.PositiveIntegerField(_("views"), default=0)

    class Meta:
        ordering = ["-day"]
        verbose_name = _("page views per source")
        verbose_name_plural = _("page views per source")
        constraints = [
            models.UniqueConstraint(
                fields=["article", "day", "source_key"], name="backpain_sourceview_day"
            )
        ]
        indexes = [models.Index(fields=["day"], name="backpain_sourceview_by_day")]

    def __str__(self) -> str:
        return f"{self.article_id} {self.day} {self.source_key}: {self.views}"


class MailEvent(models.Model):
    """A bounce, complaint or reject the site's email service reported for a subscriber.

    Written by :func:`backpain_report.rights.suppression.mail_event_record` from anymail's tracking
    webhooks; ``(esp, event_id)`` is unique, so a replayed webhook records (and counts) nothing
    twice. Soft bounces are counted from these rows against ``SOFT_BOUNCE_LIMIT``.
    """

    class Kind(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", _("Hard bounce")
        SOFT_BOUNCE = "soft_bounce", _("Soft bounce")
        COMPLAINT = "complaint", _("Complaint")
        REJECTED = "rejected", _("Rejected by the email service")

    subscriber = models.ForeignKey(
        Subscriber,
        verbose_name=_("subscriber"),
        related_name="mail_events",
        on_delete=models.CASCADE,
    )
    delivery = models.ForeignKey(
        Delivery,
        verbose_name=_("delivery"),
        related_name="mail_events",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
    )
    esp = models.CharField(_("email service"), max_length=40)
    event_id = models.CharField(_("event id"), max_length=255)
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    occurred_at = models.DateTimeField(_("occurred"))
    description = models.CharField(_("description"), max_length=300, blank=True)
    received_at = models.DateTimeField(_("received"), auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        verbose_name = _("bounce or complaint")
        verbose_name_plural = _("bounces and complaints")
        constraints = [
            models.UniqueConstraint(fields=["esp", "event_id"], name="backpain_mailevent_once")
        ]
        indexes = [
            models.Index(
                fields=["subscriber", "kind", "occurred_at"], name="backpain_mailevent_count"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.esp})"


class WebhookEndpoint(models.Model):
    """A URL that receives the events it asked for, signed per the Standard Webhooks spec.

    The secret (``whsec_`` and base64) is made by the app and shown once
    (:mod:`backpain_report.webhooks.endpoints`); ``article`` limits the events to the readers
    who signed up on it.
    """

    name = models.CharField(_("name"), max_length=100, help_text=_("For you, e.g. “Our CRM”."))
    url = models.URLField(_("URL"), max_length=2000)
    secret = models.CharField(_("signing secret"), max_length=100, editable=False)
    # The event types it wants, separated by spaces (a JSON list would need the JSON1
    # extension on SQLite just to run the system checks).
    event_types = models.CharField(_("events"), max_length=300, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    article = models.ForeignKey(
        Article,
        verbose_name=_("only for the readers of"),
        related_name="webhook_endpoints",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
    )
    secret_rotated_at = models.DateTimeField(_("secret made"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")

    def __str__(self) -> str:
        return self.name

    def wants(self, event_type: str) -> bool:
        """Whether the endpoint asked for ``event_type``."""
        return event_type in self.event_types.split()


class WebhookEvent(models.Model):
    """One event on its way to one endpoint: the webhook outbox row.

    Written in the transaction that makes the change it reports (so it exists exactly when the
    change committed), then sent with the same claim, lease, retry and sweep rules as a
    :class:`Delivery`. ``webhook_id`` is the ``webhook-id`` header: the same on every attempt,
    so a receiver deduplicates on it. ``body`` is the JSON sent, kept byte for byte.
    """

    Status = Delivery.Status

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        verbose_name=_("endpoint"),
        related_name="events",
        on_delete=models.CASCADE,
    )
    event_type = models.CharField(_("event"), max_length=40)
    webhook_id = models.CharField(_("webhook id"), max_length=40, unique=True)
    body = models.TextField(_("body (JSON)"))
    # The subscriber the event is about (a plain id: the event outlives a deleted subscriber).
    subscriber_ref = models.BigIntegerField(_("subscriber id"), null=True, blank=True)
    personal = models.BooleanField(_("carries personal data"), default=True)
    occurred_at = models.DateTimeField(_("occurred"))
    status = models.CharField(
        _("status"), max_length=10, choices=Delivery.Status.choices, default=Delivery.Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    enqueued_at = models.DateTimeField(_("last enqueued"), null=True, blank=True)
    publish_failed_at = models.DateTimeField(_("publish failed"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_status_code = models.PositiveIntegerField(_("last HTTP status"), null=True, blank=True)
    sent_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="backpain_webhook_due"),
            models.Index(fields=["endpoint", "status"], name="backpain_webhook_backlog"),
            models.Index(fields=["subscriber_ref"], name="backpain_webhook_subscriber"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.webhook_id}"
