"""``django.contrib.sitemaps`` support: the published articles, for the site's ``sitemap.xml``."""

from __future__ import annotations

import datetime

from django.contrib.sitemaps import Sitemap

from .models import Article


class ArticleSitemap(Sitemap):
    """Every published article, newest change first; ``lastmod`` is its last edit."""

    changefreq = "monthly"
    priority = 0.8

    def items(self):
        return Article.objects.published().only("slug", "updated_at").order_by("-updated_at")

    def lastmod(self, item: Article) -> datetime.datetime:
        return item.updated_at
