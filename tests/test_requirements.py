"""The dependency bounds declared in setup.cfg against what the code uses and what was tested.

``make test-compat`` installs every lower bound exactly (tools/lowest_requirements.py) and runs
the unit tests there; this module keeps the bounds themselves honest.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

# The oldest release of each dependency that has everything the code uses, and why.
NEEDS = {
    "Django": ("5.2", "the oldest supported Django, 5.2 LTS"),
    "django-crispy-forms": ("2.4", "the first release that supports Django 5.2"),
    "crispy-bootstrap5": ("2025.4", "the first release that supports Django 5.2"),
    "celery": ("5.4", "shared_task, connection_for_write, send_task(connection=, retry=False)"),
    "weasyprint": (
        "68",
        "pdf.PackageOnlyURLFetcher subclasses weasyprint.urls.URLFetcher (new in 68.0) and "
        "renders with pdf_tags (new in 66.0)",
    ),
    "pypdf": (
        "4.3.1",
        "pdfjoin uses pypdf.errors, PageObject.indirect_reference and StreamObject._data (3.0+); "
        "before 4.3.1 importing pypdf warns (and with a newer cryptography fails) over ARC4",
    ),
    "Markdown": ("3.5", "extra (md_in_html), toc, sane_lists and Treeprocessor registration"),
    "nh3": ("0.2.14", "nh3.clean with tags, attributes, url_schemes and link_rel"),
    "pypdfium2": (
        "4.30",
        "covers.pdf_page_png: PdfDocument(bytes), PdfPage.render(scale=).to_pil() (the 4.x API)",
    ),
    "Pillow": ("9.1", "WeasyPrint 68's own lower bound; covers.py saves the cover as PNG"),
    "standardwebhooks": (
        "1.3",
        "delivery/webhooks signs with Webhook(secret).sign(msg_id, timestamp, data) taking bytes",
    ),
}
# The first major (CalVer: year) not yet tested: the upper bound may be no higher. pypdf's is
# strict in earnest: pdfjoin reads the private StreamObject._data.
UNTESTED = {
    "Django": "6.2",
    "django-crispy-forms": "3",
    "crispy-bootstrap5": "2027",
    "celery": "6",
    "weasyprint": "71",
    "pypdf": "8",
    "Markdown": "4",
    "nh3": "0.4",
    "pypdfium2": "6",
    "Pillow": "14",
    "standardwebhooks": "2",
}


def _tool():
    path = ROOT / "tools" / "lowest_requirements.py"
    spec = importlib.util.spec_from_file_location("lowest_requirements", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lowest_requirements = _tool()
DECLARED = {
    req.name: req
    for req in map(Requirement, lowest_requirements.install_requires(ROOT / "setup.cfg"))
}


def _bound(requirement: Requirement, operator: str) -> Version:
    [bound] = [Version(s.version) for s in requirement.specifier if s.operator == operator]
    return bound


def test_every_dependency_is_known_here():
    assert set(DECLARED) == set(NEEDS) == set(UNTESTED)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_lower_bound_covers_what_the_code_uses(name):
    needed, why = NEEDS[name]
    declared = _bound(DECLARED[name], ">=")
    assert declared >= Version(needed), f"{name}>={declared} is too old: {why}"


@pytest.mark.parametrize("name", sorted(UNTESTED))
def test_upper_bound_stops_before_an_untested_major(name):
    assert _bound(DECLARED[name], "<") <= Version(UNTESTED[name])


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_installed_version_is_within_the_declared_bounds(name):
    """The versions the tests run on are ones setup.cfg allows (so they test what it claims)."""
    assert DECLARED[name].specifier.contains(version(name), prereleases=True)


def test_constraints_pin_every_lower_bound(tmp_path):
    pins = lowest_requirements.constraints(ROOT / "setup.cfg").splitlines()
    integrations = map(Requirement, lowest_requirements.integration_requires(ROOT / "setup.cfg"))
    expected = [f"{name}=={_bound(req, '>=')}" for name, req in DECLARED.items()]
    assert pins == expected + [f"{req.name}=={_bound(req, '>=')}" for req in integrations]
    assert "weasyprint==68" in pins
    assert "wagtail==7.0" in pins and "django-anymail==13.0" in pins

    setup_cfg = tmp_path / "setup.cfg"
    setup_cfg.write_text("[options]\ninstall_requires =\n    Django>=5.2\n    pypdf<8\n")
    with pytest.raises(ValueError, match="pypdf<8"):
        lowest_requirements.constraints(setup_cfg)
