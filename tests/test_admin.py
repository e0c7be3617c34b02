import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from backpain_report.models import Delivery


@pytest.mark.parametrize(
    "name",
    [
        "backpain_report_article_changelist",
        "backpain_report_report_changelist",
        "backpain_report_subscriber_changelist",
        "backpain_report_delivery_changelist",
    ],
)
def test_changelists_load(admin_client, make_delivery, name):
    make_delivery()
    assert admin_client.get(reverse(f"admin:{name}")).status_code == 200


def test_change_pages_load(admin_client, make_delivery, article):
    delivery = make_delivery(last_error="SMTP 451: busy")
    for url in [
        reverse("admin:backpain_report_subscriber_change", args=[delivery.subscriber.pk]),
        reverse("admin:backpain_report_delivery_change", args=[delivery.pk]),
        reverse("admin:backpain_report_article_change", args=[article.pk]),
        reverse("admin:backpain_report_report_change", args=[article.report.pk]),
    ]:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        if "delivery" in url:
            assert "SMTP 451: busy" in response.content.decode()


def test_search_and_filters(admin_client, make_subscriber, make_delivery):
    ann = make_subscriber(email="ann@example.com", name="Ann Lee")
    make_delivery(ann, status=Delivery.Status.FAILED, last_error="SMTP 550: no such user")
    make_delivery()
    url = reverse("admin:backpain_report_subscriber_changelist")
    html = admin_client.get(url, {"q": "ann@example.com"}).content.decode()
    assert "Ann Lee" in html and "Reader" not in html
    html = admin_client.get(url, {"q": "Lee"}).content.decode()
    assert "ann@example.com" in html
    url = reverse("admin:backpain_report_delivery_changelist")
    html = admin_client.get(url, {"status__exact": "failed"}).content.decode()
    assert "SMTP 550: no such user" in html and "1 delivery" in html


def test_names_are_escaped_in_the_admin(admin_client, make_subscriber):
    make_subscriber(name="<script>alert(1)</script>")
    html = admin_client.get(reverse("admin:backpain_report_subscriber_changelist")).content
    assert b"<script>alert(1)</script>" not in html


def test_resend_action_creates_a_second_delivery(
    admin_client, make_delivery, no_broker, django_capture_on_commit_callbacks
):
    delivery = make_delivery(status=Delivery.Status.SENT)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:backpain_report_subscriber_changelist"),
            {"action": "resend_report", "_selected_action": [delivery.subscriber.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert "Queued a new delivery for 1 subscriber." in response.content.decode()
    deliveries = Delivery.objects.filter(subscriber=delivery.subscriber).order_by("pk")
    assert [d.reason for d in deliveries] == ["signup", "resend"]
    assert no_broker == [deliveries[1].pk]


def test_resend_from_the_delivery_list(
    admin_client, make_delivery, no_broker, django_capture_on_commit_callbacks
):
    delivery = make_delivery(status=Delivery.Status.SENT)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:backpain_report_delivery_changelist"),
            {"action": "resend_report", "_selected_action": [delivery.pk]},
        )
    assert Delivery.objects.filter(subscriber=delivery.subscriber).count() == 2


def test_retry_failed_action(
    admin_client, make_delivery, no_broker, django_capture_on_commit_callbacks
):
    failed = make_delivery(status=Delivery.Status.FAILED, attempts=5)
    sent = make_delivery(status=Delivery.Status.SENT)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:backpain_report_delivery_changelist"),
            {"action": "retry_failed", "_selected_action": [failed.pk, sent.pk]},
        )
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 0)
    assert no_broker == [failed.pk]


def test_staff_without_permission_cannot_resend(client, make_delivery, no_broker):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_subscriber"]))
    client.force_login(user)
    url = reverse("admin:backpain_report_subscriber_changelist")
    delivery = make_delivery()
    assert "resend_report" not in client.get(url).content.decode()
    client.post(url, {"action": "resend_report", "_selected_action": [delivery.subscriber.pk]})
    assert Delivery.objects.count() == 1 and not no_broker
