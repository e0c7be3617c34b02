"""Settings for the example site.

With no environment variables it needs no server software: SQLite, Celery's filesystem broker
and mail written to files (shown on the ``/outbox/`` page), all under ``var/`` at the repository
root (or ``$EXAMPLE_VAR_DIR``). Environment variables switch each part to a real service:

- ``DATABASE_URL`` — any URL dj-database-url understands, e.g. ``postgres://user@host/db``.
- ``CELERY_BROKER_URL`` — ``redis://host:6379/0`` or ``amqp://guest:guest@host:5672//``.
- ``EMAIL_HOST`` / ``EMAIL_PORT`` (``EMAIL_TIMEOUT``, default 10 s; optional
  ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS``) — send through SMTP.
- ``SITE_URL``, ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG``, ``ALLOWED_HOSTS`` (comma-separated).
- ``BACKPAIN_EMBED_ORIGINS`` — other sites allowed to post the sign-up form (comma-separated
  origins, ``EMBED_ORIGINS``); ``BACKPAIN_TRUSTED_PROXIES``, ``BACKPAIN_DOUBLE_OPT_IN``.
- ``EXAMPLE_DEVTOOLS`` — install the dev-only ``benchmarks.devtools`` app (``backpain_populate``,
  ``backpain_bench``); default: on with ``DEBUG`` when the checkout's ``benchmarks/`` is there.
- ``EXAMPLE_TEMPLATE_DIR`` — a folder of templates searched before the apps' own, e.g. one
  holding ``backpain_report/base.html`` to override the app's base template.
- ``BACKPAIN_PAGE_MAX_AGE`` — the app's ``PAGE_MAX_AGE`` (seconds a shared cache may keep the
  article page; default 300).
- ``EXAMPLE_LOG_SWEEPS=1`` — keep Celery's log lines about each run of the periodic sweep
  (hidden by default: the sweep logs a line of its own when it re-published something).

``SITE_URL`` (the origin of links in emails) defaults to ``http://127.0.0.1:8000`` with
``DEBUG`` on; ``run.py`` sets it from its ``--addr`` when it is unset. With ``DEBUG`` off and no
``SITE_URL`` the app's system check ``backpain_report.E006`` stops ``check``, ``migrate`` and
``runserver`` with a message saying to set it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR") or BASE_DIR / "var").resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in {"1", "true", "yes", "on"}


def _dev_secret_key(path: Path) -> str:
    """Read the dev key from ``path``, creating it once (atomically: two processes may race)."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # fails if another process won the race: use its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _dev_secret_key(VAR_DIR / "secret_key")
DEBUG = _env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]
EXAMPLE_SITE_URL = os.environ.get("SITE_URL") or ("http://127.0.0.1:8000" if DEBUG else None)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sitemaps",  # /sitemap.xml lists the published articles
    "crispy_forms",
    "crispy_bootstrap5",
    "backpain_report",
    "example_project",  # the outbox page's templates
]
# The scale and benchmark commands live in the checkout (benchmarks/devtools/), not in the
# package: a development site gets them; the real-services tier, with DEBUG off, asks for them.
EXAMPLE_DEVTOOLS = _env_bool(
    "EXAMPLE_DEVTOOLS", DEBUG and (BASE_DIR / "benchmarks" / "devtools").is_dir()
)
if EXAMPLE_DEVTOOLS:
    INSTALLED_APPS.append("benchmarks.devtools")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ under gunicorn too (DEBUG off), as a production site would.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # EXAMPLE_TEMPLATE_DIR: a site's own templates, found before the apps' (an override
        # of backpain_report/base.html, as the Varnish tier's site showing the user has).
        "DIRS": [Path(d) for d in [os.environ.get("EXAMPLE_TEMPLATE_DIR", "").strip()] if d],
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

# --- Database -----------------------------------------------------------------------------

if os.environ.get("DATABASE_URL"):
    import dj_database_url

    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"], conn_max_age=60, conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "example.sqlite3",
            # The web server and the worker write at the same time: wait for the lock, take
            # it at BEGIN (no upgrade deadlocks) and let readers run beside the writer.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Internationalisation, static files ---------------------------------------------------

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing one
# `make example` runs no collectstatic: with DEBUG off too, WhiteNoise serves the apps' static
# files from where they are (Django's finders), never a stale collected copy.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # The app's private files (report bodies, readers' PDFs): never under MEDIA_ROOT, no URLs.
    "backpain_report": {
        "BACKEND": "backpain_report.report.privatestorage.PrivateStorage",
        "OPTIONS": {"location": str(VAR_DIR / "private")},
    },
}

# --- Mail -----------------------------------------------------------------------------------
# Django 6.1 replaced the EMAIL_* settings with MAILERS and refuses a mix of the two, so only
# one family is defined, whichever the running Django prefers.

_smtp_host = os.environ.get("EMAIL_HOST", "").strip()
EXAMPLE_MAIL_CAPTURED = not _smtp_host  # mail is written to EXAMPLE_OUTBOX_DIR, shown at /outbox/
EXAMPLE_OUTBOX_DIR = VAR_DIR / "outbox"
if EXAMPLE_MAIL_CAPTURED:
    EXAMPLE_OUTBOX_DIR.mkdir(parents=True, exist_ok=True)

_smtp = {
    "host": _smtp_host,
    "port": int(os.environ.get("EMAIL_PORT") or 25),
    "timeout": float(os.environ.get("EMAIL_TIMEOUT") or 10),
}
if os.environ.get("EMAIL_HOST_USER"):
    _smtp["username"] = os.environ["EMAIL_HOST_USER"]
    _smtp["password"] = os.environ.get("EMAIL_HOST_PASSWORD", "")
if _env_bool("EMAIL_USE_TLS", False):
    _smtp["use_tls"] = True

if django.VERSION >= (6, 1):
    if EXAMPLE_MAIL_CAPTURED:
        MAILERS = {
            "default": {
                "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "OPTIONS": {"file_path": str(EXAMPLE_OUTBOX_DIR)},
            }
        }
    else:
        MAILERS = {
            "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": _smtp}
        }
elif EXAMPLE_MAIL_CAPTURED:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(EXAMPLE_OUTBOX_DIR)
else:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _smtp["host"]
    EMAIL_PORT = _smtp["port"]
    EMAIL_TIMEOUT = _smtp["timeout"]
    EMAIL_HOST_USER = _smtp.get("username", "")
    EMAIL_HOST_PASSWORD = _smtp.get("password", "")
    EMAIL_USE_TLS = _smtp.get("use_tls", False)

DEFAULT_FROM_EMAIL = "Back Pain Reports <reports@example.com>"
SERVER_EMAIL = "reports@example.com"

# --- The app ------------------------------------------------------------------------------

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

BACKPAIN_REPORT = {
    "FROM_EMAIL": DEFAULT_FROM_EMAIL,
    "SITE_URL": EXAMPLE_SITE_URL,
    # The example's own privacy notice (example_project/templates/example_project/privacy.html).
    "PRIVACY_URL": "/privacy/",
    "TRUSTED_PROXIES": int(os.environ.get("BACKPAIN_TRUSTED_PROXIES") or 0),
    # BACKPAIN_DOUBLE_OPT_IN=1 tries the confirmation flow: the outbox shows the confirm email.
    "DOUBLE_OPT_IN": _env_bool("BACKPAIN_DOUBLE_OPT_IN", False),
}
# BACKPAIN_EMBED_ORIGINS (comma-separated origins, e.g. https://www.example.org): other sites
# allowed to post the sign-up form (docs, "Embedding the form"); unset: none.
_embed_origins = [
    origin.strip()
    for origin in os.environ.get("BACKPAIN_EMBED_ORIGINS", "").split(",")
    if origin.strip()
]
if _embed_origins:
    BACKPAIN_REPORT["EMBED_ORIGINS"] = _embed_origins

# Delivery timings from the environment, for the fault-injection tests
# (tests/realservices/test_faults_*.py), which need them short. Each variable, when set,
# overrides the app's default: BACKPAIN_RETRY_BACKOFF, BACKPAIN_SWEEP_GRACE,
# BACKPAIN_CLAIM_LEASE, BACKPAIN_PUBLISH_TIMEOUT, BACKPAIN_WEBHOOK_CONNECT_TIMEOUT and
# BACKPAIN_WEBHOOK_READ_TIMEOUT (seconds), BACKPAIN_MAX_ATTEMPTS (a count),
# and BACKPAIN_PAGE_MAX_AGE (seconds a shared cache may keep the article page; the Varnish tier,
# tests/realservices/test_varnish.py, needs it short to see an edit come through).
for _key, _cast in (
    ("RETRY_BACKOFF", float),
    ("SWEEP_GRACE", float),
    ("CLAIM_LEASE", float),
    ("PUBLISH_TIMEOUT", float),
    ("WEBHOOK_CONNECT_TIMEOUT", float),
    ("WEBHOOK_READ_TIMEOUT", float),
    ("MAX_ATTEMPTS", int),
    ("PAGE_MAX_AGE", int),
):
    if os.environ.get(f"BACKPAIN_{_key}", "").strip():
        BACKPAIN_REPORT[_key] = _cast(os.environ[f"BACKPAIN_{_key}"])

# System checks to silence, comma-separated: the fault tier sets a CLAIM_LEASE shorter than check
# backpain_report.E004 accepts, on purpose, and silences that check.
SILENCED_SYSTEM_CHECKS = [
    check.strip()
    for check in os.environ.get("DJANGO_SILENCED_SYSTEM_CHECKS", "").split(",")
    if check.strip()
]

# --- Cache ---------------------------------------------------------------------------------
# The sign-up throttles count in the cache, so every web process must share it: Redis when
# CACHE_URL (or a Redis broker) is given, else the database (one table, made by run.py setup and
# by `manage.py createcachetable`).
_cache_url = os.environ.get("CACHE_URL") or (
    os.environ.get("CELERY_BROKER_URL", "")
    if "redis" in os.environ.get("CELERY_BROKER_URL", "")
    else ""
)
if _cache_url:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "backpain-example",
            # A sick cache must cost a sign-up a fraction of a second, not redis-py's 5 s
            # default per call: the throttles then fail open.
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "backpain_example_cache",
        }
    }

# --- Celery ---------------------------------------------------------------------------------
# Read by example_project/celery.py (namespace "CELERY"). The delivery task acks late and is
# requeued when a worker dies; the Delivery row's claim makes a second run a no-op.

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    _folders = {
        "data_folder_in": _broker_dir / "queue",  # one folder: producer and consumer share it
        "data_folder_out": _broker_dir / "queue",
        "control_folder": _broker_dir / "control",
        "processed_folder": _broker_dir / "processed",
    }
    for _folder in _folders.values():
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **{key: str(folder) for key, folder in _folders.items()},
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Longer than any countdown/ETA the app uses, or Redis redelivers a waiting message.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}

CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or "celery"
# Webhook events have a queue of their own (docs, "Send leads to your CRM"), which the example's
# worker consumes beside the default one (example_project/run.py); a test stack that names its
# own default queue gets its own webhook queue beside it.
if os.environ.get("CELERY_TASK_DEFAULT_QUEUE"):
    BACKPAIN_REPORT["WEBHOOK_QUEUE"] = f"{CELERY_TASK_DEFAULT_QUEUE}.webhooks"
# BACKPAIN_WEBHOOK_ALLOWED_NETWORKS (comma-separated, e.g. 127.0.0.0/8): networks webhook calls
# may reach although they are not public; in development (DEBUG) loopback, for a receiver on
# this machine.
_webhook_networks = [
    network.strip()
    for network in os.environ.get("BACKPAIN_WEBHOOK_ALLOWED_NETWORKS", "").split(",")
    if network.strip()
] or (["127.0.0.0/8", "::1/128"] if DEBUG else [])
if _webhook_networks:
    BACKPAIN_REPORT["WEBHOOK_ALLOWED_NETWORKS"] = _webhook_networks
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = 100  # WeasyPrint's memory grows in long-lived processes
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# BACKPAIN_SWEEP_EVERY (seconds, default 60): how often beat runs the sweep; the multi-host
# tier (tests/realservices/test_multihost.py) needs it short.
CELERY_BEAT_SCHEDULE = {
    "backpain-report-sweep": {
        "task": "backpain_report.sweep_deliveries",
        "schedule": float(os.environ.get("BACKPAIN_SWEEP_EVERY") or 60),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Logging --------------------------------------------------------------------------------

# Quiet while nothing happens: Celery's three lines a sweep (every BACKPAIN_SWEEP_EVERY seconds)
# are dropped; the sweep logs its own line when it re-published something. EXAMPLE_LOG_SWEEPS=1
# keeps them (the multi-host tier counts the sweeps' runs in the workers' logs).
_SWEEP_LINES = _env_bool("EXAMPLE_LOG_SWEEPS", False)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "sweep_runs_hidden": {
            "()": "example_project.quiet.TaskRunsHidden",
            "task": "backpain_report.sweep_deliveries",
        },
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "backpain_report": {"handlers": ["console"], "level": "INFO", "propagate": False},
        **{
            name: {"filters": [] if _SWEEP_LINES else ["sweep_runs_hidden"]}
            for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
        },
    },
}
