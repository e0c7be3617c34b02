import importlib.util
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from backpain_report.checks import check_settings

from .docs_text import DOCS, docs_page

# A production site's privacy notice (without it, DEBUG off adds W007 to every list).
PRIVACY = {"PRIVACY_URL": "/privacy/"}


def ids(settings_dict, settings):
    settings.DEBUG = True  # W003 (a per-process throttle cache) is tested on its own
    settings.BACKPAIN_REPORT = settings_dict
    return {message.id for message in check_settings()}


def test_valid_settings_pass(settings):
    assert ids({"FROM_EMAIL": "a@example.com", "SITE_URL": "https://x.example"}, settings) == set()
    call_command("check")


def test_missing_from_email_is_an_error(settings):
    assert "backpain_report.E001" in ids({"SITE_URL": "https://x"}, settings)
    with pytest.raises(SystemCheckError, match="E001"):
        call_command("check")
    assert ids({"SITE_URL": "https://x", "FROM_EMAIL": None}, settings) == {"backpain_report.E001"}
    assert ids({"SITE_URL": "https://x", "FROM_EMAIL": 3}, settings) == {"backpain_report.E002"}


def test_unknown_key_and_wrong_type(settings):
    found = ids(
        {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", "NOPE": 1, "MAX_ATTEMPTS": "5"}, settings
    )
    assert found == {"backpain_report.E002"}
    assert "backpain_report.E002" in ids(
        {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", "MAX_ATTEMPTS": True}, settings
    )


def test_missing_site_url_is_a_warning(settings):
    assert ids({"FROM_EMAIL": "a@b.com"}, settings) == {"backpain_report.W001"}


def test_missing_site_url_is_an_error_with_debug_off(settings):
    settings.DEBUG = False
    settings.BACKPAIN_REPORT = {"FROM_EMAIL": "a@b.com"}
    assert "backpain_report.E006" in {m.id for m in check_settings()}
    assert "backpain_report.W001" not in {m.id for m in check_settings()}
    with pytest.raises(SystemCheckError, match="E006"):
        call_command("check")
    settings.DEBUG = True
    call_command("check")  # W001 only: a warning does not stop the site


def test_use_tz_off_is_an_error(settings):
    settings.USE_TZ = False
    assert "backpain_report.E005" in ids(
        {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x"}, settings
    )
    with pytest.raises(SystemCheckError, match="E005"):
        call_command("check")


def test_settings_are_reread_after_override(settings):
    from backpain_report.conf import app_settings

    settings.BACKPAIN_REPORT = {"FROM_EMAIL": "a@b.com", "MAX_ATTEMPTS": 9}
    assert app_settings.MAX_ATTEMPTS == 9
    settings.BACKPAIN_REPORT = {"FROM_EMAIL": "a@b.com"}
    assert app_settings.MAX_ATTEMPTS == 5


def test_per_process_throttle_cache_is_a_warning_in_production(settings):
    settings.BACKPAIN_REPORT = {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", **PRIVACY}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.DEBUG = False
    assert {m.id for m in check_settings()} == {"backpain_report.W003"}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:6379/0"}}  # fmt: skip
    assert check_settings() == []


SMTP = "django.core.mail.backends.smtp.EmailBackend"


def _configure_timeout(settings, timeout, *, alias="default"):
    """The mail timeout where the running Django reads it: MAILERS on 6.1+, else EMAIL_TIMEOUT."""
    import django

    if django.VERSION >= (6, 1):
        options = {"host": "127.0.0.1"}
        if timeout is not None:
            options["timeout"] = timeout
        settings.MAILERS = {
            "default": {"BACKEND": SMTP, "OPTIONS": {"host": "127.0.0.1", "timeout": 5}},
            alias: {"BACKEND": SMTP, "OPTIONS": options},
        }
    else:
        settings.EMAIL_BACKEND = SMTP
        settings.EMAIL_TIMEOUT = timeout


BASE = {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x"}


def test_a_mail_timeout_too_long_for_the_claim_lease_is_an_error(settings):
    """Regression (issue 10, item 3): a render plus the SMTP exchange at the configured timeout
    must fit in CLAIM_LEASE, or a slow send could be reclaimed and sent twice (E004)."""
    _configure_timeout(settings, 10)
    assert ids(BASE, settings) == set()  # 60 s + 6 x 10 s <= 600 s
    _configure_timeout(settings, 90)
    assert ids(BASE, settings) == set()  # 60 s + 6 x 90 s = 600 s
    _configure_timeout(settings, 91)
    assert ids(BASE, settings) == {"backpain_report.E004"}
    [error] = check_settings()
    assert "CLAIM_LEASE" in error.msg and "606 s" in error.msg
    with pytest.raises(SystemCheckError, match="E004"):
        call_command("check")
    assert ids({**BASE, "CLAIM_LEASE": 700}, settings) == set()


def test_the_chosen_mailer_s_timeout_is_checked(settings):
    import django

    if django.VERSION < (6, 1):
        pytest.skip("MAILERS and BACKPAIN_REPORT['MAILER'] exist on Django 6.1+")
    _configure_timeout(settings, 300, alias="bulk")  # "default" has 5 s
    assert ids(BASE, settings) == set()
    assert ids({**BASE, "MAILER": "bulk"}, settings) == {"backpain_report.E004"}


def test_no_mail_timeout_is_fine_unless_the_lease_is_too_short(settings):
    """Without a configured timeout the adapter derives one from the lease, so only a lease too
    short for a render and the 1 s minimum timeout is reported."""
    _configure_timeout(settings, None)
    assert ids(BASE, settings) == set()
    assert ids({**BASE, "CLAIM_LEASE": 66}, settings) == set()
    assert ids({**BASE, "CLAIM_LEASE": 65}, settings) == {"backpain_report.E004"}


@pytest.mark.parametrize("mailer", [["bulk"], {"bulk": 1}, 3])
def test_a_mailer_alias_of_the_wrong_shape_is_e002_not_a_traceback(settings, mailer):
    """Attack (issue 14): an unhashable MAILER reached the lease check's MAILERS look-up and
    ``manage.py check`` died with "TypeError: unhashable type" instead of reporting E002."""
    _configure_timeout(settings, 10)
    assert ids({**BASE, "MAILER": mailer}, settings) == {"backpain_report.E002"}


@pytest.mark.parametrize(
    "mailers", [[], "smtp", {"default": "smtp"}, {"default": {"OPTIONS": ["timeout", 5]}}]
)
def test_a_mailers_setting_of_another_shape_does_not_crash_the_lease_check(settings, mailers):
    """Attack (issue 14): MAILERS is read by the lease check before Django uses it; any shape
    counts as "no timeout configured" there (Django reports MAILERS itself when it sends)."""
    settings.MAILERS = mailers
    assert ids(BASE, settings) == set()


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.db.DatabaseCache",
        "django.core.cache.backends.filebased.FileBasedCache",
    ],
)
def test_a_throttle_cache_that_cannot_count_atomically_is_a_warning(settings, backend, tmp_path):
    settings.BACKPAIN_REPORT = {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", **PRIVACY}
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": str(tmp_path)}}
    settings.DEBUG = False
    messages = check_settings()
    assert {m.id for m in messages} == {"backpain_report.W004"}
    assert "atomically" in messages[0].msg and "Redis or Memcached" in messages[0].hint
    settings.DEBUG = True  # a development site's single process loses nothing that matters
    assert check_settings() == []


def test_throttle_download_is_declared_and_typed(settings):
    from backpain_report.conf import app_settings

    assert ids({"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x"}, settings) == set()
    assert app_settings.THROTTLE_DOWNLOAD == (30, 3600)
    assert "backpain_report.E002" in ids(
        {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", "THROTTLE_DOWNLOAD": 30}, settings
    )


def _settings_table() -> list[str]:
    """The settings table the docs build renders (docs/_ext/backpain_docs.py)."""
    path = DOCS / "_ext" / "backpain_docs.py"
    spec = importlib.util.spec_from_file_location("backpain_docs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.settings_table()


def test_the_docs_settings_table_is_the_schema():
    """Each setting is declared once, in settings_schema.py: the docs' settings table is generated
    from its rows (name, default as shown, meaning), in its order, by the ``backpain-settings``
    directive the settings page uses (no row copied by hand), and conf's defaults are its
    defaults."""
    from backpain_report.conf import DEFAULTS
    from backpain_report.config.schema import SETTINGS

    page = docs_page("reference/settings")
    assert page.count("```{backpain-settings}\n```") == 1
    assert re.findall(r"^\| `[A-Z_]+` \|.*\|$", page, re.MULTILINE) == []  # none by hand
    rows = _settings_table()
    assert rows[:2] == ["| key | default | meaning |", "| --- | --- | --- |"]
    assert rows[2:] == [setting.readme_row() for setting in SETTINGS]
    assert [row.split("`")[1] for row in rows[2:]] == [setting.name for setting in SETTINGS]
    assert {setting.name: setting.default for setting in SETTINGS} == DEFAULTS


def test_a_changed_default_or_doc_line_no_longer_matches_the_docs():
    """The comparison above sees a default, a doc line and a note (the rows differ)."""
    from dataclasses import replace

    from backpain_report.config.schema import BY_NAME

    setting = BY_NAME["DOWNLOAD_MAX_AGE"]
    row = setting.readme_row()
    assert row == "| `DOWNLOAD_MAX_AGE` | `2592000` (30 days) | seconds a download link works |"
    assert replace(setting, default=60).readme_row() != row
    assert replace(setting, doc="minutes").readme_row() != row
    assert BY_NAME["FROM_EMAIL"].default_shown() == "— (required)"
    assert BY_NAME["OFFER_HEADING"].default_shown() == (
        '`"Get the free guide to back muscle spasms"`'
    )
    assert BY_NAME["THROTTLE_IP"].default_shown() == "`(10, 3600)`"


def test_every_default_has_its_type_and_passes_its_validator(settings):
    from backpain_report.config.schema import SETTINGS

    settings.BACKPAIN_REPORT = {"FROM_EMAIL": "a@b.com"}
    for setting in SETTINGS:
        if setting.required:
            continue
        assert setting.accepts(setting.default), setting.name
        assert setting.validate is None or setting.validate(setting.default) is None, setting.name
        assert bool(setting.validate) == bool(setting.check_id), setting.name


def test_every_check_id_is_documented_once():
    """The ids checks.py raises and the ones the schema declares are the docs' checks table
    (docs/reference/checks.md)."""
    from backpain_report import checks
    from backpain_report.config import schema as settings_schema

    checks_table = docs_page("reference/checks")
    documented = re.findall(r"^\| `(backpain_report\.[EW]\d{3})` \|", checks_table, re.M)
    used = set(re.findall(r'id="(backpain_report\.[EW]\d{3})"', Path(checks.__file__).read_text()))
    used |= {setting.check_id for setting in settings_schema.SETTINGS if setting.check_id}
    assert sorted(documented) == sorted(set(documented))  # each once
    assert used == set(documented)


# --- Hostile review (issue 10): settings a careless site owner can get wrong ---------------


def test_a_consent_version_too_long_for_its_column_is_refused_by_a_check(settings):
    from backpain_report.models import PendingSignup, Subscriber
    from backpain_report.services.subscribers import _consent_fields

    version = "2025-06-01-privacy-policy-v3"  # a plausible version label, 28 characters
    found = ids(
        {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", "CONSENT_VERSION": version}, settings
    )
    stored = _consent_fields(ip=None, user_agent="", source_url="")["consent_version"]
    fits = all(
        len(stored) <= model._meta.get_field("consent_version").max_length
        for model in (PendingSignup, Subscriber)
    )
    assert "backpain_report.E011" in found or fits


def test_a_consent_version_up_to_its_column_s_length_passes(settings):
    assert ids({**BASE, "CONSENT_VERSION": "x" * 20}, settings) == set()
    assert ids({**BASE, "CONSENT_VERSION": 3}, settings) == set()  # stored as "3"
    assert ids({**BASE, "CONSENT_VERSION": "x" * 21}, settings) == {"backpain_report.E011"}
    [error] = check_settings()
    assert "21 characters" in error.msg and "column of 20" in error.msg


@pytest.mark.parametrize(
    ("from_email", "problem"),
    [
        # Every Message-ID, <pk.hash@domain>, is stored in a column of 255 characters.
        ("Reports <r@" + ".".join(["x" * 55] * 4) + ".example.com>", "too long"),  # 235: valid DNS
        ("r@" + "x" * 64 + ".com", "IDNA"),  # a label over 63 characters
        ("r@a..com", "IDNA"),  # an empty label
    ],
    ids=["too-long", "label-over-63", "empty-label"],
)
def test_a_from_email_no_message_id_can_be_made_from_is_e001(settings, from_email, problem):
    """Regression: a FROM_EMAIL whose domain cannot be encoded, or makes a Message-ID longer
    than its column, passed E001 and then failed every delivery."""
    from backpain_report.delivery.emails import delivery_message_id
    from backpain_report.models import Delivery

    assert ids({**BASE, "FROM_EMAIL": from_email}, settings) == {"backpain_report.E001"}
    [error] = check_settings()
    assert problem in error.msg
    delivery = Delivery(pk=1, created_at=None)
    if problem == "IDNA":
        with pytest.raises(UnicodeError):
            delivery_message_id(delivery)
    assert ids({**BASE, "FROM_EMAIL": "Reports <r@bücher.example>"}, settings) == set()


@pytest.mark.parametrize("value", [(10,), (10, 3600, 1), ("ten", 3600), []])
def test_a_throttle_setting_of_the_wrong_shape_is_e013(settings, value):
    found = ids({"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", "THROTTLE_IP": value}, settings)
    assert "backpain_report.E013" in found


@pytest.mark.parametrize("key", ["THROTTLE_IP", "THROTTLE_DOWNLOAD", "SOFT_BOUNCE_LIMIT"])
@pytest.mark.parametrize(
    "value", [(10,), (10, 3600, 1), ("ten", 3600), [], (True, 3600), (10, 0), (-1, 60), (1.5, 60)]
)
def test_every_throttle_limit_must_be_two_positive_ints(settings, key, value):
    found = ids({**BASE, key: value}, settings)
    assert found == {"backpain_report.E013"}
    [error] = check_settings()
    assert key in error.msg and "two positive integers" in error.msg


@pytest.mark.parametrize("value", [(1, 60), [5, 3600]])
def test_a_throttle_limit_as_a_tuple_or_a_list_passes(settings, value):
    assert ids({**BASE, "THROTTLE_IP": value, "THROTTLE_DOWNLOAD": value}, settings) == set()


def test_a_negative_trusted_proxies_or_an_unknown_throttle_cache_is_an_error(settings):
    assert ids({**BASE, "TRUSTED_PROXIES": -1}, settings) == {"backpain_report.E014"}
    assert ids({**BASE, "THROTTLE_CACHE": "nope"}, settings) == {"backpain_report.E015"}
    assert ids({**BASE, "THROTTLE_CACHE": ["nope"]}, settings) == {"backpain_report.E002"}


@pytest.mark.parametrize(
    "site_url",
    [
        "www.example.com",  # no scheme
        "ftp://www.example.com",
        "https://",
        "https://www.example.com/blog",
        "https://www.example.com/?utm=1",
        "https://www.example.com/#top",
        "https://user:secret@www.example.com",
        "https://www.example.com:port",
        "https://www..example.com",
        "https://" + "ü" * 64 + ".example",  # a label over 63 characters once encoded
    ],
)
def test_a_site_url_that_is_not_an_origin_is_e007(settings, site_url):
    """Links in emails are SITE_URL followed by the app's paths: it must be an http(s) origin
    whose host can be IDNA-encoded (links and List-Unsubscribe are ASCII)."""
    assert ids({**BASE, "SITE_URL": site_url}, settings) == {"backpain_report.E007"}
    [error] = check_settings()
    assert "SITE_URL" in error.msg


@pytest.mark.parametrize(
    "site_url",
    [
        "https://www.example.com",
        "https://www.example.com/",
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
        "http://localhost:8000",
        "https://rückenschmerz.example",
    ],
)
def test_a_site_url_that_is_an_origin_passes(settings, site_url):
    assert ids({**BASE, "SITE_URL": site_url}, settings) == set()


# --- Issue 12: the privacy notice next to the consent checkbox -------------------------------


def test_a_missing_privacy_url_warns_in_production_only(settings):
    base = {"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x.example"}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:6379/0"}}  # fmt: skip
    assert ids(base, settings) == set()  # DEBUG on: nothing to say
    settings.DEBUG = False
    assert {m.id for m in check_settings()} == {"backpain_report.W007"}
    call_command("check")  # a warning: the site still starts
    settings.BACKPAIN_REPORT = {**base, "PRIVACY_URL": "/privacy/"}
    assert check_settings() == []
    settings.BACKPAIN_REPORT = {**base, "PRIVACY_URL": "https://www.example.com/privacy"}
    assert check_settings() == []


@pytest.mark.parametrize(
    ("value", "check_id"),
    [
        ("privacy.html", "backpain_report.E008"),
        ("javascript:alert(1)", "backpain_report.E008"),
        ("//evil.example/p", "backpain_report.E008"),
        (3, "backpain_report.E002"),  # not a str: the wrong type
    ],
)
def test_a_privacy_url_that_is_no_url_or_path_is_an_error(settings, value, check_id):
    found = ids({"FROM_EMAIL": "a@b.com", "SITE_URL": "https://x", "PRIVACY_URL": value}, settings)
    assert found == {check_id}


def test_the_app_registers_its_checks_at_start_up():
    """The app's ready() imports checks.py for its side effect (registering the checks); a lint
    fix that drops the "unused" import would silence every check (it happened once, issue 23)."""
    from django.core.checks.registry import registry

    names = {f"{check.__module__}.{check.__name__}" for check in registry.get_checks()}
    assert "backpain_report.checks.check_settings" in names
