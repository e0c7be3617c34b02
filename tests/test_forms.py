import pytest

from backpain_report.forms import SignupForm

VALID = {"name": "Ann", "email": "ann@example.com", "consent": "on"}


@pytest.mark.django_db
def test_valid_form():
    form = SignupForm(VALID)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == "Ann"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("email", "not-an-address", "Enter a valid email address."),
        ("email", "", "This field is required."),
        ("email", "a@b.com\r\nBcc: victim@example.com", "Enter a valid email address."),
        ("email", "x" * 310 + "@example.com", "An email address has at most 320 characters."),
        ("name", "   ", "This field is required."),
        ("name", "A" * 101, "A name has at most 100 characters."),
        ("name", "A" * 1_000_000, "A name has at most 100 characters."),
        ("name", "Ann, see bit.ly/x", "Please enter just your name — no web or email addresses."),
        ("name", "ann@example.com", "Please enter just your name — no web or email addresses."),
        ("email", "a" * 1_000_000 + "@example.com", "An email address has at most 320 characters."),
        ("consent", "", "Please tick the box so we may email you the report."),
    ],
)
def test_field_errors_are_clear(field, value, error):
    form = SignupForm({**VALID, field: value})
    assert not form.is_valid()
    assert error in form.errors[field]


@pytest.mark.django_db
def test_name_is_stripped_of_control_characters():
    form = SignupForm({**VALID, "name": "  Ann\u202e  \r\n\t Lee\x07 "})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == "Ann Lee"


@pytest.mark.django_db
def test_nul_bytes_are_a_form_error():
    form = SignupForm({**VALID, "name": "Ann\x00"})
    assert form.errors["name"] == ["Null characters are not allowed."]


@pytest.mark.django_db
def test_honeypot_is_detected():
    assert SignupForm({**VALID, "website": "http://spam"}).is_bot
    assert not SignupForm(VALID).is_bot


@pytest.mark.django_db
def test_form_renders_with_crispy_and_consent_text():
    from crispy_forms.utils import render_crispy_form

    html = render_crispy_form(SignupForm(article_slug="x"))
    assert 'name="email"' in html
    assert "I can unsubscribe at any time" in html


@pytest.mark.django_db
def test_an_address_too_long_once_idna_encoded_is_a_form_error():
    """320 characters typed, 350 as stored (the domain IDNA-encoded): a form error, not a 500."""
    address = "a" * 62 + "@" + ".".join(["ü" * 50] * 5) + ".de"
    form = SignupForm({**VALID, "email": address})
    assert not form.is_valid()
    [error] = form.errors["email"]
    assert error.startswith("An email address has at most 320 characters.") and "350" in error
