"""A reader and a member of staff in Chromium: sign up, get the email, resend from the admin;
the landing page on a desktop and a phone; the page every reader gets alike, the source the
browser fills in, the views it counts and the form embedded on other sites.

Screenshots go to ``test-artefacts/browser/`` and ``test-artefacts/browser-page-*/`` at the
repository root.
"""

from __future__ import annotations

import http.server
import io
import re
import secrets
import shutil
import subprocess
import threading
import time
import types
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from pypdf import PdfReader

from ..docs_text import docs_page
from .support.checks import check_report_pdf, pdf_downloaded
from .support.gating import services_required, unavailable
from .support.processes import free_port, wait_until
from .support.stack import ROOT, gunicorn_start, manage
from .support.web import reader_ip

pytestmark = [pytest.mark.services, pytest.mark.browser]

DELIVERY_WAIT = 60.0

ARTICLE_SLUG = "back-pain-muscle-spasms-finding-the-culprits"
ARTICLE_PATH = f"/articles/{ARTICLE_SLUG}/"
SIGNUP_PATH = "/signup/"
PIXEL_PATH = "/views/pixel.gif"
FUNNEL_PATH = "/admin/backpain_report/pageview/"
UTM = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"}
UTM_QUERY = "?" + urllib.parse.urlencode(UTM)
#: A reader's Chrome. Chromium's own user agent here says ``HeadlessChrome``, and headless
#: browsers are not counted as page views (as the funnel says): the view tests use this one.
READER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0.0.0 Safari/537.36"
)
SEND = re.compile("free report", re.I)
#: The form after the article (the page has a second one in the offer, issue 22).
END_FORM = "#free-report"


def end_button(page):
    """The submit button of the form after the article."""
    return page.locator(END_FORM).get_by_role("button", name=SEND)


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


def show_email(context, message, shots: Shots, pdf: bytes, base: str) -> None:
    """Screenshot the email's HTML body (nothing loaded but the cover picture from the site) at
    1280 and 390 px, and keep the PDF beside the shots."""
    from playwright.sync_api import expect

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
        viewer.set_viewport_size({"width": 1280, "height": 900})
        viewer.route("**/*", lambda route: _cover_only(route, base))
        viewer.set_content(html_part.get_content())
        cover = viewer.locator("img")
        expect(cover).to_have_count(1)
        viewer.wait_for_function("document.images[0].complete")
        assert viewer.evaluate("document.images[0].naturalWidth") > 0, "the cover did not load"
        shots(viewer, "email-html")
        viewer.set_viewport_size({"width": 390, "height": 844})
        shots(viewer, "email-html-390")
    finally:
        viewer.close()


def _cover_only(route, base: str) -> None:
    """Let the email load its cover picture from the site, and nothing else."""
    url = route.request.url
    if url.startswith(base + "/") and "/cover-" in url and url.endswith(".png"):
        route.continue_()
    else:
        route.abort()


@pytest.fixture(scope="module")
def staff(redis_stack) -> tuple[str, str]:
    """A superuser of the shared site, made once for the module: ``(username, password)``."""
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
    return username, password


def test_reader_signs_up_and_staff_resends(
    page, redis_stack, smtp_server, rs_database, artefacts_dir, staff
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
    end_button(page).click()
    # The script answers in place (issue 12); the page without it is tested below.
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert page.url == base + "/", page.url
    shots(page, "check-your-inbox")

    first = smtp_server.sink.wait_for_count({email}, 1, timeout=DELIVERY_WAIT)
    assert first, f"no email for {email} within {DELIVERY_WAIT:.0f} s\n{redis_stack.diagnostics()}"
    first_pdf = pdf_downloaded(first[0].message)[1]
    check_report_pdf(first_pdf, reader_name=name)
    closing = PdfReader(io.BytesIO(first_pdf)).pages[-1]  # the next step: back to the site
    links = [a.get_object()["/A"].get("/URI") for a in closing.get("/Annots") or []]
    assert base + "/" in links, links
    show_email(page.context, first[0].message, shots, first_pdf, base)

    # Staff: log in, find the subscriber, resend from the changelist.
    username, password = staff
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
    check_report_pdf(pdf_downloaded(both[1].message)[1], reader_name=name)

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


def new_page(
    chromium,
    size: str,
    *,
    javascript: bool = True,
    axe: bool = True,
    user_agent: str | None = None,
    site: str | None = None,
):
    """A page of a fresh context at one of :data:`VIEWPORTS`, with the CSP listener and (unless
    ``axe`` is false) axe-core; ``user_agent`` None: Chromium's own (``HeadlessChrome``).

    The reader's IP (``X-Real-IP``, see ``wsgi.RealIP``) goes on every request, or with
    ``site`` (a base URL) only on that site's: other sites' pages post to it from their own
    scripts, and a header of that name on every request would make those cross-origin posts
    need a CORS preflight, which no reader's browser sends."""
    ip = reader_ip()
    context = chromium.new_context(
        viewport=VIEWPORTS[size],
        locale="en-GB",
        java_script_enabled=javascript,
        extra_http_headers=None if site else {"X-Real-IP": ip},
        **({"user_agent": user_agent} if user_agent else {}),
    )
    if site:
        context.route(
            site + "/**",
            lambda route: route.continue_(headers={**route.request.headers, "x-real-ip": ip}),
        )
    context.set_default_timeout(15_000)
    if javascript:
        context.add_init_script(CSP_LISTENER)
        if axe:
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

        # The article's call to action brings the reader to the form after the article, the
        # cursor in its first field (issue 22: the offer holds a form of its own, see below).
        page.locator(".bpr-article-cta a[data-bpr-to-form]").click()
        expect(page.locator("#id_name")).to_be_focused()
        consent, label = page.locator("#id_consent"), page.locator("label[for=id_consent]")
        checkbox_box, label_box = consent.bounding_box(), label.bounding_box()
        assert label_box["x"] > checkbox_box["x"] + checkbox_box["width"] - 1, "label not beside"
        assert label_box["y"] < checkbox_box["y"] + checkbox_box["height"], "label below the box"

        # Errors, in place: no page load, the message focused and announced.
        page.evaluate("window.__samePage = true")
        fill_signup(page, name="Ann", email="not-an-address", consent=False)
        end_button(page).click()
        message = page.locator(END_FORM + " [data-bpr-message]")
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
        end_button(page).click()
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


def in_first_screen(page, selector: str, size: str) -> dict:
    """The element's box, asserted to lie wholly inside the first screen (no scrolling)."""
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    assert box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORTS[size]["height"], (selector, box)
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS[size]["width"], (selector, box)
    return box


OFFER_FIELDS = ("#id_offer_name", "#id_offer_email", "#id_offer_consent", "#submit-id-offer-submit")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_a_phone_reader_signs_up_in_the_offer_without_scrolling(
    chromium, redis_stack, rs_database, artefacts_dir, axe_ready, javascript
):
    """Issue 22: at 390 px the offer holds the form: the cover stacked above the text at a size
    its title can be read, the fields and the button in the first screen; the sign-up goes
    through that form, with the script or without it."""
    from playwright.sync_api import expect

    size = "390"
    shots = Shots(artefacts_dir / f"browser-offer-form-{'js' if javascript else 'nojs'}")
    base = redis_stack.base_url
    page = new_page(chromium, size, javascript=javascript)
    try:
        page.goto(base + "/" + UTM_QUERY)
        offer = page.locator(".bpr-offer")
        cover = in_first_screen(page, ".bpr-offer-cover", size)
        heading = in_first_screen(page, "#bpr-offer-title", size)
        assert cover["width"] >= 160, f"the cover is a thumbnail: {cover}"
        assert cover["y"] + cover["height"] <= heading["y"], "the cover is not above the text"
        for selector in OFFER_FIELDS:
            in_first_screen(page, selector, size)
        assert page.evaluate("window.scrollY") == 0
        shots(page, "offer-form-390", full_page=False)
        if javascript:
            assert_accessible(page, "the offer with its form")

        email = f"offer-{'js' if javascript else 'nojs'}-{secrets.token_hex(4)}@example.com"
        offer.locator("#id_offer_name").fill("Ann")
        offer.locator("#id_offer_email").fill(email)
        offer.locator("#id_offer_consent").check()
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            offer.get_by_role("button", name=SEND).click()
        if javascript:
            assert posted.value.status == 202, posted.value.status
            message = offer.locator("[data-bpr-message]")
            expect(message).to_contain_text("Check your inbox")
            expect(message).to_be_focused()
            expect(page.locator("#backpain-report-signup-offer")).to_be_hidden()
            expect(page.locator("#backpain-report-signup")).to_be_visible()  # the other one
            assert page.url.split("#")[0] == base + "/" + UTM_QUERY
            assert_no_csp_violation(page, "the offer's form")
        else:
            assert posted.value.status == 303, posted.value.status
            expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
            assert page.url == base + "/signup/done/"
        shots(page, "offer-form-success", full_page=False)
    finally:
        page.context.close()
    expected_source = {**UTM, "referrer_host": ""}
    assert subscriber_source(rs_database, email) == expected_source


@pytest.mark.parametrize("size", sorted(VIEWPORTS))
def test_without_javascript_errors_show_the_article_and_success_is_a_303(
    chromium, redis_stack, rs_database, artefacts_dir, size
):
    """No script: the errors on the article page, then the 303 to "Check your inbox"; the
    ``utm_*`` of the page's address come from the first POST's ``Referer`` and stay in the
    form shown with its errors, whose own address has none; no referring host is known."""
    from playwright.sync_api import expect

    shots = Shots(artefacts_dir / f"browser-page-{size}-nojs")
    base = redis_stack.base_url
    page = new_page(chromium, size, javascript=False)
    try:
        page.goto(base + "/" + UTM_QUERY)
        fill_signup(page, name="Ann", email="not-an-address", consent=False)
        end_button(page).click()
        expect(page.locator("h1")).to_have_text("Back Pain Muscle Spasms. Finding the Culprits")
        expect(page.locator(".bpr-offer")).to_be_visible()
        end_message = page.locator(END_FORM + " [data-bpr-message]")
        expect(end_message).to_contain_text("Enter a valid email address.")
        expect(page.locator("#id_email")).to_be_focused()  # autofocus: no script needed
        shots(page, "form-errors-nojs", full_page=False)

        email = f"nojs-{size}-{secrets.token_hex(4)}@example.com"
        fill_signup(page, name="Ann", email=email, consent=True)
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            end_button(page).click()
        assert posted.value.status == 303, posted.value.status
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert page.url == base + "/signup/done/"
        shots(page, "thank-you-nojs", full_page=False)
    finally:
        page.context.close()
    source = subscriber_source(rs_database, email)
    assert source == {**UTM, "referrer_host": ""}, f"{email}: {source}"


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
        expect(page.locator(END_FORM + " [data-bpr-message]")).to_contain_text("Please correct")
        assert_accessible(page, "error state without the script")

        token = manage(
            redis_stack.env,
            "shell",
            "-c",
            "from backpain_report.delivery.tokens import make_unsubscribe_token as m; "
            "print(m(10**12))",
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

        # Keyboard only: from the top of the article to the success message, through the form
        # in the offer (issue 22), the first thing to tab to.
        page.goto(base + "/")
        page.keyboard.press("Tab")
        expect(page.locator("#id_offer_name")).to_be_focused()
        page.keyboard.type("Kim")
        page.keyboard.press("Tab")
        page.keyboard.type(f"keys-{secrets.token_hex(4)}@example.com")
        page.keyboard.press("Tab")
        expect(page.locator("#id_offer_consent")).to_be_focused()
        page.keyboard.press("Space")
        page.keyboard.press("Tab")
        offer = page.locator(".bpr-offer")
        expect(offer.get_by_role("link", name="our privacy notice")).to_be_focused()
        page.keyboard.press("Tab")
        expect(offer.get_by_role("button", name=re.compile("free report", re.I))).to_be_focused()
        page.keyboard.press("Enter")
        expect(offer.locator("[data-bpr-message]")).to_be_focused()
        expect(offer.locator("[data-bpr-message]")).to_contain_text("Check your inbox")
        shots(page, "keyboard-success", full_page=False)

        assert page.request.get(base + "/favicon.ico").status == 200
    finally:
        page.context.close()


# --- Issue 21: one page for every reader; the browser fills in the source and counts the view --


class OtherSite:
    """Static pages on another origin, ``http://127.0.0.N:port`` (http.server in a thread).

    Another loopback IP than the site's 127.0.0.1: to the browser another *site* (a request from
    it is ``cross-site``), whose host is a referring host of its own."""

    def __init__(self, host: str) -> None:
        pages: dict[str, bytes] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                self.send_response(404 if body is None else 200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.pages = pages
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.origin = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page(self, path: str, title: str, body: str) -> str:
        """Serve a page titled ``title`` with ``body`` (HTML) at ``path``; its URL."""
        self.pages[path] = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"
        ).encode()
        return self.origin + path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def other_sites():
    """Two other sites: ``listed`` (the embedding site's ``EMBED_ORIGINS``) and ``unlisted``."""
    sites = []
    try:
        for name, host in (("listed", "127.0.0.2"), ("unlisted", "127.0.0.3")):
            sites.append(OtherSite(host))
            sites[-1].page("/", f"The {name} site's home", "<p>Welcome back.</p>")
            sites[-1].pages["/favicon.ico"] = b""  # no 404 in the console
        yield types.SimpleNamespace(listed=sites[0], unlisted=sites[1])
    finally:
        for site in sites:
            site.stop()


def http_bytes(url: str, *, method: str = "GET", headers: dict[str, str] | None = None):
    """A plain HTTP client's request (no script, no cookies): ``(status, headers, body)``."""
    request = urllib.request.Request(
        url,
        method=method,
        headers={"User-Agent": READER_UA, "X-Real-IP": reader_ip(), **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def subscriber_source(database, email: str) -> dict | None:
    """The source kept with ``email``'s Subscriber row, once the worker has made it."""

    def row() -> dict | None:
        rows = database.query(
            "SELECT utm_source, utm_medium, utm_campaign, referrer_host "
            "FROM backpain_report_subscriber WHERE email_canonical = %s",
            (email,),
        )
        return rows[0] if rows else None

    return wait_until(row, timeout=DELIVERY_WAIT, interval=0.25)  # type: ignore[return-value]


def nothing_stored(database, email: str) -> bool:
    return not database.query(
        "SELECT 1 FROM backpain_report_subscriber WHERE email_canonical = %(e)s UNION ALL "
        "SELECT 1 FROM backpain_report_pendingsignup WHERE email_canonical = %(e)s",
        {"e": email},
    )


def signup_post(response) -> bool:
    return response.request.method == "POST" and response.url.split("?")[0].endswith(SIGNUP_PATH)


def test_the_browser_fills_in_the_source_of_a_page_that_is_the_same_for_everyone(
    chromium, redis_stack, rs_database, other_sites
):
    """A reader follows a newsletter's link from another site: the page Chromium gets is the
    bytes a plain HTTP client gets (no token, no source), public; the script fills in the
    ``utm_*`` and the referring host, and the in-place sign-up keeps them."""
    from playwright.sync_api import expect

    base = redis_stack.base_url
    article = base + ARTICLE_PATH + UTM_QUERY
    links = other_sites.listed.page(
        "/newsletter.html", "Spring newsletter", f'<p><a href="{article}">Read the article</a></p>'
    )
    page = new_page(chromium, "1280", axe=False)
    try:
        page.goto(links)
        with page.expect_response(lambda r: r.url == article) as served:
            page.get_by_role("link", name="Read the article").click()
        served = served.value
        assert served.status == 200, served.status
        assert served.headers["cache-control"].startswith("public, max-age="), served.headers
        assert "set-cookie" not in served.headers, served.headers
        body = served.body()
        for url in (article, base + ARTICLE_PATH):
            status, _headers, plain = http_bytes(url)
            assert (status, plain) == (200, body), f"{url}: not the bytes Chromium got"
        assert b"csrfmiddlewaretoken" not in body

        expect(page.locator("h1")).to_have_text("Back Pain Muscle Spasms. Finding the Culprits")
        assert page.evaluate("document.referrer") == other_sites.listed.origin + "/"
        form = page.locator("#backpain-report-signup")
        filled = {**UTM, "referrer_host": "127.0.0.2"}
        for name, value in filled.items():
            expect(form.locator(f'input[name="{name}"]')).to_have_value(value)

        email = f"source-js-{secrets.token_hex(4)}@example.com"
        fill_signup(page, name="Ann", email=email, consent=True)
        with page.expect_response(signup_post) as posted:
            page.locator(END_FORM).get_by_role("button", name=SEND).click()
        assert posted.value.status == 202, posted.value.status
        expect(page.locator(END_FORM + " [data-bpr-message]")).to_contain_text("Check your inbox")
        assert page.url == article
    finally:
        page.context.close()
    source = subscriber_source(rs_database, email)
    assert source == filled, f"{email}: {source}"


def log_in(page, base: str, username: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/admin/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name=re.compile("log in", re.I)).click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def load_and_count(page, url: str) -> None:
    """Open ``url`` and wait for the answer (``204``) to the page's view beacon."""
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/views/")
    ) as beacon:
        page.goto(url)
    assert beacon.value.status == 204, beacon.value.status


def test_a_page_load_in_a_browser_counts_one_view_and_its_source(
    chromium, redis_stack, rs_database, staff, artefacts_dir
):
    """A view is a page load in a browser (the beacon, or the ``<noscript>`` image), one each;
    the server's answer to a GET or a HEAD, and a headless browser, count none. The counts wait
    in Redis (``THROTTLE_CACHE``) until a flush: the admin's funnel page flushes them."""
    base = redis_stack.base_url
    admin = chromium.new_context(locale="en-GB")
    try:
        staff_page = admin.new_page()
        log_in(staff_page, base, *staff)

        def views(**source: str) -> int:
            """The article's views in the database (per source, with ``source``), flushed."""
            answer = staff_page.request.get(base + FUNNEL_PATH)
            assert answer.ok, answer.status
            table = "backpain_report_sourceview" if source else "backpain_report_pageview"
            where = "".join(f" AND v.{name} = %({name})s" for name in source)
            return rs_database.query(
                f"SELECT coalesce(sum(v.views), 0) AS n FROM {table} v "
                "JOIN backpain_report_article a ON a.id = v.article_id "
                f"WHERE a.slug = %(slug)s{where}",
                {"slug": ARTICLE_SLUG, **source},
            )[0]["n"]

        before, news_before = views(), views(utm_source="news")
        reader = new_page(chromium, "1280", axe=False, user_agent=READER_UA)
        try:
            load_and_count(reader, base + ARTICLE_PATH)
            assert views() == before + 1, "one page load, one view"
            load_and_count(reader, base + ARTICLE_PATH)
            assert views() == before + 2, "a second load, a second view"
            load_and_count(reader, base + ARTICLE_PATH + "?utm_source=news")
            assert views() == before + 3
        finally:
            reader.context.close()
        rows = rs_database.query(
            "SELECT utm_medium, utm_campaign, referrer_host, views "
            "FROM backpain_report_sourceview WHERE utm_source = 'news'"
        )
        assert views(utm_source="news") == news_before + 1, rows
        assert {(r["utm_medium"], r["utm_campaign"], r["referrer_host"]) for r in rows} == {
            ("", "", "")
        }

        # The server's answers count nothing: a GET, a HEAD (of the page, of the image with
        # the page's own headers), and a browser that says it is headless.
        assert http_bytes(base + ARTICLE_PATH)[0] == 200
        assert http_bytes(base + ARTICLE_PATH, method="HEAD")[0] == 200
        own_page = {"Sec-Fetch-Site": "same-origin", "Referer": base + ARTICLE_PATH}
        pixel = f"{base}{PIXEL_PATH}?article={ARTICLE_SLUG}"
        assert http_bytes(pixel, method="HEAD", headers=own_page)[0] == 200
        headless = new_page(chromium, "390", axe=False)
        try:
            assert "HeadlessChrome" in headless.evaluate("navigator.userAgent")
            load_and_count(headless, base + ARTICLE_PATH)
        finally:
            headless.context.close()
        assert views() == before + 3, "a GET, a HEAD or a headless browser counted a view"

        # Without JavaScript the <noscript> image counts the view.
        nojs = new_page(chromium, "390", javascript=False, user_agent=READER_UA)
        try:
            with nojs.expect_response(lambda r: PIXEL_PATH in r.url) as image:
                nojs.goto(base + ARTICLE_PATH)
            assert image.value.status == 200
            assert image.value.headers["content-type"] == "image/gif"
            pixel_box = nojs.locator("img.bpr-pixel").bounding_box()
            assert pixel_box and pixel_box["width"] <= 1 and pixel_box["height"] <= 1, pixel_box
            Shots(artefacts_dir / "browser-page-views")(nojs, "article-nojs-390")
        finally:
            nojs.context.close()
        assert views() == before + 4, "a page load without JavaScript"
    finally:
        admin.close()


def embed_snippet(base: str) -> str:
    """The HTML the docs' "Embedding the form" gives another site, pointing at ``base``."""
    section = docs_page("howto/embedding")
    snippet = section.split("```html\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace("https://reports.example.com/back-pain/", base + "/")
    snippet = snippet.replace("https://reports.example.com/", base + "/")
    assert "example.com" not in snippet and f'value="{ARTICLE_SLUG}"' in snippet, snippet
    return snippet


@pytest.fixture(scope="module")
def embed_site(redis_stack, other_sites, artefacts_dir):
    """The example site with ``EMBED_ORIGINS`` the listed site: a second gunicorn on the shared
    stack's database, cache and queue (its worker sends the reports)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **redis_stack.env,
        "SITE_URL": base,
        "BACKPAIN_EMBED_ORIGINS": other_sites.listed.origin,
    }
    log = artefacts_dir / "realservices" / "embed-browser" / "gunicorn.log"
    web = gunicorn_start("gunicorn (embed)", port, env, log)
    try:
        yield base
    finally:
        web.stop()


def axe_here() -> bool:
    """Whether axe-core is installed; a test that checks more than accessibility leaves that
    check out without it (and fails with ``BACKPAIN_REQUIRE_SERVICES=1``)."""
    if AXE.exists():
        return True
    if services_required():
        pytest.fail(f"{AXE} is missing: `make test` installs it (npm ci)", pytrace=False)
    return False


def fill_embedded(page, *, name: str, email: str) -> None:
    """The embedded form, found by its labels as the docs write them."""
    page.get_by_label("Your first name").fill(name)
    page.get_by_label("Your email address").fill(email)
    page.get_by_label("Yes, email me the free report.").check()


def test_another_site_embeds_the_form_and_an_unlisted_one_is_refused(
    chromium, embed_site, other_sites, rs_database, artefacts_dir
):
    """Docs, "Embedding the form": the snippet on a listed site signs up in place (the JSON
    answer readable there) or, without JavaScript, ends on "Check your inbox" with a link back;
    on an unlisted site the sign-up is refused (403, nothing stored) and the reader lands on the
    page saying so, not on a blank page or a console error."""
    from playwright.sync_api import expect

    base = embed_site
    listed, unlisted = other_sites.listed, other_sites.unlisted
    snippet = embed_snippet(base)
    partner = listed.page("/partner.html", "A partner's page", snippet) + "?utm_source=partner"
    stranger = unlisted.page("/stranger.html", "A stranger's page", snippet)
    shots = {size: Shots(artefacts_dir / f"browser-page-embed-{size}") for size in VIEWPORTS}
    axe = axe_here()

    # With JavaScript, from the listed site: in place, the answers readable there.
    page = new_page(chromium, "1280", axe=axe, site=base)
    try:
        page.goto(partner)
        for size in ("390", "1280"):
            page.set_viewport_size(VIEWPORTS[size])
            shots[size](page, "partner-page")
        if axe:
            assert_accessible(page, "the docs' snippet on another site")
        consent_shown = " ".join(page.locator("label[for=bpr-consent]").inner_text().split())
        message = page.locator("[data-bpr-message]")
        fill_embedded(page, name="Ann", email="ann@")
        with page.expect_response(signup_post) as posted:
            page.get_by_role("button", name=SEND).click()
        assert posted.value.status == 400, posted.value.status
        assert posted.value.headers.get("access-control-allow-origin") == listed.origin
        expect(message).to_contain_text("Please correct this to get the report:")
        expect(message).to_contain_text("Enter a valid email address.")
        field = page.get_by_label("Your email address")
        expect(field).to_have_attribute("aria-invalid", "true")
        target = message.get_by_role("link").get_attribute("href")
        assert page.locator(target).get_attribute("name") == "email", target
        described = field.get_attribute("aria-describedby")
        expect(page.locator(f"#{described}")).to_have_text("Enter a valid email address.")
        shots["1280"](page, "partner-errors-js", full_page=False)

        email = f"embed-js-{secrets.token_hex(4)}@example.com"
        field.fill(email)
        with page.expect_response(signup_post) as posted:
            page.get_by_role("button", name=SEND).click()
        assert posted.value.status == 202, posted.value.status
        headers = posted.value.headers
        assert headers.get("access-control-allow-origin") == listed.origin, headers
        assert "origin" in headers.get("vary", "").lower(), headers
        expect(message).to_contain_text("Check your inbox")
        expect(message).to_be_focused()
        expect(page.locator("form")).to_be_hidden()
        assert page.url == partner
        shots["1280"](page, "partner-success-js", full_page=False)
        page.set_viewport_size(VIEWPORTS["390"])
        shots["390"](page, "partner-success-js", full_page=False)

        # Markup without the texts to show in place: the ordinary post, never a blank block.
        bare = re.sub(r'\s+data-bpr-[a-z-]+="[^"]*"', "", snippet)
        bare = re.sub(r"<template data-bpr-success>.*?</template>", "", bare, flags=re.S)
        assert "data-bpr-later" not in bare and "<template" not in bare, bare
        assert "data-bpr-signup" in bare and "data-bpr-message" in bare, bare
        page.goto(listed.page("/bare.html", "A partner's page, written by hand", bare))
        bare_email = f"embed-bare-{secrets.token_hex(4)}@example.com"
        fill_embedded(page, name="Ann", email=bare_email)
        with page.expect_response(signup_post) as posted:
            page.get_by_role("button", name=SEND).click()
        assert posted.value.status == 303, posted.value.status
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert (
            page.get_by_role("link", name=re.compile("^Back to")).get_attribute("href")
            == listed.origin
        )
    finally:
        page.context.close()
    source = subscriber_source(rs_database, email)
    assert source is not None, f"no subscriber {email}"
    assert source["utm_source"] == "partner", source  # the embedding page's address
    # The consent stored is the site's CONSENT_TEXT: the docs' snippet shows the same.
    stored = rs_database.query(
        "SELECT consent_text FROM backpain_report_subscriber WHERE email_canonical = %s", (email,)
    )[0]["consent_text"]
    assert stored == consent_shown, (stored, consent_shown)
    assert subscriber_source(rs_database, bare_email) is not None, f"no subscriber {bare_email}"

    # Without JavaScript, from the listed site: this site's "Check your inbox", a link back.
    page = new_page(chromium, "1280", javascript=False, site=base)
    try:
        page.goto(partner)
        email = f"embed-nojs-{secrets.token_hex(4)}@example.com"
        fill_embedded(page, name="Ann", email=email)
        with page.expect_response(signup_post) as posted:
            page.get_by_role("button", name=SEND).click()
        assert posted.value.status == 303, posted.value.status
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        done = base + "/signup/done/?" + urllib.parse.urlencode({"from": listed.origin})
        assert page.url == done
        back = page.get_by_role("link", name=re.compile("^Back to"))
        expect(back).to_have_text("Back to " + listed.origin.split("//", 1)[1])
        assert back.get_attribute("href") == listed.origin
        back.click()
        expect(page.get_by_role("heading", name="The listed site's home")).to_be_visible()
    finally:
        page.context.close()
    assert subscriber_source(rs_database, email) is not None, f"no subscriber {email}"

    # From a site not listed: the script's post is refused and unreadable there; it falls
    # back to the ordinary post, refused too, whose page says why. Nothing is stored.
    page = new_page(chromium, "1280", axe=axe, site=base)
    try:
        posts, answers = [], []
        page.on(
            "request",
            lambda r: (
                posts.append(r.resource_type)
                if r.method == "POST" and r.url == base + SIGNUP_PATH
                else None
            ),
        )
        page.on("response", lambda r: answers.append(r.status) if signup_post(r) else None)
        page.goto(stranger)
        email = f"embed-stranger-{secrets.token_hex(4)}@example.com"
        fill_embedded(page, name="Ann", email=email)
        with page.expect_response(lambda r: signup_post(r) and r.request.is_navigation_request()):
            page.get_by_role("button", name=SEND).click()
        refused = page.get_by_role("heading", name="This form cannot be sent from here")
        expect(refused).to_be_visible()
        assert page.url == base + SIGNUP_PATH
        expect(page.locator("main, body").first).to_contain_text("Nothing has been recorded")
        own = page.get_by_role("link", name="Sign up on our own page instead")
        assert own.get_attribute("href") == "/#free-report"
        # The script's post was refused and, with no CORS header, unreadable there (no
        # answer reaches the page); it fell back to the ordinary post, refused with a page.
        assert (posts, answers) == (["fetch", "document"], [403]), (posts, answers)
        for size in ("1280", "390"):
            page.set_viewport_size(VIEWPORTS[size])
            shots[size](page, "refused-403")
        if axe:
            assert_accessible(page, "the refused sign-up's page")
        assert_no_csp_violation(page, "the refused sign-up's page")

        # The "Check your inbox" page with its link back, as the no-JS reader saw it above.
        page.goto(done)
        for size in ("390", "1280"):
            page.set_viewport_size(VIEWPORTS[size])
            shots[size](page, "check-your-inbox-link-back")
        if axe:
            assert_accessible(page, "check your inbox, with a link back")
        assert_no_csp_violation(page, "check your inbox, with a link back")
    finally:
        page.context.close()
    assert nothing_stored(rs_database, email), f"{email} was stored"
    print(f"screenshots: {shots['1280'].folder} and {shots['390'].folder}")
