"""The funnel dashboard: page views to downloads, per article and per day, with a chart.

It is the admin page of :class:`~backpain_report.models.PageView` (shown as "Funnel" in the
admin index), so the ordinary ``view_pageview`` permission decides who sees it.
"""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .. import stats
from ..conf import app_settings
from ..models import Article, PageView
from ..page import pageviews
from .chart import panel_chart_svg

MAX_DAYS = 366
ISO_DATE = {"type": "date"}

STEP_LABELS = {
    "views": _("Page views"),
    "signups": _("Sign-ups"),
    "confirmations": _("Confirmations"),
    "delivered": _("Reports delivered"),
    "downloads": _("Downloads"),
    "unsubscribes": _("Unsubscribes"),
    "suppressed": _("Suppressed (bounced or complained)"),
}
#: What each rate is "of", shown under the count it divides (the numerator's column).
RATE_LABELS = {
    "signup_rate": _("% of page views"),
    "confirm_rate": _("% of sign-ups"),
    "delivery_rate": _("% of sign-ups"),
    "download_rate": _("% of reports delivered"),
    "unsubscribe_rate": _("% of reports delivered"),
}


class FunnelForm(forms.Form):
    # <input type="date"> takes ISO dates only, whatever the site's locale.
    start = forms.DateField(label=_("From"), widget=forms.DateInput(ISO_DATE, format="%Y-%m-%d"))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(ISO_DATE, format="%Y-%m-%d"))
    article = forms.ModelChoiceField(
        Article.objects.all(), required=False, empty_label=_("All articles"), label=_("Article")
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError(_("The end comes before the start."))
            if (end - start).days >= MAX_DAYS:
                raise forms.ValidationError(_("Choose at most %(days)d days.") % {"days": MAX_DAYS})
        return data


#: What the follow-up table's rate is "of" (readers who unsubscribed after a step).
FOLLOWUP_RATE_LABEL = _("% of sent")

#: The headline figures: (step or rate, label), in the order shown.
HEADLINE = (
    ("views", _("Page views")),
    ("signups", _("Sign-ups")),
    ("signup_rate", _("Conversion")),
    ("delivered", _("Reports delivered")),
    ("downloads", _("Downloads")),
    ("unsubscribes", _("Unsubscribes")),
)
MINUS = "\u2212"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _direction(delta: float) -> str:
    return "up" if delta > 0 else "down" if delta < 0 else "same"


def count_change(current: int, previous: int) -> tuple[str, str]:
    """How ``current`` compares with ``previous``: ``("+20%", "up")``; ``("new", "up")`` when
    there was nothing before, ``("—", "same")`` when there is nothing either time."""
    if not previous:
        return ("new", "up") if current else ("—", "same")
    delta = (current - previous) / previous * 100
    sign = "+" if delta > 0 else MINUS if delta < 0 else "±"
    return f"{sign}{abs(delta):.0f}%", _direction(delta)


def rate_change(current: float | None, previous: float | None) -> tuple[str, str]:
    """The change of a rate in percentage points: ``("+1.0 pts", "up")``; ``("—", "same")``
    when either period has no rate (nothing to divide by)."""
    if current is None or previous is None:
        return "—", "same"
    delta = round((current - previous) * 100, 1)
    sign = "+" if delta > 0 else MINUS if delta < 0 else "±"
    return f"{sign}{abs(delta):.1f} pts", _direction(delta)


def headline_figures(funnel: stats.Funnel) -> list[dict[str, Any]]:
    """The period's headline figures, each with its change against :attr:`Funnel.previous`."""
    now, before = funnel.total, funnel.previous
    figures = []
    for key, label in HEADLINE:
        if key in now.counts:
            value = str(now.counts[key])
            change, direction = count_change(now.counts[key], before.counts[key])
        else:
            value = _percent(now.rates[key])
            change, direction = rate_change(now.rates[key], before.rates[key])
        figures.append({"label": label, "value": value, "change": change, "direction": direction})
    return figures


def quiet_day_ranges(days: list[stats.FunnelRow], steps: tuple[str, ...]) -> list[tuple[str, str]]:
    """The runs of consecutive days without any activity, as ``(first, last)`` ISO dates."""
    runs: list[list[str]] = []
    previous: datetime.date | None = None
    for day in days:
        if any(day.counts[s] for s in steps) or not isinstance(day.key, datetime.date):
            continue
        if runs and previous and day.key - previous == datetime.timedelta(days=1):
            runs[-1][1] = day.label
        else:
            runs.append([day.label, day.label])
        previous = day.key
    return [(first, last) for first, last in runs]


def _cells(
    row: stats.FunnelRow, steps: tuple[str, ...], rate_of: dict[str, str]
) -> list[dict[str, Any]]:
    """One ``{"count", "rate"}`` per shown step; ``rate`` is None for a step no rate ends in."""
    rates = row.rates
    return [
        {
            "count": row.counts[step],
            "rate": _percent(rates[rate_of[step]]) if step in rate_of else None,
        }
        for step in steps
    ]


def funnel_context(
    funnel: stats.Funnel, *, double_opt_in: bool | None = None, link: str = ""
) -> dict[str, Any]:
    """What the template shows: tables of counts (each with its rate), and two charts.

    With single opt-in (``double_opt_in`` False, by default the setting) confirmations and
    their rate are left out and ``hidden_note`` says why. ``link`` (a query string without the
    article) makes each article's title a link to the funnel of that article alone.
    """
    if double_opt_in is None:
        double_opt_in = app_settings.DOUBLE_OPT_IN
    steps = stats.funnel_steps(double_opt_in=double_opt_in)
    rate_of = {num: name for name, num, _den in stats.funnel_rates(double_opt_in=double_opt_in)}
    labels = [
        day.key.strftime("%d %b") if isinstance(day.key, datetime.date) else day.label
        for day in funnel.days
    ]

    def chart(title: str, *wanted: str) -> SafeString:
        shown = [s for s in wanted if s in steps]
        return panel_chart_svg(
            labels=labels,
            series=[(str(STEP_LABELS[s]), [day.counts[s] for day in funnel.days]) for s in shown],
            title=title,
            styles=[stats.STEPS.index(s) for s in shown],  # a step looks the same in both
        )

    def row(r: stats.FunnelRow) -> dict[str, Any]:
        url = f"?{link}&article={r.key}" if link and isinstance(r.key, int) else ""
        return {"label": r.label, "url": url, "cells": _cells(r, steps, rate_of)}

    return {
        "columns": [
            {
                "step": step,
                "label": STEP_LABELS[step],
                "rate_label": RATE_LABELS.get(rate_of.get(step, ""), ""),
            }
            for step in steps
        ],
        "hidden_note": ""
        if double_opt_in
        else _(
            "Double opt-in is off: sign-ups need no confirmation, so confirmations and the "
            "confirmation rate are not shown."
        ),
        "total": row(funnel.total),
        "articles": [row(r) for r in funnel.articles],
        "sources": [row(r) for r in funnel.sources],
        "days": [row(r) for r in reversed(funnel.days) if any(r.counts[s] for s in steps)],
        "quiet_days": sum(1 for r in funnel.days if not any(r.counts[s] for s in steps)),
        "quiet_ranges": quiet_day_ranges(funnel.days, steps),
        "headline": headline_figures(funnel),
        "chart_top": chart(str(_("Page views and sign-ups per day")), "views", "signups"),
        "chart_after": chart(
            str(_("After the sign-up, per day")),
            *("signups", "confirmations", "delivered", "downloads", "unsubscribes"),
        ),
    }


def followup_rows(rows: list[stats.FollowUpFunnelRow]) -> list[dict[str, Any]]:
    """The follow-up table's rows, each with a header row before a report's first step."""
    shown: list[dict[str, Any]] = []
    report = None
    for row in rows:
        if row.report != report:
            report = row.report
            shown.append({"report": report})
        label = _("Follow-up %(position)d, day %(days)d: %(subject)s") % {
            "position": row.position,
            "days": row.delay_days,
            "subject": row.subject,
        }
        shown.append(
            {
                "label": label,
                "language": row.language,
                "paused": not row.is_active,
                "sent": row.sent,
                "failed": row.failed,
                "unsubscribed": row.unsubscribed,
                "rate": _percent(row.unsubscribe_rate),
            }
        )
    return shown


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
        pageviews.page_views_flush()  # show the views counted in the cache up to now
        article_id = article.pk if article else None
        funnel = stats.funnel(start=start, end=end, article_id=article_id)
        followups = stats.funnel_followups(start=start, end=end, article_id=article_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Funnel"),
            "subtitle": article.title if article else _("All articles"),
            "form": form,
            "start": start,
            "end": end,
            "span": (end - start).days + 1,
            "previous_start": start - datetime.timedelta(days=(end - start).days + 1),
            "previous_end": start - datetime.timedelta(days=1),
            **funnel_context(
                funnel, link=urlencode({"start": start.isoformat(), "end": end.isoformat()})
            ),
            "followups": followup_rows(followups),
            "followup_rate_label": FOLLOWUP_RATE_LABEL,
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/backpain_report/funnel.html", context)


__all__ = ["FunnelAdmin", "FunnelForm", "funnel_context"]
