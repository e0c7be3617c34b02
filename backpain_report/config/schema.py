"""Every key of ``BACKPAIN_REPORT``, declared once: default, type, validator, check id, doc line.

``conf.py`` takes its defaults from here, ``checks.py`` loops over it (a value of the wrong type
is ``E002``; a value its validator refuses is the setting's own check id), and the docs'
settings table is these rows (``tests/test_checks.py`` fails when they differ). A validator
takes a value of the right type (or the default) and returns what is wrong with it, as the rest
of the sentence "BACKPAIN_REPORT['KEY'] …", or None. The validators are in
:mod:`.validators`, which imports nothing of the app: the modules that also use them at run time
import them from there, so the settings sit below everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from . import validators

SETTING_NAME = "BACKPAIN_REPORT"
NONE = type(None)
DELIVERY_MODES = ("attach", "link", "both")


@dataclass(frozen=True)
class Setting:
    """One key of ``BACKPAIN_REPORT``."""

    name: str
    default: Any
    types: tuple[type, ...]
    doc: str  # the "meaning" cell of the docs' settings table (Markdown)
    validate: Callable[[Any], str | None] | None = None
    check_id: str = ""  # the id of the error for a value ``validate`` refuses
    hint: str = ""  # "{default}" in it stands for the default
    required: bool = False  # the docs show "— (required)" instead of the default
    note: str = ""  # shown after the default in the docs, e.g. "(30 days)"

    def accepts(self, value: object) -> bool:
        """Whether ``value`` has one of the setting's types (a bool is an int only where a bool
        is expected)."""
        if isinstance(value, bool) and bool not in self.types:
            return False
        return isinstance(value, self.types)

    def problem_hint(self) -> str | None:
        """The hint of the error for a value ``validate`` refuses."""
        return self.hint.replace("{default}", repr(self.default)) or None

    def default_shown(self) -> str:
        """The default as the docs show it."""
        if self.required:
            return "— (required)"
        value = self.default
        with translation.override(None):  # a gettext_lazy default as written in the source
            literal = f'"{value}"' if isinstance(value, (str, Promise)) else repr(value)
        return f"`{literal}`" + (f" {self.note}" if self.note else "")

    def readme_row(self) -> str:
        """The setting's row in the docs' settings table (docs/_ext/backpain_docs.py renders it)."""
        return f"| `{self.name}` | {self.default_shown()} | {self.doc} |"


# --- Validators that phrase a value's problem for its setting ------------------------------


def site_url_problem(value: str | None) -> str | None:
    """SITE_URL, when set: an http(s) origin (unset is E006/W001, see checks.py)."""
    problem = validators.site_url_problem(value) if value else None
    return None if problem is None else f"{problem}: got {value!r}"


def privacy_url_problem(value: str | None) -> str | None:
    """PRIVACY_URL, when set: an http(s) URL or a path on the site (unset is W007)."""
    problem = validators.privacy_url_problem(value) if value else None
    return None if problem is None else f"{problem}: got {value!r}"


from_email_problem = validators.from_email_problem
report_cta_problem = validators.report_cta_problem
consent_version_problem = validators.consent_version_problem


def offer_heading_problem(value: str | Promise) -> str | None:
    """OFFER_HEADING: not blank."""
    if str(value).strip():
        return None
    return "is blank: the offer would have an empty heading (its default is shown instead)"


def delivery_problem(value: str) -> str | None:
    """DELIVERY: one of the modes."""
    return None if value in DELIVERY_MODES else f"must be one of {', '.join(DELIVERY_MODES)}"


def limit_problem(value: tuple | list) -> str | None:
    """A ``(count, seconds)`` setting: two positive integers."""
    if validators.limit_parse(value) is not None:
        return None
    return f"must be (count, seconds), two positive integers: got {value!r}"


def trusted_proxies_problem(value: int) -> str | None:
    """TRUSTED_PROXIES: 0 or more."""
    return None if value >= 0 else f"must be 0 or more: got {value}"


def page_max_age_problem(value: int) -> str | None:
    """PAGE_MAX_AGE: 0 or more seconds."""
    return None if value >= 0 else f"must be 0 or more seconds: got {value}"


def embed_origins_problem(value: tuple | list) -> str | None:
    """EMBED_ORIGINS: origins as browsers send them (``https://host[:port]``)."""
    for origin in value:
        problem = validators.origin_problem(origin)
        if problem:
            return f"holds {origin!r}, which {problem}"
    return None


def networks_problem(value: tuple | list) -> str | None:
    """Each entry must be an IP network (``"10.0.0.0/8"``, ``"::1/128"``) or address."""
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            return f"holds {entry!r}, which is not an IP network such as '10.0.0.0/8'"
    return None


def queue_problem(value: str) -> str | None:
    """A Celery queue name: no whitespace."""
    if value != value.strip() or any(char.isspace() for char in value):
        return f"is not a queue name: got {value!r}"
    return None


def positive_problem(value: float) -> str | None:
    return None if value > 0 else f"must be more than 0: got {value!r}"


def send_hour_problem(value: int) -> str | None:
    """FOLLOWUP_SEND_HOUR: an hour of the day, 0 to 23."""
    return None if 0 <= value <= 23 else f"must be an hour from 0 to 23: got {value}"


def resume_max_age_problem(value: int) -> str | None:
    """FOLLOWUP_RESUME_MAX_AGE: 0 or more seconds."""
    return None if value >= 0 else f"must be 0 or more seconds: got {value}"


def consent_text_problem(value: str | Promise) -> str | None:
    """FOLLOWUP_CONSENT_TEXT: not blank (a reader must be told what they agree to)."""
    if str(value).strip():
        return None
    return "is blank: readers would agree to follow-ups without being told"


def alias_problem(setting: str) -> Callable[[str | None], str | None]:
    """A validator for a setting naming an alias of ``settings.<setting>`` (None: no alias)."""

    def problem(value: str | None) -> str | None:
        from django.conf import settings

        if value is None or value in getattr(settings, setting):
            return None
        return f"names {value!r}, which is not in settings.{setting}"

    return problem


# --- The settings, in the docs' order ----------------------------------------------------

SITE_URL_HINT = (
    "Links in emails are SITE_URL followed by the app's paths. For a site served under a "
    "sub-path, set FORCE_SCRIPT_NAME."
)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "FROM_EMAIL",
        None,
        (str, NONE),  # None (unset, or from an unset environment variable) is E001
        'sender of every email, e.g. `"Reports <reports@example.com>"`',
        validate=from_email_problem,
        check_id="backpain_report.E001",
        hint='For example: {"FROM_EMAIL": "Reports <reports@example.com>"}',
        required=True,
    ),
    Setting(
        "SITE_URL",
        None,
        (str, NONE),
        "scheme and host (and optionally a port) for links in emails "
        '(`"https://www.example.com"`), with no path, query or fragment (check `E007`; under '
        "a sub-path set Django's `FORCE_SCRIPT_NAME`); links carry its host IDNA-encoded "
        "(`https://rückenschmerz.example` gives `https://xn--rckenschmerz-dlb.example/…`), "
        "the emails' text names it as written; required when `DEBUG` is off (check `E006`); "
        "unset with `DEBUG` on, the host of the page the reader signed up on is used",
        validate=site_url_problem,
        check_id="backpain_report.E007",
        hint=SITE_URL_HINT,
    ),
    Setting(
        "DEFAULT_ARTICLE",
        "back-pain-muscle-spasms-finding-the-culprits",
        (str,),
        "slug of the article shown at the root of the include",
    ),
    Setting(
        "CONSENT_TEXT",
        _("Yes, email me the free report. I can unsubscribe at any time with one click."),
        (str, Promise),  # Promise: gettext_lazy("..."), shown translated
        "the consent checkbox label, stored with each sign-up as shown (a `gettext_lazy` text"
        ' is shown and stored in the reader\'s language, see "Languages")',
    ),
    Setting(
        "PRIVACY_URL",
        None,
        (str, NONE),
        'the site\'s privacy notice, an http(s) URL or a path on the site (`"/privacy/"`, '
        "check `E008`; a backslash, a space, tab or newline, or a `//` start is refused, as "
        "browsers would follow such a path to another host): linked next to the consent "
        "checkbox and in every email's footer (a path is made absolute with `SITE_URL`); a "
        "value the check refuses is never linked, even where the checks are not run; unset "
        "with `DEBUG` off, check `W007` warns",
        validate=privacy_url_problem,
        check_id="backpain_report.E008",
        hint="Browsers read a backslash as a slash and drop tabs and newlines, so a path holding "
        "one may lead to another host.",
    ),
    Setting(
        "OFFER_HEADING",
        _("Get the free guide to back muscle spasms"),
        (str, Promise),
        "the heading of the offer block at the top of the article page and of the form after "
        "the article; the article's own call to action stays in its text; a blank one is "
        "check `E010` and the default is shown",
        validate=offer_heading_problem,
        check_id="backpain_report.E010",
    ),
    Setting(
        "CONSENT_VERSION",
        "1",
        (str, int),
        "version stored with each consent record (at most 20 characters, check `E011`); "
        "change it when the text changes",
        validate=consent_version_problem,
        check_id="backpain_report.E011",
        hint='Use a short label, e.g. "2025-06-v3".',
    ),
    Setting(
        "HASH_IP",
        True,
        (bool,),
        "store a keyed hash (HMAC with `SECRET_KEY`) of the reader's IP instead of the IP",
    ),
    Setting(
        "MAX_ATTEMPTS",
        5,
        (int,),
        "delivery attempts before a delivery is marked failed; taking over an expired claim "
        "counts as one",
    ),
    Setting(
        "RETRY_BACKOFF",
        30,
        (Real,),
        "seconds; attempt *n* waits about `RETRY_BACKOFF * 2**(n-1)` (with jitter)",
    ),
    Setting("RETRY_BACKOFF_MAX", 3600, (Real,), "cap for one wait, in seconds"),
    Setting(
        "CLAIM_LEASE",
        600,
        (Real,),
        "seconds after which a `sending` claim is treated as abandoned and reclaimed (a new "
        "attempt); must cover a 60 s render budget plus 6 waits for the SMTP server at the "
        "mail timeout (check `E004`; the timeout bounds each wait, not a whole SMTP step: see"
        " [How delivery works](#how-delivery-works))",
    ),
    Setting(
        "SWEEP_GRACE",
        60,
        (Real,),
        "seconds a pending sign-up or delivery may wait for its message (a retry's from when "
        "it falls due) before the sweep re-publishes it; one still waiting is re-published "
        "again once it has waited as long again as before (doubling intervals, so a long "
        "queue is not flooded with copies), but at most `RETRY_BACKOFF_MAX` (or this grace, if "
        "longer) after its last publish: a lost message is recovered within that. Keep it above a "
        "normal queue wait (see [Production](#production))",
    ),
    Setting(
        "PRIVATE_STORAGE",
        None,
        (str, NONE),
        "the `STORAGES` alias of the app's private files (the report body cached per edition,"
        ' readers\' PDFs; one of `STORAGES`, check `E015`); `None`: the `"backpain_report"` '
        "alias if `STORAGES` has one, else a private directory in the system's temp dir (see "
        "[Private storage](#private-storage))",
        validate=alias_problem("STORAGES"),
        check_id="backpain_report.E015",
    ),
    Setting(
        "PUBLISH_TIMEOUT",
        1.0,
        (Real,),
        "seconds a sign-up may spend talking to the broker; then the row waits for the sweep",
    ),
    Setting(
        "MAILER",
        None,
        (str, NONE),
        "the `MAILERS` alias to send through on Django 6.1+ (`None`: the default mailer)",
    ),
    Setting(
        "DELIVERY",
        "link",
        (str,),
        'send a signed download `"link"` (a button under the report\'s cover), `"attach"` the PDF, '
        'or `"both"` (any other is check `E012`); why a link by default, and what each mode '
        "sends: [The report email](#the-report-email)",
        validate=delivery_problem,
        check_id="backpain_report.E012",
    ),
    Setting(
        "DOWNLOAD_MAX_AGE",
        30 * 24 * 3600,
        (int,),
        "seconds a download link works",
        note="(30 days)",
    ),
    Setting(
        "MAX_EMAIL_SIZE",
        10 * 1024 * 1024,
        (int,),
        "ceiling in bytes for one email; a PDF that would exceed it is sent as a link",
    ),
    Setting(
        "DOUBLE_OPT_IN",
        False,
        (bool,),
        "send a confirmation link first and the report once it is confirmed",
    ),
    Setting(
        "CONFIRM_MAX_AGE",
        7 * 24 * 3600,
        (int,),
        "seconds a confirmation link works; an expired one offers a fresh link",
        note="(7 days)",
    ),
    Setting(
        "THROTTLE_IP",
        (10, 3600),
        (tuple, list),
        "sign-ups allowed per client IP per window: `(count, seconds)`, two positive integers"
        " (check `E013`); over it, a calm 429 page. IPv6 clients count per /64, IPv4-mapped "
        "IPv6 as the IPv4 address; sign-ups without a client IP (`REMOTE_ADDR` empty or not "
        "an address) cannot be told apart and share one count (see `TRUSTED_PROXIES`)",
        validate=limit_problem,
        check_id="backpain_report.E013",
        hint="For example: {default}.",
    ),
    Setting(
        "THROTTLE_ADDRESS_WINDOW",
        3600,
        (int,),
        "a sign-up for an address that was sent (or is being sent) a report or confirmation "
        "within this many seconds sends nothing new; decided by the worker from the "
        "deliveries in the database",
    ),
    Setting(
        "THROTTLE_DOWNLOAD",
        (30, 3600),
        (tuple, list),
        "downloads allowed per download link and, separately, per client IP per window: "
        "`(count, seconds)`, two positive integers (check `E013`); over it, a calm 429 page "
        "(`noindex`); a `HEAD` counts per client IP only; requests without a client IP share "
        "one count",
        validate=limit_problem,
        check_id="backpain_report.E013",
        hint="For example: {default}.",
    ),
    Setting(
        "THROTTLE_CACHE",
        "default",
        (str,),
        "the cache alias the throttles count in (one of `CACHES`, check `E015`): Redis or "
        "Memcached with several web processes (see [Production](#production))",
        validate=alias_problem("CACHES"),
        check_id="backpain_report.E015",
    ),
    Setting(
        "TRUSTED_PROXIES",
        0,
        (int,),
        "reverse proxies in front of Django that append to `X-Forwarded-For` (an integer, 0 "
        "or more, check `E014`); `0` uses `REMOTE_ADDR`. `X-Forwarded-For` is never trusted "
        "blindly. Behind a proxy that reaches Django over a unix socket `REMOTE_ADDR` is "
        "empty: with `0` every request then shares one sign-up count and one download count, "
        "and a warning is logged once per process",
        validate=trusted_proxies_problem,
        check_id="backpain_report.E014",
    ),
    Setting(
        "REPORT_CTA",
        None,
        (dict, NONE),
        'the next step on the PDF\'s closing page: `{"text": "Book a free call", "url": '
        '"https://www.example.com/book/"}`, a text of 1 to 200 characters and an absolute '
        "http(s) URL (check `E009`; a value the check refuses is never used: the default is, "
        "and an error is logged); the link's host is IDNA-encoded, the URL as written is "
        'shown; `None`: "Visit our site for more on looking after your back", linking to '
        "`SITE_URL` and the app's home page, labelled with the site's name (nothing without "
        "`SITE_URL`)",
        validate=report_cta_problem,
        check_id="backpain_report.E009",
        hint='For example: {"text": "Book a free call with our physiotherapist", '
        '"url": "https://www.example.com/book/"}.',
    ),
    Setting(
        "PAGE_MAX_AGE",
        300,
        (int,),
        "seconds a shared cache (a CDN, Varnish) and the app's own page cache may keep the "
        "article page (an integer, 0 or more, check `E016`): the page is the same bytes for "
        "every reader, sent with `Cache-Control: public, max-age=` this, "
        "`stale-while-revalidate=0` and an `Age`, so an edit of the article or its report "
        "shows everywhere within this time and a second; `0`: shared "
        "caches keep nothing and the app renders the page on every request (see "
        "[Caching the article page](#caching-the-article-page))",
        validate=page_max_age_problem,
        check_id="backpain_report.E016",
        note="(5 minutes)",
    ),
    Setting(
        "PAGE_CACHE",
        "default",
        (str,),
        "the cache alias the rendered article page is kept in (one of `CACHES`, check "
        "`E015`), shared by every web process; each process also keeps a copy of its own",
        validate=alias_problem("CACHES"),
        check_id="backpain_report.E015",
    ),
    Setting(
        "EMBED_ORIGINS",
        (),
        (tuple, list),
        'other sites allowed to post the sign-up form, as origins (`"https://www.example.org"`,'
        " scheme, host and an optional port, check `E017`); a browser's sign-up from any "
        "other site is refused with a 403 (see [Sign-up protection](#sign-up-protection) and "
        "[Embedding the form](#embedding-the-form))",
        validate=embed_origins_problem,
        check_id="backpain_report.E017",
        hint='For example: ("https://www.example.org",).',
    ),
    Setting(
        "SOFT_BOUNCE_LIMIT",
        (3, 7 * 24 * 3600),
        (tuple, list),
        "soft bounces (temporary failures reported through anymail's tracking webhooks) that "
        "suppress an address: `(count, seconds)`, that many within the window, two positive "
        "integers (check `E013`; a value the check refuses is never used: the default is); "
        "soft bounces received before staff last lifted the address's suppression do not "
        "count (see [Bounces and complaints](#bounces-and-complaints))",
        validate=limit_problem,
        check_id="backpain_report.E013",
        hint="For example: {default}.",
    ),
    Setting(
        "WEBHOOK_QUEUE",
        "backpain_webhooks",
        (str,),
        "the Celery queue webhook events are published to, so a slow CRM never delays report "
        "emails: the site's worker must consume it (`celery worker -Q celery,backpain_webhooks`"
        ', or a worker of its own); `""`: the default queue (check `E018`; see [Send leads to '
        "your CRM](#send-leads-to-your-crm))",
        validate=queue_problem,
        check_id="backpain_report.E018",
    ),
    Setting(
        "WEBHOOK_CONNECT_TIMEOUT",
        3.0,
        (Real,),
        "seconds a webhook call may take to connect (check `E019`)",
        validate=positive_problem,
        check_id="backpain_report.E019",
    ),
    Setting(
        "WEBHOOK_READ_TIMEOUT",
        10.0,
        (Real,),
        "seconds a receiver may take to answer; connect and read together are also the whole "
        "call's deadline (check `E019`); a timeout is retried",
        validate=positive_problem,
        check_id="backpain_report.E019",
    ),
    Setting(
        "WEBHOOK_MAX_RESPONSE_BYTES",
        65536,
        (int,),
        "bytes of a receiver's answer read at most (the rest is dropped; check `E019`)",
        validate=positive_problem,
        check_id="backpain_report.E019",
    ),
    Setting(
        "WEBHOOK_ALLOWED_NETWORKS",
        (),
        (tuple, list),
        "IP networks webhook calls may reach although they are not public (private, loopback, "
        'link-local...), e.g. `("10.0.0.0/8",)` for a CRM inside your network; every other '
        "such address is refused after DNS resolution (check `E020`; see [the SSRF "
        "rule](#webhook-ssrf-rule))",
        validate=networks_problem,
        check_id="backpain_report.E020",
        hint='For example: ("10.1.2.0/24",).',
    ),
    Setting(
        "FOLLOWUP_SEND_HOUR",
        9,
        (int,),
        "the hour of the day, in `TIME_ZONE`, follow-up emails fall due (0 to 23, check "
        "`E021`): a step of delay *d* goes out on the *d*-th day after the report was sent, "
        "at this hour; on a day when daylight saving time skips the hour, at the first "
        "time that exists after it",
        validate=send_hour_problem,
        check_id="backpain_report.E021",
    ),
    Setting(
        "FOLLOWUP_RESUME_MAX_AGE",
        7 * 24 * 3600,
        (int,),
        "seconds: a paused follow-up step, when switched on again, is sent to the readers "
        "whose due time is at most this old; readers it fell due for earlier never get it "
        "(0 or more, check `E022`)",
        validate=resume_max_age_problem,
        check_id="backpain_report.E022",
        note="(7 days)",
    ),
    Setting(
        "FOLLOWUP_CONSENT_TEXT",
        _(
            "Yes, email me the free report and a few follow-up emails about it over the next "
            "weeks. I can unsubscribe at any time with one click."
        ),
        (str, Promise),
        "the consent checkbox label instead of `CONSENT_TEXT` while the article's report has "
        "its follow-up sequence on (check `E023` if blank); it must name the follow-ups: "
        "only a reader who agreed to this text gets them, and it is stored with the version "
        '`CONSENT_VERSION` followed by `"+followups"`',
        validate=consent_text_problem,
        check_id="backpain_report.E023",
    ),
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
