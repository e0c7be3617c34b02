"""Markdown to safe HTML: the one place user-editable text becomes markup.

Besides standard Markdown (with the ``extra``, ``sane_lists`` and ``toc`` extensions) two
conventions are understood, both for the article and the PDF report:

* task-list items, ``- [ ] text`` (or ``- [x] text``), become ``<li class="check">`` items in a
  ``<ul class="checklist">``, styled as real tick boxes;
* ``<div class="callout" markdown="1"> ... </div>`` blocks (``md_in_html``) hold Markdown and are
  styled as boxed call-outs, e.g. ``class="callout warning"``.

Whatever the Markdown produces is then sanitised by nh3, so raw HTML in the text is cleaned, not
trusted.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as etree

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

ALLOWED_TAGS = {
    "a", "abbr", "blockquote", "br", "code", "em", "h2", "h3", "h4", "hr", "li", "ol",
    "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul", "div", "span",
    "input", "label", "aside", "section",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "div": {"class"},
    "span": {"class"},
    "aside": {"class"},
    "section": {"class"},
    "ul": {"class"},
    "li": {"class"},
    "p": {"class"},
    "input": {"type", "checked", "disabled"},
    "h2": {"id"},
    "h3": {"id"},
    "h4": {"id"},
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}

_TASK_RE = re.compile(r"^\[([ xX])\]\s+")


class _ChecklistProcessor(Treeprocessor):
    """Turn ``<li>[ ] text</li>`` into ``<li class="check">text</li>`` (``[x]``: checked)."""

    def run(self, root: etree.Element) -> None:
        for ul in root.iter("ul"):
            checks = 0
            for li in ul.findall("li"):
                holder = li[0] if len(li) and li[0].tag == "p" and not li.text else li
                text = holder.text or ""
                match = _TASK_RE.match(text)
                if match:
                    holder.text = text[match.end() :]
                    done = match.group(1) != " "
                    li.set("class", "check checked" if done else "check")
                    checks += 1
            if checks:
                ul.set("class", "checklist")


class _ChecklistExtension(Extension):
    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.treeprocessors.register(_ChecklistProcessor(md), "backpain_checklist", 5)


@functools.lru_cache(maxsize=32)
def render_markdown(text: str) -> SafeString:
    """Render Markdown and sanitise the result; raw HTML in ``text`` is cleaned, not trusted.

    Remembered by the text itself (the last 32 texts per process): an article page or a report
    edition renders the same text many times, and an edited text is a new key, never stale.
    """
    html = markdown.markdown(
        text,
        extensions=["extra", "sane_lists", "toc", _ChecklistExtension()],
        output_format="html",
    )
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer",
    )
    return mark_safe(clean)
