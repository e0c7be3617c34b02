"""The environment variables the example site reads (see example_project/settings.py)."""

EXAMPLE_SITE_ENV = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_TIMEOUT",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_TLS",
    "SITE_URL",
    "DJANGO_SECRET_KEY",
    "DJANGO_DEBUG",
    "ALLOWED_HOSTS",
    "CACHE_URL",
    "BACKPAIN_TRUSTED_PROXIES",
    "BACKPAIN_DOUBLE_OPT_IN",
    "EXAMPLE_DEVTOOLS",
    "BACKPAIN_SWEEP_EVERY",
    "BACKPAIN_PAGE_MAX_AGE",
    "EXAMPLE_TEMPLATE_DIR",
)
