"""The Celery app of the test "site", configured like a site configures its own."""

from celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["backpain_report"])
