import pytest
from django.core.exceptions import ValidationError

from backpain_report.rights.addresses import canonical_email, clean_email, clean_name, email_masked


def test_canonical_email_folds_case_and_encodes_idn():
    assert canonical_email("  Ann.Lee+x@EXAMPLE.com ") == "ann.lee+x@example.com"
    assert canonical_email("ann@bücher.de") == "ann@xn--bcher-kva.de"


@pytest.mark.parametrize("bad", ["a@b.com\nBcc: c@d.com", "a\x00@b.com", "a@b.com\u202e"])
def test_clean_email_rejects_control_characters(bad):
    with pytest.raises(ValidationError):
        clean_email(bad)


# Names people really have: dots after initials and titles, apostrophes, hyphens, any script.
REAL_NAMES = [
    "J. R. R. Tolkien",
    "J.R.R. Tolkien",
    "Mary-Ann O'Neil",
    "St. John",
    "Dr. Zoë Łukasiewicz-Øvergaard",
    "Sinéad O\u2019Connor",
    "Mr. T",
    "Ann",
    "José María de la Cruz",
    "Nguyễn Văn An",
    "Ólafur Ragnar",
    "李小龍",
    "Владимир",
    "Παναγιώτης",
    "محمد",
    "Anne-Marie d'Arc Jr.",
    "Louis XIV",
    "Ann Lee II",
]
# Names that would carry a link or an address into an email: URLs, hosts, addresses, also
# written with fullwidth or ideographic dots, invisible characters or spaces around the dot.
ADDRESS_NAMES = [
    "www.evil",
    "Visit WWW dot evil www.",
    "http://evil.example/x",
    "HTTPS evil",
    "hxxp://x and http",
    "ann@example.com",
    "Ann @ home",
    "evil.example",
    "bit.ly/x",
    "Ann, see bit.ly/free-money",
    "Hello from Evil.Example",
    "EVIL.COM",
    "bücher.de",
    "xn--bcher-kva.de",
    "evil . example",
    "evil .example",
    "evil\uff0eexample",  # fullwidth full stop
    "evil\u3002example",  # ideographic full stop
    "evil\uff61example",  # halfwidth ideographic full stop
    "evil\ufe52example",  # small full stop
    "evil\u2024example",  # one dot leader
    "evil\u200b.\u200bexample",  # zero-width spaces around the dot
    "\uff45\uff56\uff49\uff4c.com",  # fullwidth letters
    "ann\uff20example",  # fullwidth commercial at
    "\uff48\uff54\uff54\uff50 evil",  # fullwidth "http"
    "ftp://files",
    "10.0.0.1",
    "Ann.Lee",
]


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_names_pass(name):
    assert clean_name(name) == name


@pytest.mark.parametrize("name", ADDRESS_NAMES)
def test_names_with_an_address_are_refused_with_the_reason(name):
    with pytest.raises(ValidationError) as caught:
        clean_name(name)
    assert caught.value.messages == ["Please enter just your name — no web or email addresses."]
    assert caught.value.code == "address"


def test_an_accepted_address_has_a_canonical_form_that_fits_its_column():
    from backpain_report.models import PendingSignup, Subscriber

    domain = ".".join(["ü" * 50] * 5) + ".de"
    address = "a" * (320 - len(domain) - 1) + "@" + domain
    try:
        accepted = clean_email(address)
    except ValidationError:
        return  # refused as a form error: fine
    for model in (PendingSignup, Subscriber):
        limit = model._meta.get_field("email_canonical").max_length
        assert len(canonical_email(accepted)) <= limit, model.__name__


@pytest.mark.parametrize("name", ["Ann 2.0", "Call 555 0100", "Bob ٣", "Zoë \uff10\uff17"])
def test_names_with_digits_are_refused_with_the_reason(name):
    """A phone number is a call to action too (the name reaches unconfirmed addresses)."""
    with pytest.raises(ValidationError) as caught:
        clean_name(name)
    assert caught.value.messages == ["Please enter just your name — no numbers."]


# Issue 22, defect 5: numbers in every Unicode form, not only decimal digits (category Nd).
NUMBER_NAMES = [
    "Call \u2464\u2464\u2464 \u2460\u2461\u2462\u2463",  # circled digits (No)
    "Ann \u2075\u2075\u2075 \u00b9\u00b2\u00b3\u2074",  # superscript digits (No)
    "Ann \u248c\u248c\u248c",  # digit full stop (No)
    "Ann \u2474\u2475\u2476",  # parenthesized digits (No)
    "Ann \u216b",  # roman numeral twelve (Nl)
    "Ann \u2170\u2171",  # small roman numerals (Nl)
    "Ann \u00bc",  # vulgar fraction (No)
    "Ann \u2082\u2080",  # subscript digits (No)
    "Ann \u24f5\u24f6",  # double circled digits (No)
    "Ann \U0001f102",  # digit one comma (No)
    "Ann \u3007\u3007",  # ideographic number zero (Nl)
    "Ann \u3021\u3022",  # Hangzhou numerals (Nl)
    "Ann \u0f2a",  # Tibetan half digit (No)
    "Ann \U0001d7d3\U0001d7d3",  # mathematical bold digits (Nd)
    "Ann \uff15\uff15\uff15",  # fullwidth digits (Nd)
    "Ann \u0665\u0665",  # Arabic-Indic digits (Nd)
    # Symbols (So) that hold a number in compatibility form (NFKC): "10日", "1月", "0点".
    "Ann \u33e9",
    "Ann \u32c0",
    "Ann \u3358",
    "Ann \u3251",  # circled number twenty one (No)
]
# Letters with a numeric value (ideographs in names) and names written with letters pass.
NAMES_WITH_NUMERIC_LETTERS = ["\u4e09\u90ce", "\u674e\u56db", "Louis XIV", "\u4e07\u91cc"]


@pytest.mark.parametrize("name", NUMBER_NAMES)
def test_names_with_numbers_in_any_form_are_refused_with_the_reason(name):
    """A phone number written in circled, superscript, roman or compatibility forms is a call
    to action too."""
    with pytest.raises(ValidationError) as caught:
        clean_name(name)
    assert caught.value.code == "digits"
    assert caught.value.messages == ["Please enter just your name — no numbers."]


@pytest.mark.parametrize("name", NAMES_WITH_NUMERIC_LETTERS)
def test_names_whose_letters_have_a_numeric_value_pass(name):
    assert clean_name(name) == name


@pytest.mark.parametrize(
    ("address", "length"),
    [
        # 320 characters typed; the domain IDNA-encoded makes 350.
        ("a" * 62 + "@" + ".".join(["ü" * 50] * 5) + ".de", 350),
        # Django's validator lets "İ" through (a case-insensitive [A-Z]); lower-cased it is two.
        ("İ" * 300 + "@example.com", 612),
    ],
)
def test_an_address_whose_stored_form_is_too_long_is_a_form_error(address, length):
    """Regression (review of issue 10, #1): the canonical form is stored in a column of 320
    characters too, so an address that grows when canonicalised is refused, saying why."""
    assert len(address) <= 320
    with pytest.raises(ValidationError) as caught:
        clean_email(address)
    assert caught.value.code == "max_length"
    [message] = caught.value.messages
    assert message.startswith("An email address has at most 320 characters.")
    assert f"this one has {length}" in message


def test_the_length_limits_are_the_columns_lengths():
    """Every field the sign-up form writes is bounded by the column that stores it."""
    from backpain_report.models import PendingSignup, Subscriber
    from backpain_report.rights.addresses import MAX_EMAIL_LENGTH, MAX_NAME_LENGTH

    for model in (PendingSignup, Subscriber):
        assert model._meta.get_field("email").max_length == MAX_EMAIL_LENGTH
        assert model._meta.get_field("email_canonical").max_length == MAX_EMAIL_LENGTH
        assert model._meta.get_field("name").max_length == MAX_NAME_LENGTH


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("maria@example.com", "m…@example.com"),
        ("ab@example.com", "a…@example.com"),
        ("a@x.com", "…@x.com"),  # the first letter would be the whole local part
        ("ü@bücher.de", "…@bücher.de"),
        ("no-at-sign", "…"),
    ],
)
def test_a_masked_address_never_shows_a_whole_local_part(address, shown):
    """Attack (issue 14): ``a@x.com`` was logged as ``a…@x.com``, the whole address."""
    assert email_masked(address) == shown
