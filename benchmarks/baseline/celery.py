"""The baseline site's Celery app: same broker as the example site, a queue of its own."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.baseline.settings")

app = Celery("baseline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
