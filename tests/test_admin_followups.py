"""The follow-up steps in the admin: the list, the preview as the reader sees it, "send a test to
me", the on/off switch, editions; the funnel's per-step rows; the subscriber's timeline."""

from __future__ import annotations

import datetime
import html
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backpain_report import stats
from backpain_report.models import Delivery, FollowUpStep, Report

LIST = "admin:backpain_report_followupstep_changelist"
CHANGE = "admin:backpain_report_followupstep_change"
SEND_TEST = "admin:backpain_report_followupstep_send_test"
FUNNEL = "admin:backpain_report_pageview_changelist"


@pytest.fixture(autouse=True)
def no_bundled_steps(report):
    """These tests make their own steps: the seed's bundled ones (tests/conftest.py seeds the
    content) would mix into the lists and counts."""
    FollowUpStep.objects.all().delete()


@pytest.fixture
def make_step(report):
    def make(**fields) -> FollowUpStep:
        defaults = {
            "report": report,
            "language": "en",
            "position": 1,
            "delay_days": 2,
            "subject": "Using the plan",
            "body": "## The plan\n\nUse the **diary** every evening.",
        }
        return FollowUpStep.objects.create(**{**defaults, **fields})

    return make


@pytest.fixture
def followup(make_subscriber):
    """A follow-up delivery of ``step`` to a new (or given) reader."""

    def make(step: FollowUpStep, subscriber=None, **fields) -> Delivery:
        return Delivery.objects.create(
            subscriber=subscriber or make_subscriber(followups_consented=True),
            report=step.report,
            step=step,
            kind=Delivery.Kind.FOLLOWUP,
            edition=fields.pop("edition", step.edition),
            **fields,
        )

    return make


def staff(client, *codenames, email="editor@example.com") -> User:
    user = User.objects.create_user("staff", email=email, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def step_form(step: FollowUpStep, **changes) -> dict:
    data = {
        "report": step.report_id,
        "language": step.language,
        "position": step.position,
        "delay_days": step.delay_days,
        "subject": step.subject,
        "body": step.body,
        "is_active": "on" if step.is_active else "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def _sent() -> dict:
    return {"status": Delivery.Status.SENT, "sent_at": timezone.now()}


def test_list_shows_each_steps_columns_and_counts_in_one_query(admin_client, make_step, followup):
    first = make_step(subject="Day two: the plan")
    for _ in range(3):
        followup(first, **_sent())
    followup(first, status=Delivery.Status.FAILED, last_error="550 no such user")
    url = reverse(LIST)
    with CaptureQueriesContext(connection) as one:
        page = admin_client.get(url).content.decode()
    row = page.split("Day two: the plan", 1)[1].split("</tr>", 1)[0]
    cells = [html.unescape(c.split(">", 1)[1].split("<", 1)[0]) for c in row.split("<td")[1:]]
    # (the step: position, subject, report) language, day, active (icon), edition, sent, failed
    assert cells[:2] == ["en", "2"] and cells[-3:] == ["1", "3", "1"]
    assert "icon-yes.svg" in row
    step_cell = page.split('<th class="field-step">', 1)[1].split("</th>", 1)[0]
    assert "1. Day two: the plan" in step_cell and first.report.title in step_cell

    for n in range(2, 7):  # five more steps, each with its deliveries: no more queries
        step = make_step(position=n, subject=f"Step {n}", language="de" if n % 2 else "")
        followup(step, **_sent())
        followup(step, status=Delivery.Status.FAILED)
    with CaptureQueriesContext(connection) as six:
        page = admin_client.get(url).content.decode()
    assert len(six) == len(one)
    assert "every language" in page


def test_report_page_has_the_switch_its_help_and_the_steps(admin_client, report, make_step):
    make_step(subject="Day two: the plan")
    page = admin_client.get(reverse("admin:backpain_report_report_change", args=[report.pk]))
    text = page.content.decode()
    assert 'name="followups_enabled"' in text
    assert "Off: no follow-up is sent and the form does not ask for them." in text
    assert "Day two: the plan" in text  # the steps, listed
    assert f"/admin/backpain_report/followupstep/add/?report={report.pk}" in text


def test_report_switch_saves(admin_client, report):
    url = reverse("admin:backpain_report_report_change", args=[report.pk])
    data = {
        "title": report.title,
        "subtitle": report.subtitle,
        "slug": report.slug,
        "author": report.author,
        "template_name": report.template_name,
        "body": report.body,
        "followups_enabled": "on",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    report.refresh_from_db()
    assert report.followups_enabled


def test_preview_shows_html_and_text_in_the_steps_language_with_the_unsubscribe_link(
    admin_client, make_step
):
    step = make_step(language="de", subject="Wie geht es Ihrem Rücken?", body="## Hallo\n\nText.")
    page = admin_client.get(reverse(CHANGE, args=[step.pk])).content.decode()
    srcdoc = html.unescape(page.split('srcdoc="', 1)[1].split('"', 1)[0])
    text = html.unescape(page.split('id="followup-preview-text"', 1)[1].split("</pre>", 1)[0])
    assert 'sandbox=""' in page
    assert '<html lang="de"' in srcdoc and "Hallo</h2>" in srcdoc
    assert "/unsubscribe/" in srcdoc and "/unsubscribe/" in text
    assert "Sam Sample" in srcdoc and "Sam Sample" in text
    assert "Wie geht es Ihrem Rücken?" in page
    assert "Abmelden" in srcdoc  # the email's own words in German
    english = make_step(language="en", position=2, subject="How is your back?")
    page = admin_client.get(reverse(CHANGE, args=[english.pk])).content.decode()
    srcdoc = html.unescape(page.split('srcdoc="', 1)[1].split('"', 1)[0])
    assert '<html lang="en"' in srcdoc and "Unsubscribe" in srcdoc


def test_preview_is_the_real_email(make_step, followup):
    """The preview and a reader's email are built alike: the same body, but the reader's name
    and links."""
    from backpain_report.delivery.emails import build_followup_email
    from backpain_report.services.followup_samples import followup_sample

    step = make_step(body="## Heading\n\nA [source](https://www.nhs.uk/).")
    delivery = followup(step)
    real = build_followup_email(delivery=delivery, message_id="<1.a@example.com>")
    sample = followup_sample(step=step)
    assert sample.subject == real.subject
    real_html = next(body for body, mime in real.alternatives if mime == "text/html")
    assert 'href="https://www.nhs.uk/"' in real_html and 'href="https://www.nhs.uk/"' in sample.html


def test_send_a_test_to_me_sends_one_email_and_records_no_delivery(client, make_step):
    staff(client, "view_followupstep", "change_followupstep")
    step = make_step()
    before = Delivery.objects.count()
    response = client.post(reverse(SEND_TEST, args=[step.pk]), follow=True)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["editor@example.com"]
    assert message.subject == step.subject
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert Delivery.objects.count() == before
    assert "A test of this email was sent to editor@example.com." in response.content.decode()


def test_send_a_test_without_an_email_address_says_so(client, make_step):
    staff(client, "view_followupstep", "change_followupstep", email="")
    step = make_step()
    response = client.post(reverse(SEND_TEST, args=[step.pk]), follow=True)
    assert not mail.outbox
    assert "Your staff account has no email address" in response.content.decode()


def test_send_a_test_needs_post(admin_client, make_step):
    step = make_step()
    assert admin_client.get(reverse(SEND_TEST, args=[step.pk])).status_code == 405
    assert not mail.outbox


def test_view_only_staff_cannot_send_tests_or_change_steps(client, make_step):
    staff(client, "view_followupstep")
    step = make_step()
    page = client.get(reverse(CHANGE, args=[step.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="send-test-email"' not in text
    assert 'id="followup-preview-html"' in text  # the preview is there to read
    assert client.post(reverse(SEND_TEST, args=[step.pk])).status_code == 403
    assert not mail.outbox
    response = client.post(reverse(CHANGE, args=[step.pk]), step_form(step, subject="Changed"))
    assert response.status_code == 403
    step.refresh_from_db()
    assert step.subject == "Using the plan"


def test_switching_a_step_off_pauses_it_and_on_resumes_it(admin_client, make_step):
    step = make_step()
    url = reverse(CHANGE, args=[step.pk])
    assert admin_client.post(url, step_form(step, is_active="")).status_code == 302
    step.refresh_from_db()
    assert not step.is_active and step.paused_at is not None
    assert admin_client.post(url, step_form(step, is_active="on")).status_code == 302
    step.refresh_from_db()
    assert step.is_active and step.paused_at is None


def test_editing_a_step_that_went_out_makes_an_edition_and_says_so(
    admin_client, make_step, followup
):
    step = make_step()
    followup(step, **_sent())
    url = reverse(CHANGE, args=[step.pk])
    response = admin_client.post(url, step_form(step, body="## New text"), follow=True)
    text = response.content.decode()
    step.refresh_from_db()
    assert step.edition == 2
    assert "the change is edition 2" in text
    page = admin_client.get(url).content.decode()
    assert "1 reader got an earlier edition." in page
    assert step.editions.get(edition=1).body.startswith("## The plan")


def test_editing_a_step_nobody_got_keeps_its_edition(admin_client, make_step):
    step = make_step()
    admin_client.post(reverse(CHANGE, args=[step.pk]), step_form(step, body="## Changed"))
    step.refresh_from_db()
    assert step.edition == 1 and step.body == "## Changed"


def test_add_page_proposes_the_next_position(admin_client, report, make_step):
    make_step(position=1)
    make_step(position=2, subject="Two")
    page = admin_client.get(
        reverse("admin:backpain_report_followupstep_add") + f"?report={report.pk}"
    )
    assert 'name="position" value="3"' in page.content.decode()


def _funnel_fixture(make_step, followup, make_subscriber):
    """Two steps. A: step 1 sent, then unsubscribed. B: steps 1 and 2 sent, then
    unsubscribed. C: step 1 failed. D: step 1 sent, still subscribed. E: unsubscribed with no
    follow-up."""
    now = timezone.now()
    hours = datetime.timedelta(hours=1)
    one = make_step(position=1, delay_days=2, subject="Day two")
    two = make_step(position=2, delay_days=7, subject="Day seven")
    a = make_subscriber(followups_consented=True)
    followup(one, a, status=Delivery.Status.SENT, sent_at=now - 5 * hours)
    b = make_subscriber(followups_consented=True)
    followup(one, b, status=Delivery.Status.SENT, sent_at=now - 5 * hours)
    followup(two, b, status=Delivery.Status.SENT, sent_at=now - 3 * hours)
    c = make_subscriber(followups_consented=True)
    followup(one, c, status=Delivery.Status.FAILED)
    d = make_subscriber(followups_consented=True)
    followup(one, d, status=Delivery.Status.SENT, sent_at=now - 5 * hours)
    e = make_subscriber()
    for reader in (a, b, e):
        type(reader).objects.filter(pk=reader.pk).update(unsubscribed_at=now - hours)
    return one, two


def test_funnel_counts_per_step(make_step, followup, make_subscriber, django_assert_num_queries):
    one, two = _funnel_fixture(make_step, followup, make_subscriber)
    today = timezone.localdate()
    with django_assert_num_queries(2):
        rows = stats.funnel_followups(start=today - datetime.timedelta(days=1), end=today)
    figures = {row.step_id: (row.sent, row.failed, row.unsubscribed) for row in rows}
    assert figures == {one.pk: (3, 1, 1), two.pk: (1, 0, 1)}
    assert [row.position for row in rows] == [1, 2]
    # A period before any of it: zeros, and still one row per step.
    old = today - datetime.timedelta(days=40)
    rows = stats.funnel_followups(start=old, end=old + datetime.timedelta(days=1))
    assert [(r.sent, r.failed, r.unsubscribed) for r in rows] == [(0, 0, 0), (0, 0, 0)]


def test_funnel_follows_the_chosen_article(make_step, followup, make_subscriber, article):
    _funnel_fixture(make_step, followup, make_subscriber)
    other = Report.objects.create(title="Other", slug="other", body="# Other")
    today = timezone.localdate()
    rows = stats.funnel_followups(start=today, end=today, article_id=article.pk)
    assert len(rows) == 2
    FollowUpStep.objects.create(report=other, subject="Elsewhere", body="x", position=1)
    rows = stats.funnel_followups(start=today, end=today, article_id=article.pk)
    assert {r.subject for r in rows} == {"Day two", "Day seven"}
    assert len(stats.funnel_followups(start=today, end=today)) == 3


def test_funnel_page_shows_the_follow_up_rows(admin_client, make_step, followup, make_subscriber):
    _funnel_fixture(make_step, followup, make_subscriber)
    page = admin_client.get(reverse(FUNNEL)).content.decode()
    table = page.split('id="funnel-followups"', 1)[1].split("</table>", 1)[0]
    first = table.split("Follow-up 1, day 2: Day two", 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'<td class="num">(\d+)', first) == ["3", "1", "1"]
    assert "33.3%" in first  # one in three readers it was sent to unsubscribed after it
    second = table.split("Follow-up 2, day 7: Day seven", 1)[1].split("</tr>", 1)[0]
    assert "100.0%" in second


def test_funnel_without_steps_has_no_follow_up_table(admin_client, article):
    assert 'id="funnel-followups"' not in admin_client.get(reverse(FUNNEL)).content.decode()


def test_timeline_names_each_follow_up_with_its_edition_and_status(
    admin_client, make_step, followup, make_subscriber
):
    reader = make_subscriber(followups_consented=True)
    one = make_step(position=1, subject="Day two: the plan")
    two = make_step(position=2, subject="Day seven: a check-in")
    followup(one, reader, **_sent())
    followup(two, reader)
    FollowUpStep.objects.filter(pk=one.pk).update(edition=2, subject="Day two, revised")
    one.editions.create(edition=1, subject="Day two: the plan", body="old")
    page = admin_client.get(reverse("admin:backpain_report_subscriber_change", args=[reader.pk]))
    text = html.unescape(page.content.decode())
    assert "Follow-up 1: Day two: the plan (edition 1), now: Sent" in text
    assert "Follow-up 2: Day seven: a check-in (edition 1), now: Pending" in text
    timeline = text.split('class="backpain-timeline"', 1)[1].split("</table>", 1)[0]
    assert "Day two, revised" not in timeline  # what the reader got, not today's subject
