"""The built artefacts: sdist and wheel build, pass ``twine check --strict``, and a wheel installed
away from the checkout carries its templates, static files, seed content and migrations."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def test_twine_check_strict(dist):
    files = sorted(str(p) for p in dist.iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_ships_everything_the_app_needs(dist):
    [wheel] = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in [
        "backpain_report/py.typed",
        "backpain_report/migrations/0001_initial.py",
        "backpain_report/seed/article.txt",
        "backpain_report/seed/report.md",
        # Migration 0010 reads them (and quietly makes no steps without them).
        "backpain_report/seed/followups/en.md",
        "backpain_report/seed/followups/de.md",
        "backpain_report/templates/backpain_report/article_detail.html",
        "backpain_report/templates/backpain_report/email/report.html",
        "backpain_report/templates/backpain_report/report/report.html",
        "backpain_report/static/backpain_report/css/backpain_report.css",
        "backpain_report/fonts/Vollkorn-Regular.ttf",
        "backpain_report/fonts/Inter-OFL.txt",
        "backpain_report/report/pdfjoin.py",
        "backpain_report/locale/de/LC_MESSAGES/django.po",
        "backpain_report/locale/de/LC_MESSAGES/django.mo",
        *(
            f"backpain_report/migrations/{path.name}"
            for path in (Path(__file__).parent.parent / "backpain_report" / "migrations").glob(
                "0*.py"
            )
        ),
        "backpain_report/contrib/wagtail/wagtail_hooks.py",
        "backpain_report/contrib/wagtail/templates/backpain_report/wagtail/signup_block.html",
    ]:
        assert needed in names, needed
    assert not any(name.startswith(("tests/", "example_project/")) for name in names)


def test_wheel_leaves_the_dev_tools_out(dist):
    """The scale and benchmark tools (benchmarks/devtools/) are for a checkout, not for sites."""
    [wheel] = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    commands = "backpain_report/management/commands/"
    assert f"{commands}backpain_seed.py" in names  # the site's own commands are there
    for absent in ("backpain_report/populate.py", f"{commands}backpain_populate.py",
                   f"{commands}backpain_bench.py"):  # fmt: skip
        assert absent not in names, absent
    assert not any(name.startswith("benchmarks/") for name in names)
    assert not any("populate" in name or "bench" in name for name in names), sorted(names)


def test_installed_wheel_migrates_and_renders(dist, tmp_path):
    [wheel] = dist.glob("*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
         str(wheel)],
        check=True,
    )  # fmt: skip
    script = """
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "crispy_forms",
                    "crispy_bootstrap5", "backpain_report"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
    ROOT_URLCONF="site_urls", USE_TZ=True,
    BACKPAIN_REPORT={"FROM_EMAIL": "a@example.com", "SITE_URL": "https://x.example"},
    CRISPY_ALLOWED_TEMPLATE_PACKS="bootstrap5", CRISPY_TEMPLATE_PACK="bootstrap5",
    STATIC_URL="/static/",
)
django.setup()
import backpain_report
from django.core.management import call_command
call_command("migrate", verbosity=0)
from backpain_report.models import Article
from django.template.loader import render_to_string
article = Article.objects.get()
from backpain_report.models import FollowUpStep
assert FollowUpStep.objects.filter(report=article.report).count() == 6  # 0010, from the files
from backpain_report.forms import SignupForm
html = render_to_string("backpain_report/article_detail.html",
                        {"article": article, "form": SignupForm(article_slug=article.slug)})
assert "erector spinae" in html
print(backpain_report.__file__)
"""
    (tmp_path / "site_urls.py").write_text(
        "from django.urls import include, path\n"
        'urlpatterns = [path("", include("backpain_report.urls"))]\n'
    )
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *site_packages])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(target))
