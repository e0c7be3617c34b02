"""The free-report sign-up form and its crispy-forms layout."""

from __future__ import annotations

import functools
from email.utils import parseaddr

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Div, Field, Layout, Submit
from django import forms
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from . import selectors
from .conf import app_settings
from .page.pagecache import DEPENDS_ON, FORM_TEMPLATE, generation
from .page.sources import SOURCE_FIELDS, Source, source_clean
from .rights.addresses import MAX_EMAIL_LENGTH, MAX_NAME_LENGTH, clean_email, clean_name
from .rights.throttling import address_window_text
from .site import privacy_href

HONEYPOT_FIELD = "website"
#: Where a form sits on the article page: in the offer block near the top, or (the default,
#: also any other page) after the article. Each place has element ids of its own, so the two
#: forms on one page never share an id (``label for``, ``aria-describedby``).
PLACE_OFFER = "offer"
PLACES = ("", PLACE_OFFER)


def thanks_context(to_address: str = "") -> dict[str, object]:
    """What the thank-you says, alike for every sign-up: the address the email goes to (as
    typed; "" for "the address you gave us"), the sender's address to add to the contacts,
    double opt-in or not, and the window within which a repeat request is not mailed again."""
    return {
        "double_opt_in": app_settings.DOUBLE_OPT_IN,
        "to_address": to_address,
        "from_address": parseaddr(str(app_settings.FROM_EMAIL or ""))[1],
        "repeat_window": address_window_text(),
    }


def form_place(value: object) -> str:
    """``value`` if it names a place in :data:`PLACES`, else the default place ("")."""
    return value if isinstance(value, str) and value in PLACES else ""


class SourceField(forms.CharField):
    """A hidden source field: any text is accepted (cleaned by :func:`source_clean`), never an
    error, because the reader cannot see or correct it."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, **kwargs)

    def clean(self, value: object) -> str:
        return value if isinstance(value, str) else ""


class SignupForm(forms.Form):
    """Name, email and consent; ``website`` is a honeypot that people never see or fill."""

    # Lengths are checked after cleaning (clean_name/clean_email), so the error states the real
    # limit; the request size itself is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE.
    name = forms.CharField(
        label=_("Your first name"),
        widget=forms.TextInput(attrs={"autocomplete": "given-name", "maxlength": MAX_NAME_LENGTH}),
    )
    email = forms.CharField(
        label=_("Your email address"),
        widget=forms.EmailInput(
            attrs={"autocomplete": "email", "inputmode": "email", "maxlength": MAX_EMAIL_LENGTH}
        ),
    )
    consent = forms.BooleanField(
        required=True,
        error_messages={"required": _("Please tick the box so we may email you the report.")},
    )
    # "1" when the consent label named the follow-up emails (FOLLOWUP_CONSENT_TEXT); the
    # sign-up records consent to them only if the report's sequence is still on.
    followups = forms.CharField(required=False, max_length=1, widget=forms.HiddenInput)
    # The source article's slug; an unknown one falls back to the default article (it is a
    # hidden field: the reader could not correct it).
    article = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)
    # Which of the page's forms was posted (see PLACES): a form with errors is shown again in
    # the same place. Any other value is the default place, never an error.
    place = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)
    # Where the reader came from (see sources.py): filled in by the browser (signup.js) from the
    # page's address and referrer, posted back, cleaned and cut to length, never an error (the
    # reader could not correct it).
    utm_source = SourceField()
    utm_medium = SourceField()
    utm_campaign = SourceField()
    referrer_host = SourceField()
    website = forms.CharField(
        required=False,
        label=_("Leave this field empty"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )

    def __init__(
        self,
        *args,
        article_slug: str = "",
        source: Source | None = None,
        place: str | None = None,
        **kwargs,
    ) -> None:
        if place is None:  # a bound form goes back where it was posted from
            data = args[0] if args else kwargs.get("data")
            place = form_place(data.get("place") if data is not None else "")
        self.place_name = form_place(place)
        if self.place_name:
            kwargs.setdefault("auto_id", f"id_{self.place_name}_%s")
        super().__init__(*args, **kwargs)
        self.fields["place"].initial = self.place_name
        self.offers_followups = self._offers_followups(article_slug)
        self.fields["consent"].label = (
            app_settings.FOLLOWUP_CONSENT_TEXT
            if self.offers_followups
            else app_settings.CONSENT_TEXT
        )
        self.fields["followups"].initial = "1" if self.offers_followups else ""
        privacy = privacy_href()
        if privacy:
            self.fields["consent"].help_text = format_html(
                '{} <a href="{}">{}</a>',
                _("How we use your details:"),
                privacy,
                _("our privacy notice"),
            )
        if article_slug:
            self.fields["article"].initial = article_slug
        for name, value in (source or {}).items():
            self.fields[name].initial = value
        self.helper = FormHelper(self)
        self.helper.form_action = reverse("backpain_report:signup")
        self.helper.form_id = "backpain-report-signup" + (
            f"-{self.place_name}" if self.place_name else ""
        )
        # No CSRF token: the form is the same for every reader, and the sign-up is protected
        # by Fetch Metadata instead (crossorigin.py).
        self.helper.disable_csrf = True
        self.helper.attrs = {"novalidate": ""}
        self.helper.layout = Layout(
            Field("name"),
            Field("email"),
            Field("consent"),
            *([Field("followups")] if self.offers_followups else []),
            Field("article"),
            Field("place"),
            *(Field(name) for name in SOURCE_FIELDS),
            Div(Field(HONEYPOT_FIELD), css_class="backpain-report-hp", aria_hidden="true"),
            Submit(
                "submit",
                _("Send me the free report"),
                css_class="btn-lg",
                **({"css_id": f"submit-id-{self.place_name}-submit"} if self.place_name else {}),
            ),
        )

    def _offers_followups(self, article_slug: str) -> bool:
        """Whether the consent names the follow-up emails: for a form to show, whether the
        article's report offers them in the active language now; for a posted form, whether
        the form it came from said so (the sign-up checks the report again)."""
        if self.is_bound:
            return self.data.get("followups") == "1"
        article = selectors.article_for_signup(slug=article_slug or None)
        report_id = article.report_id if article is not None else None
        return selectors.followups_offered(report_id=report_id, language=get_language() or "")

    @property
    def followups_agreed(self) -> bool:
        """Whether the consent given named the follow-up emails (call after ``is_valid()``)."""
        return self.cleaned_data.get("followups") == "1"

    @property
    def double_opt_in(self) -> bool:
        """Whether a sign-up is confirmed by email first (the success message says so)."""
        return app_settings.DOUBLE_OPT_IN

    @property
    def thanks(self) -> dict[str, object]:
        """The script's thank-you (the same for every reader: it fills in the address)."""
        return thanks_context()

    def focus_first_error(self) -> None:
        """Give the first field with an error ``autofocus``: when the page showing the errors
        loads, the browser moves focus (and scrolls) there, JavaScript or not."""
        for name, field in self.fields.items():
            if name in self.errors and not field.widget.is_hidden:
                field.widget.attrs["autofocus"] = True
                return

    def clean_name(self) -> str:
        return clean_name(self.cleaned_data.get("name", ""))

    def clean_email(self) -> str:
        return clean_email(self.cleaned_data.get("email", ""))

    @property
    def source(self) -> Source:
        """The sign-up's source, cleaned (call after ``is_valid()``)."""
        return source_clean(self.cleaned_data)

    @property
    def is_bot(self) -> bool:
        """True when the honeypot was filled in (only bots see it)."""
        return bool(self.data.get(HONEYPOT_FIELD))


# --- The form's HTML on any page --------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _form_html(
    slug: str, place: str, language: str | None, prefix: str, urlconf: str, generation: str
) -> str:
    return render_to_string(FORM_TEMPLATE, {"form": SignupForm(article_slug=slug, place=place)})


@functools.cache
def form_is_cacheable() -> bool:
    """Whether the form template in use is the app's own: a site's override may use the page's
    context (the article, the request, the user), so it is rendered with the page every time."""
    from pathlib import Path

    from django.template.loader import get_template

    app_templates = Path(__file__).resolve().parent / "templates"
    # Every Django template backend's templates have an origin; django-stubs' protocol omits it.
    origin = get_template(FORM_TEMPLATE).origin.name  # type: ignore[attr-defined]
    return Path(origin).resolve().is_relative_to(app_templates)


def signup_form_html(*, slug: str, place: str = "") -> SafeString:
    """The unbound sign-up form for ``slug``'s article: the same HTML for every reader (no
    token; the browser fills in the source fields), rendered once per place (the offer block
    or after the article: each has ids of its own), language and URLconf, and again after an
    article or report (its follow-ups: the consent text) changed (the page cache's generation).

    Only for the app's own form template (see :func:`form_is_cacheable`)."""
    urlconf = str(get_urlconf() or "")
    return mark_safe(
        _form_html(slug, place, get_language(), get_script_prefix(), urlconf, generation())
    )


@receiver(setting_changed)
def _forget_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in DEPENDS_ON:
        _form_html.cache_clear()
        form_is_cacheable.cache_clear()
