"""A reader and a member of staff in Chromium: sign up, get the email, resend from the admin.

Screenshots of every step go to ``test-artefacts/browser/`` at the repository root.
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from .checks import check_report_pdf, pdf_attachment
from .processes import wait_until
from .stack import manage

pytestmark = [pytest.mark.services, pytest.mark.browser]

DELIVERY_WAIT = 60.0


class Shots:
    """Numbered full-page screenshots in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in [*self.folder.glob("*.png"), *self.folder.glob("*.pdf")]:
            old.unlink()
        self.count = 0

    def __call__(self, page, name: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path


def show_email(context, message, shots: Shots, pdf: bytes) -> None:
    """Screenshot the email's HTML body (no network) and keep the PDF beside the shots."""
    html_part = message.get_body(("html",))
    assert html_part is not None, "the email has no HTML body"
    pdf_path = shots.folder / "report.pdf"
    pdf_path.write_bytes(pdf)
    if shutil.which("pdftoppm"):  # poppler-utils: every page as a picture, to look at
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", pdf_path, pdf_path.with_suffix("")],
            check=False,
            timeout=60,
            capture_output=True,
        )
        pages = len(PdfReader(io.BytesIO(pdf)).pages)
        assert len(list(shots.folder.glob("report-*.png"))) == pages
    viewer = context.new_page()
    try:
        viewer.route("**/*", lambda route: route.abort())  # an email may load nothing remote
        viewer.set_content(html_part.get_content())
        shots(viewer, "email-html")
    finally:
        viewer.close()


def test_reader_signs_up_and_staff_resends(
    page, redis_stack, smtp_server, rs_database, artefacts_dir
):
    from playwright.sync_api import expect

    shots = Shots(artefacts_dir / "browser")
    base = redis_stack.base_url
    name = "Siobhán O'Neill"
    email = f"browser-{secrets.token_hex(4)}@example.com"

    # The reader: the article, the form filled with the keyboard, submitted with the mouse.
    page.goto(base + "/")
    expect(page.locator("h1").first).to_be_visible()
    shots(page, "article")
    name_field = page.locator("#id_name")
    name_field.scroll_into_view_if_needed()
    name_field.click()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    expect(page.locator("#id_email")).to_be_focused()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    consent = page.locator("#id_consent")
    expect(consent).to_be_focused()
    page.keyboard.press("Space")
    expect(consent).to_be_checked()
    expect(name_field).to_have_value(name)
    shots(page, "form-filled", full_page=False)
    page.get_by_role("button", name=re.compile("free report", re.I)).click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert page.url.endswith("/signup/done/"), page.url
    shots(page, "check-your-inbox")

    first = smtp_server.sink.wait_for_count({email}, 1, timeout=DELIVERY_WAIT)
    assert first, f"no email for {email} within {DELIVERY_WAIT:.0f} s\n{redis_stack.diagnostics()}"
    first_pdf = pdf_attachment(first[0].message)[1]
    check_report_pdf(first_pdf, reader_name=name)
    closing = PdfReader(io.BytesIO(first_pdf)).pages[-1]  # the next step: back to the site
    links = [a.get_object()["/A"].get("/URI") for a in closing.get("/Annots") or []]
    assert base + "/" in links, links
    show_email(page.context, first[0].message, shots, first_pdf)

    # Staff: log in, find the subscriber, resend from the changelist.
    username, password = f"staff{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    manage(
        {**redis_stack.env, "DJANGO_SUPERUSER_PASSWORD": password},
        "createsuperuser",
        "--noinput",
        "--username",
        username,
        "--email",
        f"{username}@example.com",
    )
    page.goto(base + "/admin/")
    expect(page.locator("#id_username")).to_be_visible()
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    shots(page, "admin-login")
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    shots(page, "admin-home")

    page.get_by_role("link", name="Subscribers", exact=True).first.click()
    expect(page.locator("#searchbar")).to_be_visible()
    page.locator("#searchbar").fill(email)
    page.locator("#searchbar").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(email)
    shots(page, "subscribers-search")
    changelist_url = page.url

    rows.first.get_by_role("link", name=email).click()
    expect(page.locator("#id_name")).to_have_value(name)
    expect(page.locator("body")).to_contain_text("Sent")
    shots(page, "subscriber")

    page.goto(changelist_url)
    page.locator("#result_list tbody tr input.action-select").first.check()
    page.locator("select[name=action]").select_option("resend_report")
    shots(page, "resend-action-chosen", full_page=False)
    page.locator("button[name=index]").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Queued a new delivery for 1")
    shots(page, "resend-queued")

    both = smtp_server.sink.wait_for_count({email}, 2, timeout=DELIVERY_WAIT)
    assert len(both) == 2, (
        f"{len(both)} emails for {email} after the resend\n{redis_stack.diagnostics()}"
    )
    check_report_pdf(pdf_attachment(both[1].message)[1], reader_name=name)

    # Both deliveries show in the admin's Deliveries list, sent.
    page.goto(base + "/admin/backpain_report/delivery/?q=" + email)
    delivery_rows = page.locator("#result_list tbody tr")

    def both_sent() -> bool:
        page.reload()
        texts = delivery_rows.all_inner_texts()
        return len(texts) == 2 and all("Sent" in text for text in texts)

    started = time.monotonic()
    assert wait_until(both_sent, timeout=30, interval=0.5), (
        f"deliveries list after {time.monotonic() - started:.0f} s: "
        f"{delivery_rows.all_inner_texts()}"
    )
    expect(delivery_rows.nth(0)).to_contain_text("Resend")
    expect(delivery_rows.nth(1)).to_contain_text("Sign-up")
    shots(page, "deliveries")
    # The list is wider than the page: scroll it to show the status and sent columns too.
    page.locator("#changelist .results").evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    shots(page, "deliveries-scrolled-right")
    page.goto(changelist_url)
    page.locator("#result_list tbody tr").first.get_by_role("link", name=email).click()
    expect(page.locator(".inline-related tbody tr.has_original")).to_have_count(2)
    shots(page, "subscriber-two-deliveries")

    db_rows = rs_database.deliveries_for([email])
    assert [(r["reason"], r["status"]) for r in db_rows] == [("signup", "sent"), ("resend", "sent")]
    assert {r["message_id"] for r in db_rows} == {m.message_id for m in both}
    print(f"\nscreenshots: {shots.folder} ({shots.count} files)")
