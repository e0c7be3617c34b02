import datetime

from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from backpain_report.admin.chart import line_chart_svg, nice_ceiling
from backpain_report.models import PageView

URL = "admin:backpain_report_pageview_changelist"


def test_dashboard_is_linked_from_the_admin_index(admin_client, article):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse(URL)}"' in html and ">Funnel<" in html


def test_dashboard_shows_figures_chart_and_rates(
    admin_client, article, make_subscriber, django_assert_max_num_queries
):
    today = timezone.localdate()
    PageView.objects.create(article=article, day=today, views=200)
    make_subscriber(confirmed_at=timezone.now())
    with django_assert_max_num_queries(14):
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
    day = datetime.date(2026, 1, 5)
    PageView.objects.create(article=article, day=day, views=7)
    response = admin_client.get(
        reverse(URL), {"start": "2026-01-01", "end": "2026-01-10", "article": article.pk}
    )
    html = response.content.decode()
    assert "10 days" in html and "2026-01-05" in html and ">7<" in html
    bad = admin_client.get(reverse(URL), {"start": "2026-01-10", "end": "2026-01-01"})
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
