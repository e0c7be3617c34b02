"""The bundled content: the seed article and the free report, read from ``seed/``."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

SEED_DIR = Path(__file__).resolve().parent / "seed"
ARTICLE_SLUG = "back-pain-muscle-spasms-finding-the-culprits"
REPORT_SLUG = "back-pain-relief-guide"
REPORT_TITLE = "Back Pain Muscle Spasms: Your Practical Relief Guide"
REPORT_SUBTITLE = "How to calm a spasm, keep it from coming back, and know when to see a doctor"
CTA_PREFIX = "Claim your Free report"


@dataclass(frozen=True)
class SeedArticle:
    title: str
    byline: str
    original_publication_date: datetime.date
    summary: str
    body: str
    call_to_action: str


def read_article(path: Path | None = None) -> SeedArticle:
    """Parse ``article.txt``: title line, ``By | <date>`` line, paragraphs, the closing CTA."""
    text = (path or SEED_DIR / "article.txt").read_text(encoding="utf-8")
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    title, byline_line, *paragraphs = blocks
    author, _, date_text = byline_line.partition("|")
    author = author.strip().removeprefix("By").strip()
    published = datetime.datetime.strptime(date_text.strip(), "%B %d, %Y").date()
    call_to_action = ""
    if paragraphs and paragraphs[-1].startswith(CTA_PREFIX):
        # The source ends mid-sentence ("... Back Pain at"): the link it led to is our form.
        call_to_action = re.sub(r"\s+at$", "", paragraphs.pop()).rstrip(".") + "."
    summary = paragraphs[0].split(". ")
    return SeedArticle(
        title=title,
        byline=author,
        original_publication_date=published,
        summary=(". ".join(summary[:2]) + ".")[:300],
        body="\n\n".join(paragraphs),
        call_to_action=call_to_action,
    )


def read_report_body() -> str:
    """The bundled report's Markdown body."""
    return (SEED_DIR / "report.md").read_text(encoding="utf-8")


def report_fields() -> dict:
    """The bundled report's editable fields (used by the data migration and ``backpain_seed``)."""
    return {
        "title": REPORT_TITLE,
        "subtitle": REPORT_SUBTITLE,
        "author": read_article().byline or "The Back Pain Report team",
        "body": read_report_body(),
    }


def article_fields() -> dict:
    """The seed article's editable fields, parsed from ``article.txt``."""
    source = read_article()
    return {
        "title": source.title,
        "byline": source.byline,
        "original_publication_date": source.original_publication_date,
        "summary": source.summary,
        "body": source.body,
        "call_to_action": source.call_to_action,
    }
