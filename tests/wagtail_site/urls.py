from django.urls import include, path
from wagtail import urls as wagtail_urls
from wagtail.admin import urls as wagtailadmin_urls

from tests.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    *site_urlpatterns,
    path("cms/", include(wagtailadmin_urls)),
    path("", include(wagtail_urls)),  # last: Wagtail serves every other path
]
