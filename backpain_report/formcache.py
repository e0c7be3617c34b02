"""The sign-up form's HTML, rendered once per article and configuration, not per request.

Rendering the crispy-forms layout costs more than the rest of the article page together, and
an unbound form is the same for every reader but for its CSRF token. So the HTML is rendered
once per (article slug, language, script prefix, URLconf) with a placeholder token and kept per
process; each request gets a copy with its own masked token (``get_token``, which also makes
the CSRF cookie go out) and its own source fields (``utm_*`` and the referring host, see
:mod:`sources`), which are per request too and so are never part of the remembered HTML.
A bound form (with the reader's input or errors) is always rendered in full, and so is a
site's own ``signup_form.html`` (it may use the page's context). The remembered HTML is
dropped whenever a setting it depends on changes.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.template.loader import get_template, render_to_string
from django.urls import get_script_prefix, get_urlconf
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

from .sources import SOURCE_FIELDS, Source, source_from_request

FORM_TEMPLATE = "backpain_report/signup_form.html"
_APP_TEMPLATES = Path(__file__).resolve().parent / "templates"
# Stands in for the token; made of characters no escaping changes, found nowhere else.
_TOKEN_PLACEHOLDER = "bprCsrfTokenPlaceholder7f3a9c"
# The same for each source field's value.
_SOURCE_PLACEHOLDERS = {
    name: f"bprSourcePlaceholder{n}x7f3a9c" for n, name in enumerate(SOURCE_FIELDS)
}
_PLACEHOLDER_RE = re.compile(
    "|".join(re.escape(p) for p in (_TOKEN_PLACEHOLDER, *_SOURCE_PLACEHOLDERS.values()))
)
# Settings that change what the form's HTML looks like.
_DEPENDS_ON = frozenset(
    {
        "BACKPAIN_REPORT",
        "TEMPLATES",
        "CRISPY_TEMPLATE_PACK",
        "CRISPY_ALLOWED_TEMPLATE_PACKS",
        "CRISPY_FAIL_SILENTLY",
        "LANGUAGE_CODE",
        "ROOT_URLCONF",
        "INSTALLED_APPS",
        "FORM_RENDERER",
    }
)


@functools.lru_cache(maxsize=64)
def _unbound_html(slug: str, language: str | None, prefix: str, urlconf: str | None) -> str:
    from .forms import SignupForm  # crispy-forms' layout objects: imported where used

    return render_to_string(
        FORM_TEMPLATE,
        {
            "form": SignupForm(article_slug=slug, source=_SOURCE_PLACEHOLDERS),
            "csrf_token": _TOKEN_PLACEHOLDER,
        },
    )


@functools.cache
def is_cacheable() -> bool:
    """Whether the form template in use is the app's own: a site's override may use the page's
    context (the article, the request, the user), so it is rendered with the page every time."""
    # Every Django template backend's templates have an origin; django-stubs' protocol omits it.
    origin = get_template(FORM_TEMPLATE).origin.name  # type: ignore[attr-defined]
    return Path(origin).resolve().is_relative_to(_APP_TEMPLATES)


def signup_form_html(
    request: HttpRequest | None, *, slug: str, source: Source | None = None
) -> SafeString:
    """The unbound sign-up form for ``slug``'s article, with ``request``'s own CSRF token and
    source (``source``, else read from ``request``).

    Only for the app's own form template (see :func:`is_cacheable`)."""
    urlconf = get_urlconf()
    html = _unbound_html(slug, get_language(), get_script_prefix(), str(urlconf or ""))
    source = source if source is not None else source_from_request(request)
    values = {_TOKEN_PLACEHOLDER: get_token(request) if request is not None else ""}
    for name, placeholder in _SOURCE_PLACEHOLDERS.items():
        values[placeholder] = escape(source.get(name, ""))
    # One pass: a value that spells a placeholder (a utm_* value may) is never replaced again.
    return mark_safe(_PLACEHOLDER_RE.sub(lambda match: values[match.group(0)], html))


@receiver(setting_changed)
def _forget_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in _DEPENDS_ON:
        _unbound_html.cache_clear()
        is_cacheable.cache_clear()
