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

from .database import Database
from .processes import free_port
from .stack import _start_web, http_ok, manage, site_env
from .test_browser import Shots

pytestmark = [pytest.mark.services, pytest.mark.browser]

SUBSCRIBERS = 400


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
        env = site_env(
            database_url=database.url,
            broker_url="memory://",
            smtp_port=25,
            site_url=base,
            var_dir=work / "var",
        )
        manage(env, "migrate", "--noinput", timeout=300)
        manage(
            env, "backpain_populate", "--subscribers", str(SUBSCRIBERS), "--seed", "3",
            "--i-know-this-is-not-production",  # the site runs with DEBUG off
        )  # fmt: skip
        username, password = f"owner{secrets.token_hex(3)}", secrets.token_urlsafe(16)
        manage(
            {**env, "DJANGO_SUPERUSER_PASSWORD": password},
            "createsuperuser", "--noinput", "--username", username, "--email", "o@example.com",
        )  # fmt: skip
        web = _start_web("admin", port, env, artefacts_dir / "realservices" / "admin-browser")
        web.wait_ready(lambda: http_ok(base + "/"), timeout=60, what="serving /")
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
    expect(page.locator("#changelist")).to_contain_text(f"{SUBSCRIBERS} subscribers")
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
