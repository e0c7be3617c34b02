"""``django.contrib.sitemaps`` support: the published articles, for the site's ``sitemap.xml``."""

from __future__ import annotations

import datetime
from urllib.parse import urlsplit

from django.contrib.sitemaps import Sitemap

from .conf import app_settings
from .models import Article
from .site import site_url


class ArticleSitemap(Sitemap):
    """Every published article, newest change first; ``lastmod`` is its last edit. Listed on
    ``SITE_URL`` when it is set, as the pages' canonical URLs are (else on the request's or
    the ``sites`` framework's domain, as Django does)."""

    changefreq = "monthly"
    priority = 0.8

    def items(self):
        return Article.objects.published().only("slug", "updated_at").order_by("-updated_at")

    def lastmod(self, item: Article) -> datetime.datetime:
        return item.updated_at

    def get_protocol(self, protocol: str | None = None) -> str:
        if app_settings.SITE_URL:
            return urlsplit(site_url()).scheme
        return super().get_protocol(protocol)

    def get_domain(self, site=None) -> str:
        if app_settings.SITE_URL:
            return urlsplit(site_url()).netloc
        return super().get_domain(site)
