"""The delivery pipeline through a real (in-process) Celery worker and the in-memory broker."""

import time

import pytest
from django.core import mail
from django.urls import reverse

from backpain_report.models import Delivery
from backpain_report.tasks import deliver_report, sweep_deliveries
from tests.samples import wait_for

# Seconds a test: round trips through a worker and a broker polled once a second, and ~4 s to
# stop the module's worker; `make test-fast` skips it.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.heavy]


def test_task_names_are_stable():
    assert deliver_report.name == "backpain_report.deliver_report"
    assert sweep_deliveries.name == "backpain_report.sweep_deliveries"
    assert deliver_report.acks_late and deliver_report.reject_on_worker_lost


def test_signup_is_delivered_by_the_worker(client, article, celery_worker):
    response = client.post(
        reverse("backpain_report:signup"),
        {"name": "Ann", "email": "ann@example.com", "consent": "on"},
    )
    assert response.status_code == 303
    assert wait_for(lambda: Delivery.objects.filter(status="sent").exists())
    delivery = Delivery.objects.get()
    assert delivery.attempts == 1 and delivery.message_id and delivery.enqueued_at
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ann@example.com"]


def test_rolled_back_signup_publishes_nothing(article, celery_worker):
    from django.db import transaction

    from backpain_report.services.subscribers import subscriber_signup

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        subscriber_signup(name="Ann", email="ann@example.com", article=article)
        raise Boom
    time.sleep(0.5)
    assert not Delivery.objects.exists() and not mail.outbox


def test_temporary_failure_is_retried_by_the_worker(
    make_delivery, celery_worker, scripted_mail, settings
):
    import smtplib

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "RETRY_BACKOFF": 0.2}
    scripted_mail.extend([smtplib.SMTPResponseException(451, b"busy")] * 2)
    delivery = make_delivery()
    deliver_report.delay(delivery.pk)
    assert wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, status="sent").exists())
    delivery.refresh_from_db()
    assert delivery.attempts == 3
    assert len(mail.outbox) == 1


def test_lost_message_is_recovered_by_the_sweep(make_delivery, celery_worker):
    delivery = make_delivery(publish_failed_at="2001-01-01T00:00:00Z")  # never published
    sweep_deliveries.delay()
    assert wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, status="sent").exists())
    assert len(mail.outbox) == 1


def test_a_batch_is_delivered_by_the_worker(make_delivery, celery_worker):
    from backpain_report.delivery.publishing import publish_batches

    deliveries = [make_delivery() for _ in range(3)]
    assert publish_batches([d.pk for d in deliveries]) == 3
    assert wait_for(lambda: Delivery.objects.filter(status="sent").count() == 3)
    assert len(mail.outbox) == 3
