"""Webhook endpoints: the list with each endpoint's last success, last failure and backlog;
the signing secret shown once (on creation and on rotation, never again); a test event;
retrying failed events. Every button and action needs ``change_webhookendpoint``; a member of
staff who may only view never sees a secret. The events are :mod:`.webhook_events`'.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from ..conf import checked
from ..models import WebhookEndpoint, WebhookEvent
from ..services import webhooks
from ..webhooks.endpoints import url_problem
from ..webhooks.events import SUBSCRIBABLE, EventType
from .common import date_cell
from .webhook_events import BACKLOG, events_retry_report

Status = WebhookEvent.Status
SECRET_TEMPLATE = "admin/backpain_report/webhookendpoint/secret.html"


class WebhookEndpointForm(forms.ModelForm):
    """The events as checkboxes (stored space-separated) and the URL checked as the sender
    checks it."""

    url = forms.URLField(
        label=_("URL"),
        max_length=2000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"class": "backpain-wide"}),
    )
    event_types = forms.MultipleChoiceField(
        label=capfirst(_("events")),
        choices=[(choice.value, choice.label) for choice in SUBSCRIBABLE],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": _("Choose at least one event.")},
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "event_types", "is_active", "article"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["event_types"] = self.instance.event_types.split()
        if "article" in self.fields:  # not for staff who may only view
            self.fields["article"].help_text = _("Empty: the readers of every article.")
        if "event_types" in self.fields:
            # Each event's description, then its code as the list and the payload name it.
            self.fields["event_types"].choices = [  # type: ignore[attr-defined]
                (choice.value, format_html("{} <code>{}</code>", choice.label, choice.value))
                for choice in SUBSCRIBABLE
            ]

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        problem = url_problem(url)
        if problem:
            raise ValidationError(_("The URL %(problem)s"), params={"problem": problem})
        return url

    def clean_event_types(self) -> str:
        chosen = set(self.cleaned_data["event_types"])
        return " ".join(choice.value for choice in SUBSCRIBABLE if choice.value in chosen)


def endpoint_events_url(endpoint_id: int, *statuses: str) -> str:
    """The event list filtered to one endpoint (and ``statuses``)."""
    url = reverse("admin:backpain_report_webhookevent_changelist")
    url += f"?endpoint__id__exact={endpoint_id}"
    return url + (f"&status__in={','.join(statuses)}" if statuses else "")


def _latest(field: str, condition: Q) -> Subquery:
    return Subquery(
        WebhookEvent.objects.filter(condition, endpoint=OuterRef("pk"))
        .order_by(f"-{field}")
        .values(field)[:1]
    )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    # The URL sits under the name, the article under the events; no filter sidebar (a site has
    # a handful of endpoints), so the six columns fit a 1280 px screen with the menu open.
    list_display = [
        "endpoint_cell", "events_cell", "is_active", "last_success", "last_failure", "backlog",
    ]  # fmt: skip
    list_display_links = ["endpoint_cell"]
    search_fields = ["name", "url"]
    list_select_related = ["article"]
    readonly_fields = ["secret_made", "events_wanted", "created_at", "updated_at"]
    actions = ["send_test_event", "retry_failed"]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list, with a warning when events wait for a first attempt for long: the site's
        worker probably does not consume ``WEBHOOK_QUEUE``."""
        untouched = webhooks.webhook_events_untouched()
        if untouched and request.method == "GET":
            queue = checked("WEBHOOK_QUEUE") or "celery"
            messages.warning(
                request,
                ngettext(
                    "%(count)d event has waited over 10 minutes without a first attempt: does a "
                    "Celery worker consume the queue “%(queue)s” (celery worker -Q …)?",
                    "%(count)d events have waited over 10 minutes without a first attempt: does "
                    "a Celery worker consume the queue “%(queue)s” (celery worker -Q …)?",
                    untouched,
                )
                % {"count": untouched, "queue": queue},
            )
        return super().changelist_view(request, extra_context)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """No filter on the secret from the query string (the admin allows any field's):
        ``?secret__startswith=…`` would tell who may only view the secret a character at a
        time (a 400 instead)."""
        if lookup.split("__")[0] == "secret":
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_fieldsets(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        events = "event_types"
        if obj is not None and not self.has_change_permission(request, obj):
            events = "events_wanted"  # staff who may only view: the descriptions, not the codes
        where = [(None, {"fields": ["name", "url", events, "is_active", "article"]})]
        if obj is None:
            note = _(
                "The signing secret is made when you save, and shown once: copy it into the "
                "receiver then."
            )
            return [(None, {**where[0][1], "description": note})]
        secret = {
            "fields": ["secret_made"],
            "description": _(
                "The signing secret was shown once, when it was made. Lost it? Rotate it "
                "(button above): the old one stops working at once."
            ),
        }
        record = {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}
        return [*where, (_("Signing secret"), secret), (_("Record"), record)]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        """Each endpoint's last success, last failed attempt and backlog, in the list's one
        query (each a subquery on the events' (endpoint, status) index)."""
        failed = Q(status__in=[Status.FAILED, *BACKLOG]) & ~Q(last_error="")
        backlog = (
            WebhookEvent.objects.filter(endpoint=OuterRef("pk"), status__in=BACKLOG)
            .order_by()
            .values("endpoint")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_sent_at=_latest("sent_at", Q(status=Status.SENT)),
                last_failed_at=_latest("updated_at", failed),
                backlog_count=Coalesce(Subquery(backlog), 0),
            )
        )

    @admin.display(description=_("endpoint"), ordering="name")
    def endpoint_cell(self, obj: WebhookEndpoint) -> SafeString:
        """The name, and the URL under it (cut with "…", whole in its tooltip)."""
        return format_html(
            '{}<span class="backpain-quiet backpain-url" title="{}">{}</span>',
            obj.name,
            obj.url,
            obj.url.removeprefix("https://"),
        )

    @admin.display(description=_("events"))
    def events_cell(self, obj: WebhookEndpoint) -> SafeString:
        """The event codes (their description in the tooltip), and the article it is limited
        to under them."""
        wanted = obj.event_types.split()
        labels = dict(EventType.choices)
        if set(wanted) >= {choice.value for choice in SUBSCRIBABLE}:
            codes = format_html("<span>{}</span>", _("All events"))
        else:
            codes = event_codes(wanted, labels) if wanted else SafeString("—")
        only = (
            format_html(
                '<span class="backpain-quiet">{}</span>',
                _("only for the readers of “%(title)s”") % {"title": obj.article.title},
            )
            if obj.article_id and obj.article
            else ""
        )
        return format_html('<span class="backpain-events">{}</span>{}', codes, only)

    @admin.display(description=_("events"))
    def events_wanted(self, obj: WebhookEndpoint) -> SafeString | str:
        labels = dict(EventType.choices)
        wanted = obj.event_types.split()
        items = format_html_join(
            "", "<li>{} <code>{}</code></li>", ((labels.get(c, c), c) for c in wanted)
        )
        return format_html('<ul class="backpain-wanted">{}</ul>', items) if wanted else "—"

    @admin.display(description=_("last success"))
    def last_success(self, obj: WebhookEndpoint) -> SafeString | str:
        return date_cell(getattr(obj, "last_sent_at", None), with_time=True)

    @admin.display(description=_("last failure"))
    def last_failure(self, obj: WebhookEndpoint) -> SafeString | str:
        when = getattr(obj, "last_failed_at", None)
        if when is None:
            return "—"
        return format_html(
            '<a class="backpain-error" href="{}">{}</a>',
            endpoint_events_url(obj.pk, Status.FAILED, *BACKLOG),
            date_cell(when, with_time=True),
        )

    @admin.display(description=_("backlog"), ordering="backlog_count")
    def backlog(self, obj: WebhookEndpoint) -> SafeString | str:
        count = getattr(obj, "backlog_count", 0)
        if not count:
            return "0"
        return format_html('<a href="{}">{}</a>', endpoint_events_url(obj.pk, *BACKLOG), count)

    @admin.display(description=_("secret made"))
    def secret_made(self, obj: WebhookEndpoint) -> SafeString | str:
        return date_cell(obj.secret_rotated_at or obj.created_at, "j M Y, H:i")

    # ---- Saving: a new endpoint's secret, shown once --------------------------------------

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: forms.ModelForm, change: bool
    ) -> None:
        webhooks.webhook_endpoint_save(obj)

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The secret, once, instead of the usual redirect (it goes in no message or cookie)."""
        return self.secret_response(
            request, obj, _("The endpoint “%(name)s” was added.") % {"name": obj.name}
        )

    def secret_response(
        self, request: HttpRequest, endpoint: WebhookEndpoint, headline: str
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Copy the signing secret now"),
            "headline": headline,
            "endpoint": endpoint,
            "secret": endpoint.secret,
        }
        response = TemplateResponse(request, SECRET_TEMPLATE, context)
        response["Cache-Control"] = "private, no-store"
        return response

    # ---- Buttons on the endpoint's page ---------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:object_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="backpain_report_webhookendpoint_rotate_secret",
            ),
            path(
                "<int:object_id>/send-test/",
                self.admin_site.admin_view(require_POST(self.send_test_view)),
                name="backpain_report_webhookendpoint_send_test",
            ),
        ]
        return [*own, *super().get_urls()]

    def _changeable(self, request: HttpRequest, object_id: int) -> WebhookEndpoint:
        endpoint = get_object_or_404(WebhookEndpoint, pk=object_id)
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        return endpoint

    def rotate_secret_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """GET: what rotating does, and a button; POST: a new secret, shown once."""
        endpoint = self._changeable(request, object_id)
        if request.method != "POST":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Rotate the signing secret"),
                "endpoint": endpoint,
            }
            return TemplateResponse(
                request, "admin/backpain_report/webhookendpoint/rotate_secret.html", context
            )
        webhooks.endpoint_secret_rotate(endpoint)
        self.log_change(request, endpoint, [{"changed": {"fields": ["signing secret"]}}])
        return self.secret_response(
            request,
            endpoint,
            _("“%(name)s” has a new signing secret; the old one no longer works.")
            % {"name": endpoint.name},
        )

    def send_test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        endpoint = self._changeable(request, object_id)
        self._send_test(request, [endpoint])
        return HttpResponseRedirect(
            reverse("admin:backpain_report_webhookendpoint_change", args=[endpoint.pk])
        )

    def _send_test(self, request: HttpRequest, endpoints: list[WebhookEndpoint]) -> None:
        for endpoint in endpoints:
            webhooks.test_event_record(endpoint)
            self.message_user(
                request,
                format_html(
                    '{} <a href="{}">{}</a>',
                    _("A test event for “%(name)s” is queued.") % {"name": endpoint.name},
                    endpoint_events_url(endpoint.pk),
                    _("See how it went in its events."),
                ),
                messages.SUCCESS,
            )

    # ---- Actions on the list ---------------------------------------------------------------

    @admin.action(
        description=_("Send a test event to the selected endpoints"), permissions=["change"]
    )
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        self._send_test(request, list(queryset))

    @admin.action(
        description=_("Retry the failed events of the selected endpoints"), permissions=["change"]
    )
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        events_retry_report(self, request, WebhookEvent.objects.filter(endpoint__in=queryset))


def event_codes(wanted: list[str], labels: dict[str, Any]) -> SafeString:
    """The event codes, one a line, each with its description in the tooltip."""
    return SafeString(
        "".join(
            format_html('<span title="{}">{}</span>', labels.get(code, code), code)
            for code in wanted
        )
    )


__all__ = ["WebhookEndpointAdmin", "WebhookEndpointForm", "endpoint_events_url"]
