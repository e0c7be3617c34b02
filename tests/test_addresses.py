import pytest
from django.core.exceptions import ValidationError

from backpain_report.addresses import canonical_email, clean_email


def test_canonical_email_folds_case_and_encodes_idn():
    assert canonical_email("  Ann.Lee+x@EXAMPLE.com ") == "ann.lee+x@example.com"
    assert canonical_email("ann@bücher.de") == "ann@xn--bcher-kva.de"


@pytest.mark.parametrize("bad", ["a@b.com\nBcc: c@d.com", "a\x00@b.com", "a@b.com\u202e"])
def test_clean_email_rejects_control_characters(bad):
    with pytest.raises(ValidationError):
        clean_email(bad)
