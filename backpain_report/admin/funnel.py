"""The funnel dashboard: page views to downloads, per article and per day, with a chart.

It is the admin page of :class:`~backpain_report.models.PageView` (shown as "Funnel" in the
admin index), so the ordinary ``view_pageview`` permission decides who sees it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from .. import stats
from ..models import Article, PageView
from .chart import line_chart_svg

MAX_DAYS = 366
ISO_DATE = {"type": "date"}

STEP_LABELS = {
    "views": _("Page views"),
    "signups": _("Sign-ups"),
    "confirmations": _("Confirmations"),
    "delivered": _("Reports delivered"),
    "downloads": _("Downloads"),
    "unsubscribes": _("Unsubscribes"),
}
RATE_LABELS = {
    "signup_rate": _("Sign-up / view"),
    "confirm_rate": _("Confirmed / sign-up"),
    "delivery_rate": _("Delivered / sign-up"),
    "download_rate": _("Downloaded / delivered"),
    "unsubscribe_rate": _("Unsubscribed / delivered"),
}


class FunnelForm(forms.Form):
    # <input type="date"> takes ISO dates only, whatever the site's locale.
    start = forms.DateField(label=_("From"), widget=forms.DateInput(ISO_DATE, format="%Y-%m-%d"))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(ISO_DATE, format="%Y-%m-%d"))
    article = forms.ModelChoiceField(
        Article.objects.all(), required=False, empty_label=_("All articles"), label=_("Article")
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError(_("The end comes before the start."))
            if (end - start).days >= MAX_DAYS:
                raise forms.ValidationError(_("Choose at most %(days)d days.") % {"days": MAX_DAYS})
        return data


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _cells(row: stats.FunnelRow) -> dict[str, Any]:
    return {
        "label": row.label,
        "counts": [row.counts[step] for step in stats.STEPS],
        "rates": [_percent(row.rates[name]) for name in RATE_LABELS],
    }


def funnel_context(funnel: stats.Funnel) -> dict[str, Any]:
    """What the template shows: tables of counts and rates, and two charts."""
    labels = [day.key.strftime("%d %b") for day in funnel.days]

    def series(*steps: str) -> list[tuple[str, list[int]]]:
        return [(str(STEP_LABELS[s]), [day.counts[s] for day in funnel.days]) for s in steps]

    return {
        "step_labels": [STEP_LABELS[step] for step in stats.STEPS],
        "rate_labels": list(RATE_LABELS.values()),
        "total": _cells(funnel.total),
        "articles": [_cells(row) for row in funnel.articles],
        "sources": [_cells(row) for row in funnel.sources],
        "days": [_cells(row) for row in reversed(funnel.days)],
        "chart_top": line_chart_svg(
            labels=labels,
            series=series("views", "signups"),
            title=str(_("Page views and sign-ups per day")),
        ),
        "chart_after": line_chart_svg(
            labels=labels,
            series=series("signups", "confirmations", "delivered", "downloads", "unsubscribes"),
            title=str(_("After the sign-up, per day")),
        ),
    }


@admin.register(PageView)
class FunnelAdmin(admin.ModelAdmin):
    """The dashboard replaces the list; page-view rows are written by the article page only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        start, end = stats.default_range()
        form = FunnelForm(request.GET or None, initial={"start": start, "end": end})
        article: Article | None = None
        if form.is_bound and form.is_valid():
            start, end = form.cleaned_data["start"], form.cleaned_data["end"]
            article = form.cleaned_data["article"]
        stats.page_views_flush()  # show the views counted in the cache up to now
        funnel = stats.funnel(start=start, end=end, article_id=article.pk if article else None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Funnel"),
            "subtitle": article.title if article else _("All articles"),
            "form": form,
            "start": start,
            "end": end,
            "span": (end - start).days + 1,
            **funnel_context(funnel),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/backpain_report/funnel.html", context)


__all__ = ["FunnelAdmin", "FunnelForm", "funnel_context"]
