from django.template import Context, Template
from django.test import RequestFactory


def render(source, **context):
    request = RequestFactory().get("/")
    return Template(source).render(Context({"request": request, **context}))


def test_signup_form_tag_renders_anywhere(article):
    html = render("{% load backpain_report %}{% report_signup_form %}")
    assert 'action="/back-pain/signup/"' in html
    assert 'name="name"' in html and 'name="email"' in html and 'name="consent"' in html


def test_signup_form_tag_records_the_article(article):
    html = render("{% load backpain_report %}{% report_signup_form article %}", article=article)
    assert f'value="{article.slug}"' in html
    html = render('{% load backpain_report %}{% report_signup_form "some-slug" %}')
    assert 'value="some-slug"' in html


def test_markdown_filter_sanitises():
    html = render("{% load backpain_report %}{{ text|markdown }}", text="**hi** <script>x</script>")
    assert "<strong>hi</strong>" in html and "<script>" not in html
