import datetime
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from backpain_report.models import Article, Report
from backpain_report.seed import read_article

ARTICLE_TXT = Path(__file__).resolve().parent.parent / "backpain_report" / "seed" / "article.txt"


def test_read_article_is_faithful():
    article = read_article()
    source = ARTICLE_TXT.read_text(encoding="utf-8")
    assert article.title == "Back Pain Muscle Spasms. Finding the Culprits"
    assert article.original_publication_date == datetime.date(2017, 5, 30)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", source) if p.strip()][2:-1]
    assert len(paragraphs) == 6
    for paragraph in paragraphs:
        assert paragraph in article.body
    assert article.call_to_action == "Claim your Free report to eliminate your Back Pain."


@pytest.mark.django_db
def test_migration_created_article_and_report(article):
    assert article.status == Article.Status.PUBLISHED
    assert article.report.slug == "back-pain-relief-guide"
    assert article.report.edition == 1
    assert "erector spinae" in article.report.body


@pytest.mark.django_db
def test_backpain_seed_restores_edited_content(article, capsys):
    Report.objects.filter(pk=article.report.pk).update(body="edited")
    Article.objects.filter(pk=article.pk).update(body="edited")
    call_command("backpain_seed", "--restore")
    article.refresh_from_db()
    article.report.refresh_from_db()
    assert "erector spinae" in article.body
    assert "erector spinae" in article.report.body
    assert article.report.edition == 2
    assert "Restored" in capsys.readouterr().out


@pytest.mark.django_db
def test_backpain_seed_recreates_deleted_content(capsys):
    Article.objects.all().delete()
    call_command("backpain_seed")
    assert (
        Article.objects.published()
        .filter(slug="back-pain-muscle-spasms-finding-the-culprits")
        .exists()
    )


def test_one_initial_migration_with_the_seed_content_frozen_in_it():
    """Unreleased app: one initial migration (later ones only add fields), and none reads the
    live ``seed`` module (a later edit of the seed must not change what migrating an old
    database creates)."""
    import ast

    from backpain_report.migrations import __path__ as migrations_path

    folder = Path(migrations_path[0])
    names = sorted(p.name for p in folder.glob("0*.py"))
    assert names[0] == "0001_initial.py"
    assert not [name for name in names[1:] if "seed" in (folder / name).read_text()]
    tree = ast.parse((folder / "0001_initial.py").read_text(encoding="utf-8"))
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not [name for name in imported if "backpain_report" in name], imported


@pytest.mark.django_db
def test_migrated_content_is_the_frozen_seed(article):
    import importlib

    frozen = importlib.import_module("backpain_report.migrations.0001_initial")
    assert article.body == frozen.ARTICLE["body"]
    assert article.report.body == frozen.REPORT["body"]
    assert frozen.ARTICLE["original_publication_date"] == datetime.date(2017, 5, 30)
