"""Settings for the test suite: SQLite, in-memory mail, an in-memory Celery broker."""

import importlib.util
import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sitemaps",
    "crispy_forms",
    "crispy_bootstrap5",
    "backpain_report",
    "benchmarks.devtools",  # backpain_populate and backpain_bench: dev-only, not in the wheel
]
# Bounces and complaints (the [anymail] extra, in the test extra): anymail's real webhook views
# at /anymail/ (tests/urls.py), with basic auth and Mailgun's signing key.
HAS_ANYMAIL = importlib.util.find_spec("anymail") is not None
if HAS_ANYMAIL:
    INSTALLED_APPS.append("anymail")
ANYMAIL = {
    "WEBHOOK_SECRET": "webhook-user:webhook-password",
    "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-signing-key-for-tests",
}
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# A file, not ":memory:", so the in-process Celery worker thread shares the test database.
TEST_DB_DIR = BASE_DIR.parent / "var"
TEST_DB_DIR.mkdir(exist_ok=True)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "test.sqlite3",
        # One file per run: runs side by side (CI, a developer, test-compat) never meet.
        "TEST": {"NAME": str(TEST_DB_DIR / f"test-db-{os.getpid()}.sqlite3")},
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
# Files too: one folder per run (its subprocesses inherit it), so the unit and service tiers of
# `make test` (side by side) and test-compat never share a stored PDF; removed when the run ends.
RUN_DIR_OWNED = "BACKPAIN_TEST_RUN_DIR" not in os.environ
RUN_DIR = Path(
    os.environ.setdefault("BACKPAIN_TEST_RUN_DIR", str(TEST_DB_DIR / f"run-{os.getpid()}"))
)
MEDIA_ROOT = RUN_DIR / "test-media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # The app's private files: report bodies (backpain_report/cache/) and readers' PDFs.
    "backpain_report": {
        "BACKEND": "backpain_report.report.privatestorage.PrivateStorage",
        "OPTIONS": {"location": str(RUN_DIR / "test-private")},
    },
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

BACKPAIN_REPORT = {
    "FROM_EMAIL": "Back Pain Reports <reports@example.com>",
    "SITE_URL": "https://reports.example.com",
    "PRIVACY_URL": "/privacy/",
}

CELERY_BROKER_URL = "memory://"
# Celery 5.4 (the lowest declared) warns at worker start-up unless this is set.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
