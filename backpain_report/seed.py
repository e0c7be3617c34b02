"""The bundled content: the seed article, the free report and its follow-ups, read from ``seed/``.

The follow-up emails live in ``seed/followups/<language>.md``, one file per language. Each step
starts with a line ``## Day <n>: <subject>`` (``n``: whole days after the report was sent; the
subject runs to the end of the line, at most 60 characters); its body, Markdown, runs to the
next such line and uses ``###`` headings and below. Text before the first step (a comment) is
ignored. Steps are numbered in the order they appear.
"""

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
FOLLOWUPS_DIR = SEED_DIR / "followups"
FOLLOWUP_LANGUAGES = ("en", "de")
_STEP_RE = re.compile(r"^## Day (\d+): (.+)$", re.MULTILINE)


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


@dataclass(frozen=True)
class SeedFollowUp:
    language: str
    position: int
    delay_days: int
    subject: str
    body: str


def read_followups(language: str, path: Path | None = None) -> list[SeedFollowUp]:
    """Parse ``followups/<language>.md`` into its steps (format: see the module docstring)."""
    text = (path or FOLLOWUPS_DIR / f"{language}.md").read_text(encoding="utf-8")
    heads = list(_STEP_RE.finditer(text))
    if not heads:
        raise ValueError(f"{language}: no '## Day <n>: <subject>' line")
    steps = []
    for position, head in enumerate(heads, start=1):
        end = heads[position].start() if position < len(heads) else len(text)
        steps.append(
            SeedFollowUp(
                language=language,
                position=position,
                delay_days=int(head.group(1)),
                subject=head.group(2).strip(),
                body=text[head.end() : end].strip() + "\n",
            )
        )
    return steps


def followup_fields() -> list[SeedFollowUp]:
    """Every bundled follow-up step, all languages (used by ``backpain_seed``)."""
    return [step for language in FOLLOWUP_LANGUAGES for step in read_followups(language)]
