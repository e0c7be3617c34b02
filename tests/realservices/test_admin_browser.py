"""The owner's cockpit in Chromium: log in, filter and search subscribers, export the filtered
list as CSV, read a delivery timeline, open the funnel dashboard and a report's preview.

The site runs under gunicorn on a private PostgreSQL database filled by ``backpain_populate``.
Screenshots go to ``test-artefacts/browser/admin/``.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from pathlib import Path

import pytest

from .support.database import Database
from .support.processes import free_port
from .support.stack import gunicorn_start, manage, site_env
from .test_browser import Shots

pytestmark = [pytest.mark.services, pytest.mark.browser]

SUBSCRIBERS = 400
EXTRA = 3  # the second article's readers (SECOND_ARTICLE_AND_QUEUE)


#: A second article with a long title and its own report, a few of its readers, and sign-ups
#: waiting for a worker (one whose publish failed): every list has rows as long as real ones.
SECOND_ARTICLE_AND_QUEUE = """
from django.utils import timezone
from backpain_report.models import Article, PendingSignup, Report, Subscriber
now = timezone.now()
report = Report.objects.create(title="Sciatica: the guide", slug="sciatica-guide", body="# Hi")
article = Article.objects.create(
    title="Sciatica: When the Pain Runs Down the Leg, and What Actually Helps",
    slug="sciatica-pain-down-the-leg", body="Text.", summary="About sciatica.",
    status=Article.Status.PUBLISHED, published_at=now, report=report,
)
for n in range(EXTRA):
    email = f"a.rather.long.address.number{n}@subdomain.mail.example.com"
    Subscriber.objects.create(
        email=email, email_canonical=email, source_article=article,
        name=f"Maximiliane Reader-Number-{n} von Hohenzollern-Sigmaringen-Langname",
        consent_text="I agree.", consent_version="1", consented_at=now, language="de",
        utm_source="spring-back-pain-newsletter-second-edition-partner-sites",
        utm_medium="email", referrer_host="a-very-long-forum-host.community.example.org",
    )
    PendingSignup.objects.create(
        email=email, email_canonical=email, name="Pending Person", article=article,
        consent_text="I agree.", consent_version="1", consented_at=now,
        enqueued_at=now if n else None, publish_failed_at=now if n == 2 else None,
    )
"""


def _fits(page, width: int) -> None:
    """Nothing scrolls sideways, neither the page nor a changelist's table in its box, and no
    date wraps onto a second line."""
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{page.url}: the page is {scroll} px wide at {width} px"
    for box in page.locator("#changelist .results").all():
        inner, outer = box.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert inner <= outer, f"{page.url}: the list is {inner} px wide in {outer} px"
    wrapped = page.locator("time.backpain-date").evaluate_all(
        "ts => ts.filter(t => t.getClientRects().length > 1).map(t => t.textContent)"
    )
    assert not wrapped, f"{page.url}: dates wrap: {wrapped[:3]}"


def _log_in(page, base: str, username: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/admin/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


@pytest.fixture(scope="module")
def admin_site(postgres_url, tmp_path_factory, artefacts_dir):
    """gunicorn serving the example site on a populated private database; (url, user, pw, db)."""
    work = tmp_path_factory.mktemp("admin-browser")
    database = Database(postgres_url)
    database.create()
    web = None
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = site_env(database_url=database.url, site_url=base, var_dir=work / "var")
        manage(env, "migrate", "--noinput", timeout=300)
        manage(
            env, "backpain_populate", "--subscribers", str(SUBSCRIBERS), "--seed", "3",
            "--i-know-this-is-not-production",  # the site runs with DEBUG off
        )  # fmt: skip
        manage(env, "shell", "-c", f"EXTRA = {EXTRA}\n{SECOND_ARTICLE_AND_QUEUE}")
        username, password = f"owner{secrets.token_hex(3)}", secrets.token_urlsafe(16)
        manage(
            {**env, "DJANGO_SUPERUSER_PASSWORD": password},
            "createsuperuser", "--noinput", "--username", username, "--email", "o@example.com",
        )  # fmt: skip
        log = artefacts_dir / "realservices" / "admin-browser" / "gunicorn.log"
        web = gunicorn_start("gunicorn (admin)", port, env, log)
        yield base, username, password, database
    finally:
        if web is not None:
            web.stop()
        database.drop()


def test_owner_filters_exports_and_reads_the_funnel(page, admin_site, artefacts_dir):
    from playwright.sync_api import expect

    base, username, password, database = admin_site
    shots = Shots(artefacts_dir / "browser" / "admin")
    unconfirmed = database.query(
        "SELECT count(*) AS n FROM backpain_report_subscriber WHERE confirmed_at IS NULL"
    )[0]["n"]
    someone = database.query(
        "SELECT email_canonical, name FROM backpain_report_subscriber "
        "WHERE confirmed_at IS NULL ORDER BY id LIMIT 1 OFFSET 10"
    )[0]

    page.goto(base + "/admin/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    expect(page.locator("#content-main").get_by_role("link", name="Funnel")).to_be_visible()
    shots(page, "admin-index")

    # Subscribers: the list, then a filter from the sidebar.
    page.locator("#content-main").get_by_role("link", name="Subscribers").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(100)
    expect(page.locator("#changelist")).to_contain_text(f"{SUBSCRIBERS + EXTRA} subscribers")
    shots(page, "subscribers")
    confirmed = page.locator('#changelist-filter details[data-filter-title="confirmed"]')
    confirmed.get_by_role("link", name="No", exact=True).click()
    assert "confirmed=no" in page.url
    expect(page.locator("#changelist")).to_contain_text(f"{unconfirmed} subscriber")
    shots(page, "subscribers-unconfirmed")

    # Export exactly that list.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    target = shots.folder / "subscribers-unconfirmed.csv"
    download.save_as(str(target))
    exported = list(csv.DictReader(io.StringIO(Path(target).read_text(encoding="utf-8"))))
    assert len(exported) == unconfirmed
    assert all(row["confirmed_at"] == "" for row in exported)

    # An exact address, typed in another case, finds its reader in the filtered list.
    page.locator("#searchbar").fill(someone["email_canonical"].upper())
    page.locator("#searchbar").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    shots(page, "subscribers-search")
    rows.first.locator("th a").click()
    expect(page.locator(".backpain-timeline")).to_contain_text("Signed up")
    page.locator(".backpain-timeline").scroll_into_view_if_needed()
    shots(page, "subscriber-timeline")

    # Deliveries that failed.
    page.goto(base + "/admin/backpain_report/delivery/?status__exact=failed")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("Failed")
    shots(page, "deliveries-failed")

    # The funnel from the admin index.
    page.goto(base + "/admin/")
    page.locator("#content-main").get_by_role("link", name="Funnel").click()
    expect(page.get_by_role("heading", name="Funnel")).to_be_visible()
    expect(page.locator("svg.backpain-chart")).to_have_count(2)
    expect(page.locator("#funnel-articles")).to_contain_text("Total")
    shots(page, "funnel")
    page.locator("#id_start").fill("2000-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".backpain-funnel")).to_contain_text("Choose at most 366 days.")

    # A report: Markdown preview and the PDF preview link.
    page.goto(base + "/admin/backpain_report/report/")
    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator(".backpain-preview h2").first).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Preview the PDF"))).to_be_visible()
    shots(page, "report-preview")
    print(f"\nscreenshots: {shots.folder} ({shots.count} files)")


def test_every_admin_list_the_funnel_and_a_subscriber_fit_1280_px(
    page, chromium, admin_site, artefacts_dir
):
    """At 1280 px with the sidebar open, no list the admin links to (ours, and any other app's),
    no subscriber page and not the funnel scrolls sideways; the funnel also fits 390 px."""
    from playwright.sync_api import expect

    base, username, password, database = admin_site
    shots = Shots(artefacts_dir / "browser" / "admin-fit")
    _log_in(page, base, username, password)
    page.goto(base + "/admin/backpain_report/subscriber/")  # the index has no sidebar
    expect(page.locator("#nav-sidebar")).to_be_visible()
    lists = page.locator("#nav-sidebar th[scope=row] a").evaluate_all("a => a.map(e => e.href)")
    assert any(url.endswith("/backpain_report/pendingsignup/") for url in lists)
    assert len(lists) >= 6  # articles, deliveries, funnel, pending, reports, subscribers
    for url in lists:
        page.goto(url)
        expect(page.locator("#nav-sidebar")).to_be_visible()
        _fits(page, 1280)
        shots(page, "list-" + url.rstrip("/").split("/")[-1])

    someone = database.query(  # a reader whose delivery failed: errors in the timeline
        "SELECT subscriber_id FROM backpain_report_delivery WHERE status = 'failed' "
        "ORDER BY length(last_error) DESC, id LIMIT 1"
    )[0]["subscriber_id"]
    page.goto(f"{base}/admin/backpain_report/subscriber/{someone}/change/")
    expect(page.locator(".backpain-timeline")).to_contain_text("Last error")
    _fits(page, 1280)
    shots(page, "subscriber-page")

    page.goto(base + "/admin/backpain_report/pageview/")
    articles = page.locator("#funnel-articles tbody tr")
    expect(articles).to_have_count(3)  # two articles and the total
    expect(page.locator("figcaption").first).to_contain_text(
        "Bots and headless browsers are not counted"
    )
    _fits(page, 1280)
    shots(page, "funnel")
    page.get_by_role("link", name=re.compile("^Sciatica: When the Pain")).click()
    expect(page.locator("#funnel-articles tbody tr")).to_have_count(2)  # it, and the total
    expect(page.locator("#id_article option:checked")).to_contain_text("Sciatica")
    _fits(page, 1280)
    shots(page, "funnel-one-article")

    phone = chromium.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    try:
        small = phone.new_page()
        _log_in(small, base, username, password)
        small.goto(base + "/admin/backpain_report/pageview/")
        expect(small.locator("svg.backpain-chart")).to_have_count(2)
        _fits(small, 390)  # the tables and charts scroll inside their own boxes
        shots(small, "funnel-390")
    finally:
        phone.close()
    print(f"\nscreenshots: {shots.folder} ({shots.count} files)")


#: The pages issue 22 changed (the owner's items 12-14), looked at on a laptop and a phone.
CHANGED_PAGES = {
    "subscribers": "/admin/backpain_report/subscriber/",
    "funnel": "/admin/backpain_report/pageview/",
    "report-edit": None,  # the first report's change page
    "delivery-sent": "sent",  # a delivery change page in that state
    "delivery-failed": "failed",
    "delivery-pending": "pending",
}


def _changed_page_urls(base: str, database) -> dict[str, str]:
    urls = {}
    for name, target in CHANGED_PAGES.items():
        if name == "report-edit":
            report = database.query("SELECT id FROM backpain_report_report ORDER BY id LIMIT 1")
            urls[name] = f"{base}/admin/backpain_report/report/{report[0]['id']}/change/"
        elif name.startswith("delivery-"):
            found = database.query(
                "SELECT id FROM backpain_report_delivery WHERE status = %s AND kind = 'report' "
                "ORDER BY length(last_error) DESC, id LIMIT 1",
                [target],
            )
            if found:
                urls[name] = f"{base}/admin/backpain_report/delivery/{found[0]['id']}/change/"
        else:
            urls[name] = base + target
    return urls


#: How many columns of the textarea's own font fit in its text area, the longest source line,
#: and every ancestor's width (for the message).
MARKDOWN_BOX = """ta => {
    const style = getComputedStyle(ta);
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = `${style.fontSize} ${style.fontFamily}`;
    const inner = ta.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const chain = [];
    for (let e = ta; e && e !== document.body; e = e.parentElement)
        chain.push(`${e.tagName}.${e.className}:${e.clientWidth}`);
    return {
        columns: Math.floor(inner / ctx.measureText("0").width),
        longest: Math.max(...ta.value.split("\\n").map(l => l.length)),
        chain: chain.join(" < "),
    };
}"""


def _whole_lines(page) -> None:
    """The title is shown whole and each Markdown source line fits the box (no ragged breaks)."""
    title = page.locator("#id_title").evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert title[0] <= title[1], f"the title is cut off: {title}"
    box = page.locator("#id_body").evaluate(MARKDOWN_BOX)
    assert box["columns"] >= box["longest"], box


def test_the_owner_pages_at_1280_and_390(page, chromium, admin_site, artefacts_dir):
    """The subscriber list never scrolls sideways at 1280 px, long addresses, names and
    campaign names included; every page issue 22 changed is photographed at 1280 and 390."""
    from playwright.sync_api import expect

    base, username, password, database = admin_site
    shots = Shots(artefacts_dir / "browser" / "admin-owner")
    urls = _changed_page_urls(base, database)
    assert {"subscribers", "funnel", "report-edit", "delivery-sent"} <= set(urls)
    _log_in(page, base, username, password)
    page.goto(urls["subscribers"])
    expect(page.locator("#result_list")).to_contain_text("spring-back-pain-newsletter")
    expect(page.locator("#result_list")).to_contain_text("Hohenzollern")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the subscriber list is {width} px wide at 1280 px"
    _fits(page, 1280)
    for name, url in urls.items():
        page.goto(url)
        if name == "report-edit":
            _whole_lines(page)
        if name != "subscribers":
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280, name
        shots(page, f"{name}-1280")

    phone = chromium.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    try:
        small = phone.new_page()
        _log_in(small, base, username, password)
        for name, url in urls.items():
            small.goto(url)
            shots(small, f"{name}-390")
    finally:
        phone.close()
    print(f"\nscreenshots: {shots.folder} ({shots.count} files)")
