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

from .support.checks import check_report_pdf, pdf_attachment
from .support.gating import unavailable
from .support.processes import wait_until
from .support.stack import ROOT, manage
from .support.web import reader_ip

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
    # The script answers in place (issue 12); the page without it is tested below.
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert page.url == base + "/", page.url
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
    page.goto(changelist_url)
    page.locator("#result_list tbody tr").first.get_by_role("link", name=email).click()
    expect(page.locator(".inline-related tbody tr.has_original")).to_have_count(2)
    shots(page, "subscriber-two-deliveries")

    db_rows = rs_database.deliveries_for([email])
    assert [(r["reason"], r["status"]) for r in db_rows] == [("signup", "sent"), ("resend", "sent")]
    assert {r["message_id"] for r in db_rows} == {m.message_id for m in both}
    print(f"\nscreenshots: {shots.folder} ({shots.count} files)")


# --- Issue 12: the landing page, as a reader on a desktop and on a phone sees it ---------------

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"1280": {"width": 1280, "height": 800}, "390": {"width": 390, "height": 844}}
# Records every Content-Security-Policy violation of the page (an init script runs through the
# DevTools protocol, which the policy does not govern).
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${where}`);
});
"""
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def new_page(chromium, size: str, *, javascript: bool = True):
    """A page of a fresh context at one of :data:`VIEWPORTS`, with the CSP listener and axe."""
    context = chromium.new_context(
        viewport=VIEWPORTS[size],
        locale="en-GB",
        java_script_enabled=javascript,
        extra_http_headers={"X-Real-IP": reader_ip()},
    )
    context.set_default_timeout(15_000)
    if javascript:
        context.add_init_script(CSP_LISTENER)
        context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.console_messages = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_messages.append(message.text))
    return page


def assert_accessible(page, what: str) -> None:
    """axe-core finds no serious or critical violation on the page as it is now."""
    violations = page.evaluate(AXE_RUN)
    bad = [v for v in violations if v["impact"] in {"serious", "critical"}]
    assert not bad, f"{what}: {bad}"


def assert_no_csp_violation(page, what: str) -> None:
    violations = page.evaluate("window.__cspViolations")
    console = [text for text in page.console_messages if "Content Security Policy" in text]
    assert violations == [] and console == [], f"{what}: {violations} {console}"


def fill_signup(page, *, name: str, email: str, consent: bool) -> None:
    page.locator("#id_name").fill(name)
    page.locator("#id_email").fill(email)
    page.locator("#id_consent").set_checked(consent)


@pytest.fixture(scope="module")
def axe_ready():
    if not AXE.exists():
        unavailable(f"{AXE} is missing: `make test` installs it (npm ci)")
    return AXE


@pytest.mark.parametrize("size", sorted(VIEWPORTS))
def test_the_offer_is_above_the_fold_and_the_form_submits_in_place(
    chromium, redis_stack, artefacts_dir, axe_ready, size
):
    from playwright.sync_api import expect

    shots = Shots(artefacts_dir / f"browser-page-{size}")
    base = redis_stack.base_url
    page = new_page(chromium, size)
    try:
        response = page.goto(base + "/")
        assert response.headers["content-security-policy"] == "script-src 'self'; style-src 'self'"
        offer = page.locator(".bpr-offer")
        expect(offer).to_be_visible()
        box = offer.bounding_box()
        assert 0 <= box["y"] < VIEWPORTS[size]["height"] - 120, f"offer at {box}"
        heading = page.locator("#bpr-offer-title").bounding_box()
        assert heading["y"] + heading["height"] <= VIEWPORTS[size]["height"], heading
        cover = page.locator(".bpr-offer-cover")
        assert cover.evaluate("img => img.complete && img.naturalWidth") > 0, "the cover is broken"
        assert 3 <= page.locator(".bpr-offer-list li").count() <= 5
        shots(page, "article-top", full_page=False)
        offer.screenshot(path=str(shots.folder / "offer.png"))
        assert_accessible(page, "article")

        # The offer's button brings the reader to the form, the cursor in its first field.
        page.get_by_role("link", name="Get the free report").click()
        expect(page.locator("#id_name")).to_be_focused()
        consent, label = page.locator("#id_consent"), page.locator("label[for=id_consent]")
        checkbox_box, label_box = consent.bounding_box(), label.bounding_box()
        assert label_box["x"] > checkbox_box["x"] + checkbox_box["width"] - 1, "label not beside"
        assert label_box["y"] < checkbox_box["y"] + checkbox_box["height"], "label below the box"

        # Errors, in place: no page load, the message focused and announced.
        page.evaluate("window.__samePage = true")
        fill_signup(page, name="Ann", email="not-an-address", consent=False)
        page.get_by_role("button", name=re.compile("free report", re.I)).click()
        message = page.locator("[data-bpr-message]")
        expect(message).to_contain_text("Enter a valid email address.")
        expect(message).to_be_focused()
        assert message.get_attribute("aria-live") == "polite"
        expect(page.locator("#id_consent")).to_have_attribute("aria-invalid", "true")
        assert page.evaluate("window.__samePage") is True
        shots(page, "form-errors-js", full_page=False)
        assert_accessible(page, "errors shown by the script")

        # Success, in place.
        email = f"page-{size}-{secrets.token_hex(4)}@example.com"
        fill_signup(page, name="Ann", email=email, consent=True)
        page.get_by_role("button", name=re.compile("free report", re.I)).click()
        expect(message).to_contain_text("Check your inbox")
        expect(message).to_be_focused()
        expect(page.locator("#backpain-report-signup")).to_be_hidden()
        assert page.evaluate("window.__samePage") is True
        assert page.url.split("#")[0] == base + "/"
        shots(page, "success-js", full_page=False)
        assert_accessible(page, "success shown by the script")
        assert_no_csp_violation(page, "article, errors and success")
        # The listener works: an inline script is refused and reported.
        page.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = '1';"
            " document.body.appendChild(s); }"
        )
        page.wait_for_function("window.__cspViolations.length > 0")
    finally:
        page.context.close()


@pytest.mark.parametrize("size", sorted(VIEWPORTS))
def test_without_javascript_errors_show_the_article_and_success_is_a_303(
    chromium, redis_stack, artefacts_dir, size
):
    from playwright.sync_api import expect

    shots = Shots(artefacts_dir / f"browser-page-{size}-nojs")
    base = redis_stack.base_url
    page = new_page(chromium, size, javascript=False)
    try:
        page.goto(base + "/")
        fill_signup(page, name="Ann", email="not-an-address", consent=False)
        page.get_by_role("button", name=re.compile("free report", re.I)).click()
        expect(page.locator("h1")).to_have_text("Back Pain Muscle Spasms. Finding the Culprits")
        expect(page.locator(".bpr-offer")).to_be_visible()
        expect(page.locator("[data-bpr-message]")).to_contain_text("Enter a valid email address.")
        expect(page.locator("#id_email")).to_be_focused()  # autofocus: no script needed
        shots(page, "form-errors-nojs", full_page=False)

        email = f"nojs-{size}-{secrets.token_hex(4)}@example.com"
        fill_signup(page, name="Ann", email=email, consent=True)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.get_by_role("button", name=re.compile("free report", re.I)).click()
        assert posted.value.status == 303, posted.value.status
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert page.url == base + "/signup/done/"
        shots(page, "thank-you-nojs", full_page=False)
    finally:
        page.context.close()


def test_the_other_pages_pass_axe_and_the_keyboard_journey_works(
    chromium, redis_stack, artefacts_dir, axe_ready
):
    from playwright.sync_api import expect

    shots = Shots(artefacts_dir / "browser-page-other")
    base = redis_stack.base_url
    page = new_page(chromium, "1280")
    try:
        # The error state as the server renders it (a submission the script does not handle).
        page.goto(base + "/")
        fill_signup(page, name="", email="nope", consent=False)
        page.evaluate(
            "HTMLFormElement.prototype.submit.call(document.getElementById('backpain-report-signup'))"
        )
        expect(page.locator("[data-bpr-message]")).to_contain_text("Please correct")
        assert_accessible(page, "error state without the script")

        token = manage(
            redis_stack.env,
            "shell",
            "-c",
            "from backpain_report.tokens import make_unsubscribe_token as m; print(m(10**12))",
        ).split()[-1]  # Django 5.2+'s shell may first say what it imported
        for path, what in [
            ("/signup/done/", "thank-you"),
            ("/confirm/not-a-token/", "confirm"),
            (f"/unsubscribe/{token}/", "unsubscribe"),
            ("/download/not-a-token/", "download-unavailable"),
            ("/privacy/", "privacy"),
        ]:
            page.goto(base + path)
            expect(page.locator("h1")).to_be_visible()
            if what == "unsubscribe":  # a valid link: the page with the button
                expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
            shots(page, what, full_page=False)
            assert_accessible(page, what)
            assert_no_csp_violation(page, what)
        link = page.get_by_role("link", name="Back to the article")
        assert link.evaluate("a => getComputedStyle(a).color") != "rgb(0, 0, 238)"

        # Keyboard only: from the top of the article to the success message.
        page.goto(base + "/")
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == "Get the free report":
                break
        page.keyboard.press("Enter")
        expect(page.locator("#id_name")).to_be_focused()
        page.keyboard.type("Kim")
        page.keyboard.press("Tab")
        page.keyboard.type(f"keys-{secrets.token_hex(4)}@example.com")
        page.keyboard.press("Tab")
        expect(page.locator("#id_consent")).to_be_focused()
        page.keyboard.press("Space")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="our privacy notice")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name=re.compile("free report", re.I))).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("[data-bpr-message]")).to_be_focused()
        expect(page.locator("[data-bpr-message]")).to_contain_text("Check your inbox")
        shots(page, "keyboard-success", full_page=False)

        assert page.request.get(base + "/favicon.ico").status == 200
    finally:
        page.context.close()
