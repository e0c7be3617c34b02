import datetime
import math
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

import backpain_report
from backpain_report import stats
from backpain_report.admin.chart import integer_ticks, line_chart_svg, nice_ceiling
from backpain_report.models import Article, FollowUpStep, PageView, Report
from backpain_report.page.pageviews import is_bot

URL = "admin:backpain_report_pageview_changelist"


def test_dashboard_is_linked_from_the_admin_index(admin_client, article):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse(URL)}"' in html and ">Funnel<" in html


def test_dashboard_shows_figures_chart_and_rates(
    admin_client, article, make_subscriber, django_assert_max_num_queries, settings
):
    # Double opt-in: the confirmation rate applies (with single opt-in it is hidden, below).
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    today = timezone.localdate()
    PageView.objects.create(article=article, day=today, views=200)
    make_subscriber(confirmed_at=timezone.now())
    FollowUpStep.objects.all().delete()  # the seed's bundled steps: not this test's subject
    # 14, and one for the follow-up steps (none here; with steps, one more: the unsubscribes
    # after each step, tests/test_admin_followups.py).
    with django_assert_max_num_queries(15):
        response = admin_client.get(reverse(URL))
    html = response.content.decode()
    assert response.status_code == 200
    main = html.split('<div id="content-main"')[1]
    assert main.count('<svg xmlns="http://www.w3.org/2000/svg" class="backpain-chart"') == 2
    assert "<script" not in main
    assert "0.5%" in html and "100.0%" in html  # 1 / 200 signed up, 1 / 1 confirmed
    assert "30 days" in html and article.title in html
    assert f'type="date" name="end" value="{today.isoformat()}"' in html  # ISO, any locale


def test_dashboard_date_range_and_article(admin_client, article):
    day = datetime.date(2001, 1, 5)
    PageView.objects.create(article=article, day=day, views=7)
    response = admin_client.get(
        reverse(URL), {"start": "2001-01-01", "end": "2001-01-10", "article": article.pk}
    )
    html = response.content.decode()
    assert "10 days" in html and "2001-01-05" in html and ">7<" in html
    bad = admin_client.get(reverse(URL), {"start": "2001-01-10", "end": "2001-01-01"})
    assert "The end comes before the start." in bad.content.decode()


def test_dashboard_needs_its_permission(client, article):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_subscriber"))
    client.force_login(user)
    assert reverse(URL) not in client.get(reverse("admin:index")).content.decode()
    assert client.get(reverse(URL)).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_pageview"))
    user = User.objects.get(pk=user.pk)
    client.force_login(user)
    assert client.get(reverse(URL)).status_code == 200
    add = client.get(reverse("admin:backpain_report_pageview_add"))
    assert add.status_code == 403


def test_chart_escapes_and_scales():
    svg = line_chart_svg(labels=["a", "<b>"], series=[("<x>", [0, 7])], title="T & <U>")
    assert "<x>" not in svg and "&lt;x&gt;" in svg and "&lt;b&gt;" in svg
    assert "T &amp; &lt;U&gt;" in svg
    assert nice_ceiling(7) == 10 and nice_ceiling(0) == 1 and nice_ceiling(230) == 250
    assert "<circle" in line_chart_svg(labels=["a"], series=[("s", [1])], title="one")


def _axis_labels(svg: str) -> list[str]:
    """The value axis' labels of a chart (the texts right-aligned at the plot's left edge)."""
    return re.findall(
        r'<text x="46" y="[\d.]+" font-size="11" text-anchor="end"[^>]*>([^<]*)<', svg
    )


@pytest.mark.parametrize(
    ("peak", "ticks"),
    [(0, [0, 1]), (1, [0, 1]), (2, [0, 1, 2]), (3, [0, 1, 2, 3]), (7, [0, 2, 4, 6, 8]),
     (42, [0, 10, 20, 30, 40, 50]), (230, [0, 50, 100, 150, 200, 250]), (2.5, [0, 1, 2, 3])],
)  # fmt: skip
def test_count_axes_have_whole_number_ticks_only(peak, ticks):
    assert integer_ticks(peak) == ticks
    svg = line_chart_svg(labels=["a", "b"], series=[("s", [0, math.ceil(peak)])], title="t")
    assert _axis_labels(svg) == [str(t) for t in ticks]


def test_chart_lines_never_hide_each_other():
    """Two series with the same values: each has its own dash pattern, marker and width (the
    first drawn widest, so the second drawn on it leaves it visible), shown in the legend."""
    same = [1, 2, 1, 0]
    svg = line_chart_svg(labels=list("abcd"), series=[("A", same), ("B", same)], title="t")
    lines = re.findall(r'<polyline class="backpain-series"[^>]*>', svg)
    assert len(lines) == 2
    widths = [float(re.search(r'stroke-width="([\d.]+)"', line)[1]) for line in lines]
    dashes = [re.search(r'stroke-dasharray="([^"]*)"', line) for line in lines]
    assert widths[0] > widths[1]
    assert dashes[0] is None and dashes[1] is not None  # solid, then dashed
    assert svg.count("<circle") == 4 + 1 and svg.count("<rect x=") >= 4 + 1  # markers + legend
    styled = line_chart_svg(labels=list("ab"), series=[("A", [1, 2])], title="t", styles=[1])
    assert 'stroke-dasharray="9 4"' in styled  # a quantity keeps its look across charts


def test_single_opt_in_hides_the_confirmation_rate_with_a_note(admin_client, article, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": False}
    html = admin_client.get(reverse(URL)).content.decode()
    main = html.split('<div id="content-main"')[1]
    assert 'id="funnel-hidden-note"' in main and "Double opt-in is off" in main
    assert "Confirmations" not in main and "Confirmed" not in main

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    main = admin_client.get(reverse(URL)).content.decode().split('<div id="content-main"')[1]
    assert "funnel-hidden-note" not in main
    assert main.count('class="num">Confirmations<') == 3  # the article, source and day tables
    assert main.count("Confirmations</text>") == 1  # the chart after the sign-up


def test_funnel_steps_and_rates_follow_the_opt_in():
    assert "confirmations" not in stats.funnel_steps(double_opt_in=False)
    assert stats.funnel_steps(double_opt_in=True) == stats.STEPS
    names = [name for name, _num, _den in stats.funnel_rates(double_opt_in=False)]
    assert "confirm_rate" not in names and "signup_rate" in names
    assert stats.funnel_rates(double_opt_in=True) == stats.RATES


def test_page_views_say_bots_and_headless_browsers_are_not_counted(admin_client, article):
    main = admin_client.get(reverse(URL)).content.decode().split('<div id="content-main"')[1]
    chart, caption = main.split("<figcaption>")[0], main.split("<figcaption>")[1]
    assert "Page views</text>" in chart  # the caption sits under the page-views chart
    assert caption.startswith("Bots and headless browsers are not counted as page views.")
    assert is_bot("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/140.0 Safari/537.36")


def test_funnel_splits_two_articles_and_filters_each(admin_client, article, make_subscriber):
    """Each article's own views and sign-ups on its row, the total adds them, a title links to
    the funnel of that article alone, and that filter shows only its figures."""
    second_report = Report.objects.create(title="Sciatica guide", slug="sciatica-guide", body="x")
    second = Article.objects.create(
        title="Sciatica explained", slug="sciatica", body="x", report=second_report
    )
    today = timezone.localdate()
    PageView.objects.create(article=article, day=today, views=300)
    PageView.objects.create(article=second, day=today, views=40)
    for _ in range(3):
        make_subscriber()
    for _ in range(2):
        make_subscriber(source_article=second)

    html = admin_client.get(reverse(URL)).content.decode()
    table = html.split('id="funnel-articles"')[1].split("</table>")[0]
    rows = {
        re.sub(r"<[^>]+>", "", re.search(r'<th scope="row">(.*?)</th>', row)[1]): re.findall(
            r'<td class="num">(\d+)', row
        )
        for row in table.split("<tr")[2:]
    }
    assert rows[article.title][:2] == ["300", "3"]  # page views, sign-ups
    assert rows["Sciatica explained"][:2] == ["40", "2"]
    assert rows["Total"][:2] == ["340", "5"]
    assert "1.0%" in table and "5.0%" in table  # 3 / 300, 2 / 40
    link = re.search(r'<a href="\?([^"]+)"[^>]*>Sciatica explained</a>', table)[1]
    assert f"article={second.pk}" in link and f"end={today.isoformat()}" in link

    only = admin_client.get(reverse(URL) + "?" + link.replace("&amp;", "&")).content.decode()
    table = only.split('id="funnel-articles"')[1].split("</table>")[0]
    assert "Sciatica explained" in table and article.title not in table
    assert '<td class="num">40' in table and '<td class="num">300' not in table


def test_per_day_dates_never_wrap(admin_client, article):
    css = (
        Path(backpain_report.__file__).parent / "static/backpain_report/css/admin.css"
    ).read_text()
    assert re.search(r"^\.backpain-date \{ white-space: nowrap; \}", css, re.M)
    # Issue 22: only a day with activity is a row (the others are folded away, as dates too).
    PageView.objects.create(article=article, day=timezone.localdate(), views=1)
    html = admin_client.get(reverse(URL)).content.decode()
    days = html.split('id="funnel-days"')[1]
    day = r'<th scope="row"><time class="backpain-date" datetime="([\d-]+)">([\d-]+)</time></th>'
    assert re.search(day, days)
    quiet = html.split('id="funnel-quiet-days"')[1].split("</details>")[0]
    assert re.search(r'<time class="backpain-date" datetime="[\d-]+">', quiet)


def test_every_funnel_step_has_a_line_style_of_its_own():
    """Colour and dash pattern differ for every step the funnel can draw (suppressed included)."""
    from backpain_report import stats
    from backpain_report.admin import chart

    styles = {
        (chart.PALETTE[i % len(chart.PALETTE)], chart.DASHES[i % len(chart.DASHES)])
        for i in range(len(stats.STEPS))
    }
    assert len(styles) == len(stats.STEPS)


# --- issue 22, item 13: the answer first ----------------------------------------------------


def test_change_against_the_previous_period():
    from backpain_report.admin.funnel import MINUS, count_change, rate_change

    assert count_change(12, 10) == ("+20%", "up")
    assert count_change(5, 10) == (MINUS + "50%", "down")
    assert count_change(10, 10) == ("±0%", "same")
    assert count_change(3, 0) == ("new", "up")  # no division by zero
    assert count_change(0, 0) == ("—", "same")
    assert count_change(0, 4) == (MINUS + "100%", "down")
    assert rate_change(0.05, 0.04) == ("+1.0 pts", "up")
    assert rate_change(0.04, 0.05) == (MINUS + "1.0 pts", "down")
    assert rate_change(0.05, None) == ("—", "same")
    assert rate_change(None, 0.05) == ("—", "same")


def test_headline_figures_lead_with_the_change_against_the_previous_period(
    admin_client, article, make_subscriber
):
    """The period's views, sign-ups, conversion, delivered, downloads and unsubscribes, each
    with its change against the 30 days before; shown before the charts and the tables."""
    today = timezone.localdate()
    before = today - datetime.timedelta(days=stats.DEFAULT_DAYS + 3)  # the previous period
    PageView.objects.create(article=article, day=today, views=300)
    PageView.objects.create(article=article, day=before, views=100)
    for _ in range(3):
        make_subscriber()
    old = make_subscriber(unsubscribed_at=timezone.now())
    from backpain_report.models import Subscriber

    Subscriber.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - datetime.timedelta(days=stats.DEFAULT_DAYS + 3)
    )
    html = admin_client.get(reverse(URL)).content.decode()
    main = html.split('<div id="content-main"')[1]
    headline = main.split('id="funnel-headline"')[1].split("</dl>")[0]
    assert main.index('id="funnel-headline"') < main.index("<svg") < main.index("funnel-days")
    figures = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd[^>]*><strong>([^<]+)</strong>", headline))
    assert figures == {
        "Page views": "300", "Sign-ups": "3", "Conversion": "1.0%", "Reports delivered": "0",
        "Downloads": "0", "Unsubscribes": "1",
    }  # fmt: skip
    changes = re.findall(r'class="backpain-change ([a-z]+)"[^>]*>([^<]+)<', headline)
    assert changes[:3] == [("up", "+200%"), ("up", "+200%"), ("same", "±0.0 pts")]
    assert ("up", "new") in changes  # an unsubscribe now, none before: no division by zero
    assert "the previous 30 days" in headline


def test_per_day_table_lists_active_days_and_folds_the_rest(admin_client, article):
    today = timezone.localdate()
    PageView.objects.create(article=article, day=today, views=9)
    PageView.objects.create(article=article, day=today - datetime.timedelta(days=3), views=4)
    html = admin_client.get(reverse(URL)).content.decode()
    days = html.split('id="funnel-days"')[1].split("</table>")[0]
    assert days.count('<th scope="row">') == 2
    rest = html.split('id="funnel-quiet-days"')[1].split("</details>")[0]
    assert "28 days without activity" in rest
    assert today.isoformat() not in rest


def test_charts_draw_each_step_in_its_own_panel_without_dashes(admin_client, article):
    """Lines on top of each other were unreadable: each step has its own band and scale."""
    from backpain_report.admin.chart import panel_chart_svg

    same = [1, 2, 1, 0]
    svg = panel_chart_svg(labels=list("abcd"), series=[("A", same), ("B", same)], title="t")
    lines = re.findall(r'<polyline class="backpain-series"[^>]*>', svg)
    assert len(lines) == 2 and "stroke-dasharray" not in svg
    ys = [
        {round(float(p.split(",")[1])) for p in re.search(r'points="([^"]+)"', line)[1].split()}
        for line in lines
    ]
    assert max(ys[0]) < min(ys[1])  # the second panel lies wholly below the first
    main = admin_client.get(reverse(URL)).content.decode().split('<div id="content-main"')[1]
    assert "stroke-dasharray" not in main
