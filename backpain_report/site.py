"""The site's own address and name, as the emails, the PDF and the pages write them.

Its host is IDNA-encoded ("https://rückenschmerz.example" links to ``https://xn--rckenschmerz-…``):
the links go into ``List-Unsubscribe``, a header that must be ASCII, and work the same in every
mail client. The validators of ``SITE_URL``, ``PRIVACY_URL`` and ``REPORT_CTA`` are in
:mod:`backpain_report.config.validators`.
"""

from __future__ import annotations

import logging
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist
from django.db import DatabaseError
from django.urls import NoReverseMatch, reverse
from django.utils.encoding import iri_to_uri
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from .conf import app_settings
from .config.validators import (  # noqa: F401  (site_url_problem, ...: this module's API too)
    CTA_TEXT_MAX,
    SCHEMES,
    UNSAFE_IN_URL,
    netloc_ascii,
    privacy_url_problem,
    report_cta_problem,
    site_url_problem,
)
from .models import Subscriber

logger = logging.getLogger(__name__)

# Characters browsers drop from a URL (tab, newline) or read as a slash (a backslash): a path
# holding one can lead off the site (backslash + "evil.example" after "/" is "//evil.example").


def _origin(url: str) -> str:
    """``url`` without a trailing slash, its host IDNA-encoded (as it was if it cannot be)."""
    parts = urlsplit(url.rstrip("/"))
    try:
        return parts._replace(netloc=netloc_ascii(parts.netloc)).geturl()
    except UnicodeError:
        logger.error("The site's URL has a host that cannot be IDNA-encoded (check E007).")
        return url.rstrip("/")


def site_url(subscriber: Subscriber | None = None) -> str:
    """``SITE_URL`` if set, else the origin of the page the subscriber signed up on; its host
    IDNA-encoded."""
    configured = app_settings.SITE_URL
    if configured:
        return _origin(configured)
    if subscriber is not None and subscriber.source_url:
        parts = urlsplit(subscriber.source_url)
        return _origin(f"{parts.scheme}://{parts.netloc}")
    return ""


def site_host(subscriber: Subscriber | None = None) -> str:
    """The site's host (and port) as people write it, for text: "rückenschmerz.example"."""
    configured = app_settings.SITE_URL
    if configured:
        return urlsplit(configured).netloc
    if subscriber is not None and subscriber.source_url:
        return urlsplit(subscriber.source_url).netloc
    return ""


def sites_framework_name() -> str:
    """The current ``Site``'s name if ``django.contrib.sites`` is installed and set up, else ""."""
    if not apps.is_installed("django.contrib.sites"):
        return ""
    from django.contrib.sites.models import Site

    try:
        return Site.objects.get_current().name.strip()
    except (ImproperlyConfigured, ObjectDoesNotExist, DatabaseError):
        return ""


def site_name() -> str:
    """The site's name for text, never a URL: the ``Site``'s name (``django.contrib.sites``), else
    the display name of ``FROM_EMAIL`` (the name readers see on the emails), else the site's
    host as people write it ("reports.example.com"); "" when none is known."""
    name = sites_framework_name()
    if not name and isinstance(app_settings.FROM_EMAIL, str):
        name = parseaddr(app_settings.FROM_EMAIL)[0].strip()
    return name or site_host()


#: The next step on the report's closing page when ``REPORT_CTA`` is not set.
DEFAULT_CTA_TEXT = gettext_lazy("Visit our site for more on looking after your back")


def uri_ascii(url: str) -> str:
    """An absolute ``url`` as an ASCII URI: its host IDNA-encoded, the rest percent-encoded
    (a PDF link's URI must be ASCII; WeasyPrint would percent-encode the host, a dead link)."""
    parts = urlsplit(url)
    return iri_to_uri(parts._replace(netloc=netloc_ascii(parts.netloc)).geturl())


def report_site() -> dict[str, str] | None:
    """``{"url", "host"}`` of the site for the report's closing page, or None without ``SITE_URL``.

    The report body is rendered once per edition, often in a worker with no request at hand,
    so only ``SITE_URL`` can say where the site is. ``url`` is the app's home page.
    """
    if not app_settings.SITE_URL:
        return None
    try:
        path = reverse("backpain_report:home")
    except NoReverseMatch:
        path = "/"
    return {"url": site_url() + path, "host": site_host()}


def report_cta() -> dict[str, str | Promise] | None:
    """The closing page's next step, ``{"text", "url", "label"}``: ``REPORT_CTA`` (labelled with
    its URL as written), else back to the site, labelled with :func:`site_name` (None when
    neither is known)."""
    configured = app_settings.REPORT_CTA
    problem = report_cta_problem(configured)
    if configured and problem is None:
        url = configured["url"]
        return {"text": configured["text"], "url": uri_ascii(url), "label": url}
    if problem is not None:  # check E009 says so; the default next step instead
        logger.error("REPORT_CTA %s; the closing page links back to the site instead.", problem)
    site = report_site()
    if site is None:
        return None
    return {"text": DEFAULT_CTA_TEXT, "url": site["url"], "label": site_name() or site["host"]}


def absolute(path: str, subscriber: Subscriber | None = None) -> str:
    return site_url(subscriber) + path


def privacy_href() -> str:
    """``PRIVACY_URL`` as the page links it; "" when unset or unusable (check E008 says so)."""
    configured = app_settings.PRIVACY_URL
    if not isinstance(configured, str) or not configured:
        return ""
    problem = privacy_url_problem(configured)
    if problem is not None:
        logger.error("PRIVACY_URL %s: not linked.", problem)
        return ""
    return configured


def privacy_url(subscriber: Subscriber | None = None) -> str:
    """``PRIVACY_URL`` for emails: a path on the site is made absolute; "" when unset or
    unusable."""
    configured = privacy_href()
    if configured.startswith("/"):
        return absolute(configured, subscriber)
    return configured
