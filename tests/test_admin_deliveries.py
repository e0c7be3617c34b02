from django.contrib.auth.models import Permission, User
from django.urls import reverse

from backpain_report.models import Delivery
from backpain_report.services.deliveries import deliveries_cancel_pending

LIST = "admin:backpain_report_delivery_changelist"


def staff(client, *codenames):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)


def test_list_has_no_n_plus_1(admin_client, make_delivery, django_assert_max_num_queries):
    for _ in range(40):
        make_delivery(last_error="SMTP 451 " + "x" * 100)
    with django_assert_max_num_queries(8):
        html = admin_client.get(reverse(LIST)).content.decode()
    assert html.count("SMTP 451") >= 40 and "…" in html


def test_cancel_pending_cancels_only_pending(make_delivery):
    pending = make_delivery(status=Delivery.Status.PENDING)
    sending = make_delivery(status=Delivery.Status.SENDING)
    sent = make_delivery(status=Delivery.Status.SENT)
    assert deliveries_cancel_pending(Delivery.objects.all()) == 1
    statuses = {d.pk: d.status for d in Delivery.objects.all()}
    assert statuses == {pending.pk: "cancelled", sending.pk: "sending", sent.pk: "sent"}
    assert Delivery.objects.get(pk=pending.pk).last_error == "Cancelled by staff."


def test_cancel_pending_action(admin_client, make_delivery):
    pending = make_delivery(status=Delivery.Status.PENDING)
    response = admin_client.post(
        reverse(LIST), {"action": "cancel_pending", "_selected_action": [pending.pk]}, follow=True
    )
    assert "Cancelled 1 pending delivery." in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == Delivery.Status.CANCELLED


def test_a_cancelled_delivery_is_never_claimed(make_delivery):
    from backpain_report.delivery.sending import delivery_claim

    pending = make_delivery(status=Delivery.Status.PENDING)
    deliveries_cancel_pending(Delivery.objects.filter(pk=pending.pk))
    assert delivery_claim(delivery_id=pending.pk) is None


def test_view_only_staff_sees_no_action_and_cannot_call_them(client, make_delivery, no_broker):
    failed = make_delivery(status=Delivery.Status.FAILED)
    pending = make_delivery(status=Delivery.Status.PENDING)
    staff(client, "view_delivery")
    html = client.get(reverse(LIST)).content.decode()
    for action in ("resend_report", "retry_failed", "cancel_pending", "revoke_links"):
        assert f'value="{action}"' not in html
        client.post(reverse(LIST), {"action": action, "_selected_action": [failed.pk, pending.pk]})
    assert {d.status for d in Delivery.objects.all()} == {"failed", "pending"}
    assert Delivery.objects.count() == 2 and not no_broker


def test_change_permission_allows_cancel_but_not_resend(client, make_delivery, no_broker):
    pending = make_delivery(status=Delivery.Status.PENDING)
    staff(client, "view_delivery", "change_delivery")
    html = client.get(reverse(LIST)).content.decode()
    assert 'value="cancel_pending"' in html and 'value="resend_report"' not in html
    client.post(reverse(LIST), {"action": "resend_report", "_selected_action": [pending.pk]})
    assert Delivery.objects.count() == 1


def test_filters_and_exact_search(admin_client, make_subscriber, make_delivery):
    ann = make_subscriber(email="ann@example.com")
    make_delivery(ann, status=Delivery.Status.FAILED, last_error="bounced-ann")
    make_delivery(status=Delivery.Status.SENT, last_error="other-reader", message_id="<m1@x>")
    url = reverse(LIST)
    for params, shown, hidden in [
        ({"status__exact": "failed"}, "bounced-ann", "other-reader"),
        ({"q": "ANN@example.com"}, "bounced-ann", "other-reader"),
        ({"q": "<m1@x>"}, "other-reader", "bounced-ann"),
        ({"kind__exact": "report", "reason__exact": "signup"}, "bounced-ann", None),
        ({"created_at_from": "2000-01-01"}, "bounced-ann", None),
    ]:
        html = admin_client.get(url, params).content.decode()
        assert shown in html, params
        assert hidden is None or hidden not in html, params


def test_list_shows_who_status_error_and_when(admin_client, make_delivery):
    """Five columns that fit a 1280 px screen; a long error is cut (whole in its tooltip)."""
    from backpain_report.admin.deliveries import DeliveryAdmin

    error = "SMTP 550: " + "x" * 200
    make_delivery(status=Delivery.Status.FAILED, attempts=5, last_error=error)
    html = admin_client.get(reverse("admin:backpain_report_delivery_changelist")).content
    html = html.decode()
    assert len(DeliveryAdmin.list_display) == 5
    assert "Failed<span" in html and "5 attempts" in html
    assert 'Report<span class="backpain-quiet">Sign-up</span>' in html  # what, and why
    assert f'title="{error}"' in html and error[:80] + "…" in html
    assert 'class="backpain-date"' in html


# --- issue 22, item 14: the delivery page shows what matters for its state ----------------


def _delivery_page(admin_client, delivery) -> str:
    url = reverse("admin:backpain_report_delivery_change", args=[delivery.pk])
    return admin_client.get(url).content.decode()


def _field_labels(html: str) -> set[str]:
    import re

    return {label.rstrip(":") for label in re.findall(r"<label>([^<]+)</label>", html)}


def test_a_sent_delivery_page_shows_when_and_what_was_sent_and_no_empty_field(
    admin_client, make_delivery
):
    from django.utils import timezone

    now = timezone.now()
    sent = make_delivery(
        status=Delivery.Status.SENT, attempts=1, sent_at=now, claimed_at=now, enqueued_at=now,
        message_id="<abc@example.com>",
    )  # fmt: skip
    html = _delivery_page(admin_client, sent)
    labels = _field_labels(html)
    assert {"Status", "Sent", "Message-ID", "First downloaded"} <= labels
    assert not labels & {"Last error", "Next attempt", "Publish failed"}, labels
    assert 'id="delivery-summary"' in html and "Sent on" in html


def test_a_failed_delivery_page_leads_with_the_error(admin_client, make_delivery):
    failed = make_delivery(status=Delivery.Status.FAILED, attempts=5, last_error="SMTP 550 <no>")
    html = _delivery_page(admin_client, failed)
    labels = _field_labels(html)
    assert {"Status", "Attempts", "Last error"} <= labels
    assert not labels & {"Sent", "Message-ID", "First downloaded", "Next attempt"}, labels
    summary = html.split('id="delivery-summary"')[1].split("</div>")[0]
    assert "Failed after 5 attempts" in summary and "SMTP 550 &lt;no&gt;" in summary


def test_a_pending_delivery_page_says_when_it_is_tried_next(admin_client, make_delivery):
    from django.utils import timezone

    later = timezone.now() + timezone.timedelta(minutes=5)
    pending = make_delivery(status=Delivery.Status.PENDING, attempts=1, next_attempt_at=later,
                            last_error="SMTP 451 busy")  # fmt: skip
    html = _delivery_page(admin_client, pending)
    labels = _field_labels(html)
    assert {"Next attempt", "Last error"} <= labels
    assert not labels & {"Sent", "Message-ID", "First downloaded"}, labels
    assert "Waiting" in html.split('id="delivery-summary"')[1].split("</div>")[0]
