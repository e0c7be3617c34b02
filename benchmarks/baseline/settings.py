"""Settings of the bare site: the example site's middleware, database, cache and broker.

Everything a request goes through is what the example site has (the same ``MIDDLEWARE``, the
same PostgreSQL database from ``DATABASE_URL``, the same Redis cache and broker), so a ratio
between the two sites measures the app, not the configuration. ``tests/test_bench_suite.py``
checks that the middleware stays the same as the example's.
"""

from __future__ import annotations

import os

import dj_database_url
import django

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "baseline-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "benchmarks.baseline",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "benchmarks.baseline.urls"
WSGI_APPLICATION = "benchmarks.baseline.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or "sqlite:///:memory:",
        conn_max_age=60,
        conn_health_checks=True,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_cache_url = os.environ.get("CACHE_URL") or os.environ.get("CELERY_BROKER_URL", "")
if _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "backpain-baseline",
        }
    }

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "memory://"
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or "baseline"
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None

# Mail: the e2e baseline (benchmarks/mail_baseline.py) sends through the same SMTP sink.
_smtp = {
    "host": os.environ.get("EMAIL_HOST") or "127.0.0.1",
    "port": int(os.environ.get("EMAIL_PORT") or 25),
    "timeout": float(os.environ.get("EMAIL_TIMEOUT") or 10),
}
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": _smtp}
    }
else:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _smtp["host"]
    EMAIL_PORT = _smtp["port"]
    EMAIL_TIMEOUT = _smtp["timeout"]
