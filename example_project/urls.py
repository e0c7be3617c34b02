"""The example site: the app at the root, the admin, and (in development) the outbox."""

from django.conf import settings
from django.contrib import admin
from django.contrib.sitemaps.views import sitemap
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView, TemplateView

from backpain_report.sitemaps import ArticleSitemap

admin.site.site_header = "Back pain report — example site"
admin.site.site_title = "Back pain report"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("sitemap.xml", sitemap, {"sitemaps": {"articles": ArticleSitemap}}),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin, the outbox).
    path("favicon.ico", RedirectView.as_view(url=static("backpain_report/favicon.svg"))),
    path(
        "privacy/",
        TemplateView.as_view(template_name="example_project/privacy.html"),
        name="privacy",
    ),
]

if settings.DEBUG or getattr(settings, "EXAMPLE_MAIL_CAPTURED", False):
    urlpatterns += [path("outbox/", include("example_project.outbox"))]

# Last: the app's root shows the default article, so the article is the home page.
urlpatterns += [path("", include("backpain_report.urls"))]
