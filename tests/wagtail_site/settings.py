"""The Wagtail test site: the test settings plus Wagtail and ``backpain_report.contrib.wagtail``."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "backpain_report.contrib.wagtail",
    "tests.wagtail_site",
]
ROOT_URLCONF = "tests.wagtail_site.urls"
WAGTAIL_SITE_NAME = "Back pain (Wagtail test site)"
WAGTAILADMIN_BASE_URL = "http://testserver"
