"""A demo site for ``backpain_report``: SQLite, a filesystem Celery broker and a local outbox.

The Celery app is imported here (the usual Django + Celery pattern) so that ``shared_task``
tasks bind to it whenever Django starts.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
