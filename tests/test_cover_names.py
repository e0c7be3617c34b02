"""Issue 22, defect 6: a reader's name stays inside the PDF cover whatever its script.

Glyph positions are read from the rendered cover (pypdfium2's character boxes, in points from
the page's lower left corner): every glyph lies inside the cover's text box (24 mm margins),
and the name's glyphs lie between the "Prepared for" label and the date line below it."""

from __future__ import annotations

import datetime
import unicodedata

import pypdfium2 as pdfium
import pytest

from backpain_report.report.pdf import MAX_MARKS, reader_name_breakable, render_cover_pdf
from tests.samples import make_report

pytestmark = pytest.mark.heavy  # one WeasyPrint render per name

PREPARED_ON = datetime.date(2001, 2, 3)
MM = 72 / 25.4
PAGE_WIDTH = 210 * MM
LEFT, RIGHT = 24 * MM, PAGE_WIDTH - 24 * MM  # .cover-meta's left and right
TOLERANCE = 0.5  # pt: a glyph's box may round past its line by a fraction of a point

Box = tuple[float, float, float, float]  # left, bottom, right, top

NAMES = {
    "halfwidth katakana sound marks": "\uff9f" * 100,
    "halfwidth katakana": "\uff76\uff9e" * 50,
    "CJK": "\u674e" * 100,
    "Arabic": "\u0645\u062d\u0645\u062f" * 25,
    "Devanagari": "\u0905\u0928\u0940\u0924\u093e" * 20,
    "Hangul jamo": "\u1100" + "\u1161" * 99,
    "Hangul": "\ud55c" * 100,
    "emoji": "\U0001f600" * 100,
    "emoji joined": "\U0001f600" + "\u200d\U0001f600" * 49,
    "emoji skin tones": "\U0001f44b" + "\U0001f3fd" * 99,
    "flag tags": "\U0001f3f4" + "\U000e0067" * 99,
    "combining marks": "a" + "\u0301" * 99,
    "combining marks on each": "\u0174\u0301\u0302\u0303\u0304" * 20,
    "Arabic prepended marks": "\u0600" * 99 + "a",
    "Egyptian hieroglyphs (no font)": "\U00013000" * 100,
    "long Latin": "\u0174" * 100,
    "long Latin, a short name": "\u0174" * 36,
    "fullwidth Latin": "\uff37" * 100,
}


def page_glyphs(pdf: bytes) -> list[tuple[str, Box]]:
    """The cover's glyphs (their text, "" for one without, such as an emoji) and boxes, in
    drawing order; the line ends the extractor adds and the name's invisible break
    opportunities left out."""
    page = pdfium.PdfDocument(pdf)[0]
    text = page.get_textpage()
    glyphs = []
    for index in range(text.count_chars()):
        char = text.get_text_range(index, 1)
        if char not in ("\r", "\n", " ", "\u200b"):
            glyphs.append((char, text.get_charbox(index)))
    assert round(page.get_size()[0]) == round(PAGE_WIDTH)
    return glyphs


def boxes_of(glyphs: list[tuple[str, Box]], words: str) -> list[Box]:
    """The boxes of ``words`` (spaces left out) where they first occur."""
    chars = "".join(char for char, _box in glyphs)
    wanted = words.replace(" ", "")
    at = chars.index(wanted)
    return [box for _char, box in glyphs[at : at + len(wanted)]]


@pytest.fixture(scope="module")
def fixed_text() -> set[str]:
    """The characters of a cover without a name: the fixed text, not the reader's."""
    pdf = render_cover_pdf(report=make_report(), reader_name="", prepared_on=PREPARED_ON)
    return {char for char, _box in page_glyphs(pdf)}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_a_name_stays_inside_the_cover_whatever_its_script(name, fixed_text):
    pdf = render_cover_pdf(report=make_report(), reader_name=name, prepared_on=PREPARED_ON)
    glyphs = page_glyphs(pdf)
    outside = [
        (char, box)
        for char, box in glyphs
        if box[0] < LEFT - TOLERANCE or box[2] > RIGHT + TOLERANCE
    ]
    assert not outside, f"{len(outside)} glyphs outside {LEFT:.0f}-{RIGHT:.0f} pt: {outside[:3]}"
    label_bottom = min(box[1] for box in boxes_of(glyphs, "PREPARED FOR"))
    date_top = max(box[3] for box in boxes_of(glyphs, "3 February 2001"))
    names = [box for char, box in glyphs if char not in fixed_text]
    assert names  # the name's glyphs were found: the check below runs
    for box in names:
        assert date_top - TOLERANCE <= box[1] and box[3] <= label_bottom + TOLERANCE, box


@pytest.mark.parametrize(
    "name",
    ["Nguyễn Thị Ánh", "\u0f56\u0f66\u0f92\u0fb2\u0f74\u0f56\u0f66", "שָׁלוֹם", "अनीता शर्मा",
     "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "Zoë Łukasiewicz", "李小龍"],
)  # fmt: skip
def test_names_of_real_scripts_are_shown_as_they_are(name):
    assert reader_name_breakable(unicodedata.normalize("NFC", name)) == unicodedata.normalize(
        "NFC", name
    )


def test_runs_of_joined_characters_get_break_opportunities_and_marks_a_limit():
    shown = reader_name_breakable("\uff9f" * 100)
    assert shown.replace("\u200b", "") == "\uff9f" * 100  # nothing left out, only breaks added
    assert max(len(unit) for unit in shown.split("\u200b")) <= 9
    assert reader_name_breakable("a" + "\u0301" * 99) == "a" + "\u0301" * MAX_MARKS
