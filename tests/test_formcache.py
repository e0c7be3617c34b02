"""The article page's form HTML is rendered once, each reader gets a token of their own."""

import re

from django.forms.renderers import DjangoTemplates
from django.test import Client
from django.utils.safestring import mark_safe

from backpain_report import formcache

TOKEN_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _token(response) -> str:
    [token] = TOKEN_RE.findall(response.content.decode())
    return token


def test_each_reader_gets_a_fresh_masked_token_that_the_signup_accepts(article):
    formcache._unbound_html.cache_clear()
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    page_one = first.get(article.get_absolute_url())
    page_two = second.get(article.get_absolute_url())
    assert _token(page_one) != _token(page_two)
    assert "bprCsrfToken" not in page_one.content.decode()
    again = first.get(article.get_absolute_url())
    assert _token(again) != _token(page_one)  # masked afresh on every request
    posted = first.post(
        "/back-pain/signup/",
        {
            "name": "Ann",
            "email": "ann@example.com",
            "consent": "on",
            "csrfmiddlewaretoken": _token(again),
        },
    )
    assert posted.status_code == 303
    forged = second.post(
        "/back-pain/signup/",
        {"name": "Ann", "email": "ann@example.com", "consent": "on", "csrfmiddlewaretoken": "x"},
    )
    assert forged.status_code == 403


def test_the_form_is_rendered_once_for_many_readers(client, article, monkeypatch):
    formcache._unbound_html.cache_clear()
    renders = []
    real = formcache.render_to_string
    monkeypatch.setattr(
        formcache, "render_to_string", lambda *a, **k: renders.append(1) or real(*a, **k)
    )
    for _ in range(3):
        assert client.get(article.get_absolute_url()).status_code == 200
    assert len(renders) == 1


def test_a_settings_or_template_change_is_seen_at_once(client, article, settings, tmp_path):
    client.get(article.get_absolute_url())  # remembered
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "CONSENT_TEXT": "Yes, new words."}
    assert "Yes, new words." in client.get(article.get_absolute_url()).content.decode()
    override = tmp_path / "backpain_report" / "signup_form.html"
    override.parent.mkdir(parents=True)
    override.write_text("<form>site's own form {{ csrf_token }}</form>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    html = client.get(article.get_absolute_url()).content.decode()
    assert "site's own form" in html and "bprCsrfToken" not in html


def test_the_template_tag_uses_the_same_form_with_the_request_token(rf, article):
    from django.template import Context, Template

    request = rf.get("/")
    html = Template("{% load backpain_report %}{% report_signup_form 'x' %}").render(
        Context({"request": request})
    )
    [token] = TOKEN_RE.findall(html)
    assert token and "bprCsrfToken" not in html
    assert request.META.get("CSRF_COOKIE_NEEDS_UPDATE")  # the cookie goes out with the page


def test_a_site_article_page_that_renders_the_form_itself_still_gets_it(
    client, article, settings, tmp_path
):
    override = tmp_path / "backpain_report" / "article_detail.html"
    override.parent.mkdir(parents=True)
    override.write_text("{% load crispy_forms_tags %}<h1>{{ article.title }}</h1>{% crispy form %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    response = client.get(article.get_absolute_url())
    assert response.status_code == 200
    assert 'name="email"' in response.content.decode()


def test_a_site_signup_form_override_still_sees_the_page_context(
    client, article, settings, tmp_path
):
    formcache._unbound_html.cache_clear()
    override = tmp_path / "backpain_report" / "signup_form.html"
    override.parent.mkdir(parents=True)
    override.write_text(
        '{% load crispy_forms_tags %}<p class="site">Get it for {{ article.title }} '
        "(from {{ request.path }})</p>{% crispy form %}"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    html = client.get(article.get_absolute_url()).content.decode()
    assert f"Get it for {article.title} (from {article.get_absolute_url()})" in html


class MarkedRenderer(DjangoTemplates):
    """A site's form renderer: its inputs carry a mark."""

    def render(self, template_name, context, request=None):
        html = super().render(template_name, context, request)
        return mark_safe(html.replace("<input", "<input data-site-widget"))


def test_a_form_renderer_change_is_seen_at_once(client, article, settings):
    """FORM_RENDERER decides how the inputs are drawn."""
    assert "data-site-widget" not in client.get(article.get_absolute_url()).content.decode()
    settings.FORM_RENDERER = "tests.test_formcache.MarkedRenderer"
    assert "data-site-widget" in client.get(article.get_absolute_url()).content.decode()
