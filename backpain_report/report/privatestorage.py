"""The app's private file storage: cached report bodies and readers' stored PDFs.

Nothing here is ever meant to be served by a web server: a reader's PDF holds their name, and
only the download view (after checking the signed link) hands it out. The storage is

1. the ``STORAGES`` alias named by ``BACKPAIN_REPORT["PRIVATE_STORAGE"]``, if set;
2. else the ``"backpain_report"`` alias, if ``settings.STORAGES`` has one;
3. else :class:`PrivateStorage` in ``<temp dir>/backpain_report-<uid>``: mode 0700, files 0600,
   per host and cleaned with the temporary directory (W006 says so when ``DEBUG`` is off).

Everything stored is re-creatable (a missing file is rendered again), so losing the storage
costs renders, never data. File names are keyed hashes (HMAC with ``SECRET_KEY``), so even a
misconfigured public storage does not give away a guessable address.
"""

from __future__ import annotations

import os
import stat
import tempfile
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.utils.crypto import salted_hmac

from .. import conf
from ..config.storage import SITE_ALIAS, fallback_location

#: The ``STORAGES`` alias used when ``PRIVATE_STORAGE`` is not set and the site defines it.


class PrivateStorage(FileSystemStorage):
    """A file system storage with no URLs: files 0600, directories 0700 unless told otherwise.

    Use it for the ``"backpain_report"`` alias: ``{"BACKEND":
    "backpain_report.report.privatestorage.PrivateStorage", "OPTIONS": {"location":
    "/srv/private"}}``.
    """

    def __init__(
        self, location=None, file_permissions_mode=0o600, directory_permissions_mode=0o700
    ):
        if location is None:
            raise ImproperlyConfigured("PrivateStorage needs a location outside MEDIA_ROOT.")
        super().__init__(
            location=location,
            base_url=None,
            file_permissions_mode=file_permissions_mode,
            directory_permissions_mode=directory_permissions_mode,
        )

    @property
    def base_url(self) -> None:  # type: ignore[override]
        return None

    def url(self, name: str | None) -> str:
        raise ValueError("Files in the private storage have no URL.")


@cache
def _fallback_storage(location: str) -> PrivateStorage:
    os.makedirs(location, mode=0o700, exist_ok=True)
    info = os.lstat(location)
    ours = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    if not stat.S_ISDIR(info.st_mode) or not ours or info.st_mode & 0o077:
        # Someone else made (or opened up) the directory in the shared temp dir: do not use it.
        _fallback_storage.cache_clear()
        raise ImproperlyConfigured(
            f"{location} is not a private directory of this user; set "
            f"STORAGES[{SITE_ALIAS!r}] or BACKPAIN_REPORT['PRIVATE_STORAGE']."
        )
    return PrivateStorage(location=location)


def private_storage_alias() -> str | None:
    """The ``STORAGES`` alias in use, or None when the app's own fallback directory is used."""
    alias = conf.get("PRIVATE_STORAGE")
    if alias:
        return alias
    return SITE_ALIAS if SITE_ALIAS in settings.STORAGES else None


def private_storage() -> Storage:
    """The storage for the app's private files (see the module's docstring for which one)."""
    alias = private_storage_alias()
    if alias is not None:
        return storages[alias]
    return _fallback_storage(fallback_location())


def keyed_digest(purpose: str, value: str, length: int = 32) -> str:
    """A hex HMAC of ``value`` with ``SECRET_KEY``: a name nobody can guess without the key."""
    return salted_hmac(f"backpain_report.{purpose}", value, algorithm="sha256").hexdigest()[:length]


def keyed_digests(purpose: str, value: str, length: int = 32) -> list[str]:
    """:func:`keyed_digest` under ``SECRET_KEY`` and each of ``SECRET_KEY_FALLBACKS``.

    For finding files named before a key rotation (e.g. to delete them).
    """
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [
        salted_hmac(
            f"backpain_report.{purpose}", value, secret=secret, algorithm="sha256"
        ).hexdigest()[:length]
        for secret in secrets
    ]


def _makedirs(path: str, mode: int | None) -> None:
    """``os.makedirs`` that gives every level it creates ``mode`` (not only the last one)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        _makedirs(parent, mode)
    try:
        os.mkdir(path, 0o777 if mode is None else mode)
    except FileExistsError:
        return
    if mode is not None:
        os.chmod(path, mode)  # mkdir's mode is masked by the umask


def file_write(storage: Storage, name: str, data: bytes) -> None:
    """Store ``data`` as ``name`` so that nobody ever reads half a file.

    Names are derived from the content, so a file already there holds the same bytes. On a file
    system the bytes go to a temporary file renamed into place (two writers both succeed); object
    storage writes whole objects, and an existing one is kept.
    """
    if not isinstance(storage, FileSystemStorage):  # object storage: a PUT is atomic
        if not storage.exists(name):
            saved = storage.save(name, ContentFile(data))
            if saved != name:  # another writer stored the same name meanwhile: keep theirs
                storage.delete(saved)
        return
    final = storage.path(name)
    directory = os.path.dirname(final)
    _makedirs(directory, storage.directory_permissions_mode)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".part")  # created 0600
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        if storage.file_permissions_mode is not None:
            os.chmod(temporary, storage.file_permissions_mode)
        os.replace(temporary, final)
    except BaseException:
        os.unlink(temporary)
        raise
