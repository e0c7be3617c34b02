from django.core import mail
from django.urls import reverse

from backpain_report.models import Delivery, Subscriber
from backpain_report.seed import read_article

SIGNUP = {"name": "Ann", "email": "ann@example.com", "consent": "on"}


def test_root_shows_the_default_article(client, article):
    response = client.get(reverse("backpain_report:home"))
    assert response.status_code == 200
    html = response.content.decode()
    source = read_article()
    assert "<h1>Back Pain Muscle Spasms. Finding the Culprits</h1>" in html
    assert "30 May 2017" in html
    for paragraph in source.body.split("\n\n"):
        assert paragraph[:60] in html
    assert "Claim your Free report to eliminate your Back Pain." in html
    assert 'name="consent"' in html and "csrfmiddlewaretoken" not in html  # the same for all
    assert '<meta name="description"' in html


def test_article_detail_and_list(client, article):
    assert client.get(article.get_absolute_url()).status_code == 200
    response = client.get(reverse("backpain_report:article_list"))
    assert article.title in response.content.decode()
    assert client.get("/back-pain/articles/nope/").status_code == 404


def test_draft_article_is_not_shown(client, article):
    article.status = "draft"
    article.save()
    assert client.get(article.get_absolute_url()).status_code == 404


def test_signup_creates_subscriber_and_delivery_then_redirects(
    client, article, no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("backpain_report:signup"),
            {**SIGNUP, "article": article.slug},
            HTTP_USER_AGENT="pytest-browser",
            REMOTE_ADDR="203.0.113.9",
        )
    assert response.status_code == 303
    assert response["Location"] == reverse("backpain_report:signup_done")
    subscriber = Subscriber.objects.get()
    assert subscriber.email_canonical == "ann@example.com"
    assert subscriber.source_article == article
    assert subscriber.consent_text.startswith("Yes, email me the free report")
    assert subscriber.consent_user_agent == "pytest-browser"
    assert (
        subscriber.consent_ip.startswith("sha256:") and "203.0.113.9" not in subscriber.consent_ip
    )
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.PENDING
    assert no_broker == [delivery.pk]
    assert not mail.outbox  # sending is the worker's job
    done = client.get(response["Location"])
    assert "Check your inbox" in done.content.decode()


def test_known_address_gets_same_answer_and_no_second_row(
    client, article, no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(reverse("backpain_report:signup"), SIGNUP)
        second = client.post(
            reverse("backpain_report:signup"), {**SIGNUP, "email": "ANN@Example.COM", "name": "X"}
        )
    assert (first.status_code, first["Location"]) == (second.status_code, second["Location"])
    assert Subscriber.objects.count() == 1
    assert Delivery.objects.count() == 1
    assert len(no_broker) == 1


def test_invalid_post_shows_field_errors(client, article):
    response = client.post(reverse("backpain_report:signup"), {"name": "", "email": "nope"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "Please tick the box" in html
    assert not Subscriber.objects.exists()


def test_honeypot_gets_success_and_creates_nothing(client, article, no_broker):
    response = client.post(reverse("backpain_report:signup"), {**SIGNUP, "website": "x"})
    assert response.status_code == 303
    assert not Subscriber.objects.exists() and not no_broker


def test_a_cross_site_signup_is_refused_even_where_django_enforces_csrf(article):
    """No token: Fetch Metadata decides (tests/test_crossorigin.py has the whole rule)."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("backpain_report:signup"), SIGNUP, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status_code == 403
    assert not Subscriber.objects.exists()
    same = client.post(
        reverse("backpain_report:signup"), SIGNUP, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert same.status_code == 303


def test_signup_get_shows_form_page(client, article):
    response = client.get(reverse("backpain_report:signup"))
    assert response.status_code == 200
    assert 'name="email"' in response.content.decode()


def test_wrong_method_is_405(client, article):
    assert client.put(reverse("backpain_report:signup")).status_code == 405
    assert client.get("/back-pain/unsubscribe/x/one-click/").status_code == 405


def test_site_can_override_a_template(client, article, settings, tmp_path):
    override = tmp_path / "backpain_report" / "signup_done.html"
    override.parent.mkdir(parents=True)
    override.write_text("Custom thank-you page")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    response = client.get(reverse("backpain_report:signup_done"))
    assert response.content.decode() == "Custom thank-you page"


def test_unknown_article_slug_falls_back_to_the_default_article(
    client, article, no_broker, django_capture_on_commit_callbacks
):
    """A site's own form may post a stale slug: the reader still gets the report."""
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("backpain_report:signup"), {**SIGNUP, "article": "gone"})
    assert response.status_code == 303
    assert Subscriber.objects.get().source_article == article
