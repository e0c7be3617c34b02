from django.conf import settings
from django.contrib import admin
from django.contrib.sitemaps.views import sitemap
from django.urls import include, path

from backpain_report.sitemaps import ArticleSitemap

urlpatterns = [
    path("admin/", admin.site.urls),
    path("back-pain/", include("backpain_report.urls")),
    path("sitemap.xml", sitemap, {"sitemaps": {"articles": ArticleSitemap}}),
]
if settings.HAS_ANYMAIL:  # anymail's webhooks: /anymail/amazon_ses/tracking/ and the like
    urlpatterns.append(path("anymail/", include("anymail.urls")))
