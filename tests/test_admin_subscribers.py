import datetime
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from backpain_report.admin.paginator import LargeTablePaginator
from backpain_report.models import Delivery, Subscriber

LIST = "admin:backpain_report_subscriber_changelist"
EXPORT = "admin:backpain_report_subscriber_export"


def staff(client, *codenames):
    user = User.objects.create_user(f"staff{len(codenames)}", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def rows(response) -> str:
    return response.content.decode()


def test_list_shows_the_last_delivery_status_without_n_plus_1(
    admin_client, make_subscriber, make_delivery, django_assert_max_num_queries
):
    for _ in range(30):
        make_delivery(status=Delivery.Status.SENT)
    ann = make_subscriber(email="ann@example.com", name="Ann Lee")
    make_delivery(ann, status=Delivery.Status.SENT)
    Delivery.objects.create(
        subscriber=ann, report=ann.source_article.report, edition=1, reason="resend",
        status=Delivery.Status.FAILED,
    )  # fmt: skip
    with django_assert_max_num_queries(8):
        html = rows(admin_client.get(reverse(LIST)))
    assert "Ann Lee" in html and "Failed" in html
    assert html.count("<tr") >= 32


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"confirmed": "yes"}, {"conf"}),
        ({"confirmed": "no"}, {"plain", "gone", "failing"}),
        ({"unsubscribed": "yes"}, {"gone"}),
        ({"unsubscribed": "no"}, {"conf", "plain", "failing"}),
        ({"last_status": "failed"}, {"failing"}),
        ({"last_status": "sent"}, {"conf"}),
        ({"last_status": "pending"}, {"plain"}),
        ({"created_at_from": "2020-01-01", "created_at_to": "2020-01-31"}, {"plain"}),
        ({"created_at_from": "2020-02-01"}, {"conf", "gone", "failing"}),
    ],
)
def test_filters(admin_client, make_subscriber, make_delivery, params, expected):
    now = timezone.now()
    conf = make_subscriber(name="conf", confirmed_at=now)
    plain = make_subscriber(name="plain")
    make_subscriber(name="gone", unsubscribed_at=now)
    failing = make_subscriber(name="failing")
    make_delivery(conf, status=Delivery.Status.SENT)
    make_delivery(plain, status=Delivery.Status.PENDING)
    make_delivery(failing, status=Delivery.Status.SENT)
    Delivery.objects.create(
        subscriber=failing, report=failing.source_article.report, edition=1, reason="resend",
        status=Delivery.Status.FAILED,
    )  # fmt: skip
    Subscriber.objects.filter(pk=plain.pk).update(
        created_at=datetime.datetime(2020, 1, 15, tzinfo=datetime.timezone.utc)
    )
    html = rows(admin_client.get(reverse(LIST), params))
    shown = {name for name in ("conf", "plain", "gone", "failing") if f">{name}<" in html}
    assert shown == expected, params


def test_bad_date_range_is_refused_calmly(admin_client, make_subscriber):
    make_subscriber()
    response = admin_client.get(reverse(LIST), {"created_at_from": "not-a-date"})
    assert response.status_code == 302 and "e=1" in response["Location"]


def test_search_by_exact_address_uses_the_canonical_form(
    admin_client, make_subscriber, django_assert_max_num_queries
):
    make_subscriber(email="ann.lee@example.com", name="Ann Lee")
    make_subscriber(email="ann.leeds@example.com", name="Other")
    with django_assert_max_num_queries(8) as captured:
        html = rows(admin_client.get(reverse(LIST), {"q": " Ann.Lee@EXAMPLE.com "}))
    assert "Ann Lee" in html and "Other" not in html
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert '"email_canonical" = ' in sql and "LIKE" not in sql
    html = rows(admin_client.get(reverse(LIST), {"q": "Lee"}))
    assert "ann.lee@example.com" in html
    html = rows(admin_client.get(reverse(LIST), {"q": "ann.leed"}))
    assert "Other" in html and "Ann Lee" not in html
    html = rows(admin_client.get(reverse(LIST), {"q": "nobody@example.com"}))
    assert "0 subscribers" in html


def test_change_page_shows_consent_and_the_delivery_timeline(admin_client, make_delivery):
    now = timezone.now()
    delivery = make_delivery(
        status=Delivery.Status.SENT, attempts=2, last_error="SMTP 451 <busy>",
        sent_at=now, downloaded_at=now, claimed_at=now, enqueued_at=now,
    )  # fmt: skip
    url = reverse("admin:backpain_report_subscriber_change", args=[delivery.subscriber.pk])
    html = rows(admin_client.get(url))
    assert "Consent record" in html and "Delivery timeline" in html
    for event in ("Signed up", "Created", "Queued for the worker", "Sending", "Last error",
                  "Sent", "Downloaded"):  # fmt: skip
        assert f">{event}<" in html or f"<strong>{event}</strong>" in html, event
    assert "SMTP 451 &lt;busy&gt;" in html


def test_paginator_caps_filtered_counts_and_counts_small_tables(make_subscriber):
    for _ in range(5):
        make_subscriber()
    paginator = LargeTablePaginator(Subscriber.objects.order_by("pk"), 2)
    assert paginator.count == 5 and not paginator.count_is_estimate
    capped = LargeTablePaginator(Subscriber.objects.filter(pk__gt=0).order_by("pk"), 2)
    capped.count_cap = 3
    assert capped.count == 3 and capped.count_is_capped
    assert len(capped.page(2).object_list) == 1


def test_capped_count_shows_as_more_than(admin_client, make_subscriber, monkeypatch):
    monkeypatch.setattr(LargeTablePaginator, "count_cap", 2)
    for _ in range(4):
        make_subscriber()
    html = rows(admin_client.get(reverse(LIST), {"unsubscribed": "no"}))
    assert "more than 2 subscribers" in html


# --- export --------------------------------------------------------------------------------


def test_export_button_and_url_need_the_export_permission(client, make_subscriber):
    make_subscriber(email="ann@example.com")
    staff(client, "view_subscriber")
    html = rows(client.get(reverse(LIST)))
    assert reverse(EXPORT) not in html
    assert "export_csv" not in html and "export_data" not in html
    assert client.get(reverse(EXPORT)).status_code == 403
    response = client.post(
        reverse(LIST),
        {"action": "export_csv", "_selected_action": [Subscriber.objects.get().pk]},
    )
    assert not response.streaming and "text/csv" not in response["Content-Type"]


def test_export_needs_view_permission_too(client, make_subscriber):
    staff(client, "export_subscriber")
    assert client.get(reverse(EXPORT)).status_code == 403


def test_export_of_the_filtered_list(client, make_subscriber):
    now = timezone.now()
    make_subscriber(email="ann@example.com", name="Ann", confirmed_at=now)
    make_subscriber(email="bob@example.com", name="Bob")
    make_subscriber(email="cat@example.com", name="=HYPERLINK()", confirmed_at=now)
    staff(client, "view_subscriber", "export_subscriber")
    html = rows(client.get(reverse(LIST), {"confirmed": "yes"}))
    assert f'href="{reverse(EXPORT)}?confirmed=yes"' in html
    response = client.get(reverse(EXPORT), {"confirmed": "yes"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("email,name,source_article,signed_up_at")
    assert sorted(line.split(",")[0] for line in lines[1:]) == [
        "ann@example.com",
        "cat@example.com",
    ]
    assert "'=HYPERLINK()" in lines[1] + lines[2]
    searched = client.get(reverse(EXPORT), {"q": "bob@example.com"})
    assert len(b"".join(searched.streaming_content).decode().splitlines()) == 2


def test_export_selected_action(client, make_subscriber):
    ann = make_subscriber(email="ann@example.com")
    make_subscriber(email="bob@example.com")
    staff(client, "view_subscriber", "export_subscriber")
    response = client.post(reverse(LIST), {"action": "export_csv", "_selected_action": [ann.pk]})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 2 and lines[1].startswith("ann@example.com,")


def test_erase_action_needs_delete_permission(client, make_subscriber):
    ann = make_subscriber(name="Ann")
    staff(client, "view_subscriber", "change_subscriber")
    assert "erase_data" not in rows(client.get(reverse(LIST)))
    client.post(reverse(LIST), {"action": "erase_data", "_selected_action": [ann.pk]})
    ann.refresh_from_db()
    assert ann.name == "Ann"


def test_list_shows_what_an_owner_scans_first(admin_client, make_subscriber, settings):
    """Address and name in one cell, the state in a word, the sign-up date that never wraps;
    the article and consent details stay on the subscriber's page."""
    from backpain_report.admin.subscribers import SubscriberAdmin, subscriber_state

    now = timezone.now()
    make_subscriber(email="ann@example.com", name="Ann Lee", confirmed_at=now)
    make_subscriber(email="bob@example.com", name="Bob", unsubscribed_at=now)
    html = admin_client.get(reverse("admin:backpain_report_subscriber_changelist")).content
    html = html.decode()
    assert SubscriberAdmin.list_display[:2] == ["subscriber", "state"]  # then issue 22's columns
    assert 'ann@example.com<span class="backpain-quiet">Ann Lee</span>' in html
    assert ">Confirmed<" in html and ">Unsubscribed<" in html
    assert re.search(r'<time class="backpain-date" datetime="[^"]+" title="[^"]+">\d', html)
    assert "backpain_report/css/admin.css" in html
    plain = make_subscriber()
    assert subscriber_state(plain, double_opt_in=False) == "Subscribed"
    assert subscriber_state(plain, double_opt_in=True) == "Not confirmed"


@pytest.mark.django_db
def test_the_consent_record_shows_where_the_reader_came_from(admin_client, make_subscriber):
    subscriber = make_subscriber(email="utm@example.com")
    Subscriber.objects.filter(pk=subscriber.pk).update(
        utm_source="newsletter",
        utm_medium="email",
        utm_campaign="spring",
        referrer_host="forum.example.net",
    )
    page = admin_client.get(
        reverse("admin:backpain_report_subscriber_change", args=[subscriber.pk])
    )
    html = page.content.decode()
    for value in ("newsletter", "spring", "forum.example.net"):
        assert value in html


# --- issue 22, item 12: a list an owner can scan ------------------------------------------


def _report_delivery(subscriber, status, **fields):
    return Delivery.objects.create(
        subscriber=subscriber, report=subscriber.source_article.report, edition=1,
        status=status, **fields,
    )  # fmt: skip


def test_list_shows_sign_up_time_source_report_status_and_language(
    admin_client, make_subscriber, django_assert_max_num_queries
):
    """The columns an owner scans: when (date and time), where from, whether the report went
    out (a confirmation request is not the report) and in which language; no query per row."""
    from backpain_report.admin.subscribers import SubscriberAdmin

    sent = make_subscriber(name="sent", utm_source="newsletter", utm_medium="email",
                           language="de")  # fmt: skip
    failed = make_subscriber(name="failed", referrer_host="forum.example.net")
    waiting = make_subscriber(name="waiting")
    _report_delivery(sent, Delivery.Status.SENT)
    _report_delivery(failed, Delivery.Status.FAILED)
    _report_delivery(waiting, Delivery.Status.PENDING)
    # A confirmation sent after the report does not make the report "sent".
    _report_delivery(failed, Delivery.Status.SENT, kind=Delivery.Kind.CONFIRMATION,
                     reason=Delivery.Reason.RESEND)  # fmt: skip
    for _ in range(20):
        _report_delivery(make_subscriber(), Delivery.Status.SENT)
    assert SubscriberAdmin.list_display == [
        "subscriber", "state", "report_status", "source", "language_cell", "signed_up",
    ]  # fmt: skip
    with django_assert_max_num_queries(8):
        html = rows(admin_client.get(reverse(LIST)))

    def row(name: str) -> str:
        return next(r for r in html.split("<tr")[1:] if f">{name}<" in r)

    assert ">Sent<" in row("sent") and ">newsletter<" in row("sent") and ">de<" in row("sent")
    assert ">Failed<" in row("failed") and ">forum.example.net<" in row("failed")
    assert ">Waiting<" in row("waiting") and ">(direct)<" in row("waiting")
    assert ">en<" in row("waiting")  # blank: the site's language
    local = timezone.localtime(Subscriber.objects.get(name="waiting").created_at)
    assert f">{local:%H:%M}<" in row("waiting")  # the time under the date
    for header in ("Report", "Source", "Language", "Signed up"):
        assert f">{header}</" in html, header


def test_report_status_words():
    from backpain_report.admin.subscribers import report_status_label

    assert report_status_label("sent") == "Sent"
    assert report_status_label("failed") == "Failed"
    assert report_status_label("pending") == "Waiting"
    assert report_status_label("sending") == "Waiting"
    assert report_status_label("cancelled") == "Cancelled"
    assert report_status_label(None) == "—"


ADMIN_PAGES = [
    "admin:backpain_report_subscriber_changelist",
    "admin:backpain_report_delivery_changelist",
    "admin:backpain_report_pendingsignup_changelist",
    "admin:backpain_report_article_changelist",
    "admin:backpain_report_report_changelist",
]


def _labels(html: str) -> list[str]:
    """Column headers, filter titles, fieldset field labels and readonly labels of a page."""
    found = re.findall(r"<th[^>]*>\s*(?:<div[^>]*>)?\s*(?:<a[^>]*>)?([^<]+)<", html)
    found += re.findall(r"<summary>\s*([^<]+)<", html)
    found += re.findall(r"<label[^>]*>([^<]+)<", html)
    found += re.findall(r'data-filter-title="([^"]+)"', html)
    return [label.strip() for label in found if label.strip()]


@pytest.mark.parametrize("name", ADMIN_PAGES)
def test_no_label_is_an_auto_generated_field_name(admin_client, make_delivery, name):
    """Every column, filter and field label reads as words ("UTM source", not "Utm_source")."""
    delivery = make_delivery(status=Delivery.Status.SENT)
    url = reverse(name)
    pages = [admin_client.get(url).content.decode()]
    if "subscriber" in name:
        pages.append(
            admin_client.get(
                reverse("admin:backpain_report_subscriber_change", args=[delivery.subscriber_id])
            ).content.decode()
        )
    labels = [label for html in pages for label in _labels(html)]
    assert labels
    ugly = [label for label in labels if re.search(r"[a-z]_[a-z]", label) or "Utm" in label]
    assert not ugly, ugly


def test_source_fields_are_labelled_utm():
    from backpain_report.models import PendingSignup

    for model in (Subscriber, PendingSignup):
        names = {f.name: str(f.verbose_name) for f in model._meta.fields}
        assert names["utm_source"] == "UTM source"
        assert names["utm_medium"] == "UTM medium"
        assert names["utm_campaign"] == "UTM campaign"


def test_source_article_filter_names_its_empty_choice(admin_client, make_subscriber):
    """The "no article" choice has a name (it was a bare "-") and lists only those readers."""
    make_subscriber(name="with")
    make_subscriber(name="without", source_article=None)
    html = rows(admin_client.get(reverse(LIST)))
    block = html.split('data-filter-title="source article"')[1].split("</details>")[0]
    choices = [c.strip() for c in re.findall(r"<a [^>]*>([^<]*)</a>", block)]
    assert all(c and c not in {"-", "—"} for c in choices), choices
    assert "(no article)" in choices
    link = re.search(r'<a href="(\?[^"]*)"[^>]*>\(no article\)</a>', block)[1]
    filtered = rows(admin_client.get(reverse(LIST) + link.replace("&amp;", "&")))
    assert ">without<" in filtered and ">with<" not in filtered
