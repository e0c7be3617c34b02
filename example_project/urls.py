"""The example site: the app at the root, the admin, and (in development) the outbox."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Back pain report — example site"
admin.site.site_title = "Back pain report"

urlpatterns = [
    path("admin/", admin.site.urls),
]

if settings.DEBUG or getattr(settings, "EXAMPLE_MAIL_CAPTURED", False):
    urlpatterns += [path("outbox/", include("example_project.outbox"))]

# Last: the app's root shows the default article, so the article is the home page.
urlpatterns += [path("", include("backpain_report.urls"))]
