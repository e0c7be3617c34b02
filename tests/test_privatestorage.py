"""The private storage: which one is used, that it has no URLs, and the checks that guard it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, storages

from backpain_report.checks import check_settings
from backpain_report.report import pdfcache, privatestorage
from backpain_report.report.privatestorage import PrivateStorage, file_write, private_storage
from tests.samples import make_report

# A production site: its privacy notice set (W007 is tested in test_checks.py).
APP = {"FROM_EMAIL": "a@example.com", "SITE_URL": "https://x.example", "PRIVACY_URL": "/privacy/"}


def private(location: Path) -> dict:
    return {
        "BACKEND": "backpain_report.report.privatestorage.PrivateStorage",
        "OPTIONS": {"location": str(location)},
    }


@pytest.fixture
def no_site_alias(settings, tmp_path, monkeypatch):
    """STORAGES without a "backpain_report" alias; the temp dir is this test's own."""
    settings.STORAGES = {k: v for k, v in settings.STORAGES.items() if k != "backpain_report"}
    monkeypatch.setattr(privatestorage.tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path


def ids(settings, **app) -> set[str]:
    """The check ids for ``APP`` + ``app`` (W003, a per-process throttle cache, filtered out)."""
    settings.BACKPAIN_REPORT = {**APP, **app}
    return {m.id for m in check_settings()} - {"backpain_report.W003"}


def test_the_sites_backpain_report_alias_is_used(settings):
    assert private_storage() is storages["backpain_report"]
    assert pdfcache.cache_storage() is storages["backpain_report"]


def test_private_storage_names_another_alias(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "vault": private(tmp_path)}
    settings.BACKPAIN_REPORT = {**APP, "PRIVATE_STORAGE": "vault"}
    assert private_storage() is storages["vault"]


def test_without_an_alias_a_private_temp_directory(no_site_alias):
    storage = private_storage()
    assert isinstance(storage, PrivateStorage)
    assert storage.location == str(no_site_alias / f"backpain_report-{privatestorage.os.getuid()}")
    file_write(storage, "backpain_report/readers/ab/x.pdf", b"%PDF-1.7")
    root = Path(storage.location)
    for folder in (root, root / "backpain_report", root / "backpain_report" / "readers"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    written = root / "backpain_report" / "readers" / "ab" / "x.pdf"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert not [p for p in written.parent.iterdir() if p.suffix == ".part"]


def test_a_temp_directory_someone_opened_up_is_refused(no_site_alias):
    location = Path(privatestorage.fallback_location())
    location.mkdir()
    location.chmod(0o777)
    with pytest.raises(ImproperlyConfigured, match="not a private directory"):
        private_storage()


def test_a_temp_directory_of_another_user_is_refused(no_site_alias, monkeypatch):
    location = Path(privatestorage.fallback_location())
    location.mkdir(mode=0o700)  # private, but made by this uid...
    real_uid = privatestorage.os.getuid()
    monkeypatch.setattr(privatestorage.os, "getuid", lambda: real_uid + 1)  # ...not the caller's
    monkeypatch.setattr(privatestorage, "fallback_location", lambda: str(location))
    with pytest.raises(ImproperlyConfigured, match="not a private directory"):
        private_storage()


def test_private_storage_has_no_urls(tmp_path):
    storage = PrivateStorage(location=str(tmp_path))
    assert storage.base_url is None
    with pytest.raises(ValueError, match="no URL"):
        storage.url("backpain_report/cache/x.pdf")


def test_the_body_cache_name_is_keyed_with_the_secret_key(settings):
    report = make_report()
    name = pdfcache.cache_name(report)
    settings.SECRET_KEY = "another-secret-key-for-this-test-only"
    assert pdfcache.cache_name(report) != name
    assert pdfcache.cache_name(report).startswith("backpain_report/cache/report-7-ed3-")


def test_tests_and_example_settings_pass_the_storage_checks(settings):
    assert ids(settings) == set()


@pytest.mark.parametrize("alias", ["default", "staticfiles"])
def test_a_public_storage_is_a_warning(settings, alias):
    assert "backpain_report.W005" in ids(settings, PRIVATE_STORAGE=alias)


def test_a_storage_with_a_base_url_is_a_warning(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "backpain_report": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path), "base_url": "/private/"},
        },
    }
    assert ids(settings) == {"backpain_report.W005"}
    assert isinstance(storages["backpain_report"], FileSystemStorage)


def test_a_private_storage_inside_media_root_is_a_warning(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.STORAGES = {**settings.STORAGES, "backpain_report": private(tmp_path / "private")}
    messages = [m for m in check_settings() if m.id == "backpain_report.W005"]
    assert messages and "inside MEDIA_ROOT" in messages[0].msg


def test_an_unknown_alias_is_an_error_not_a_warning(settings):
    assert ids(settings, PRIVATE_STORAGE="nope") == {"backpain_report.E015"}


def test_no_private_storage_in_production_is_a_warning(settings, no_site_alias):
    settings.DEBUG = False
    assert ids(settings) == {"backpain_report.W006"}
    settings.DEBUG = True
    assert ids(settings) == set()
