"""The report's pages as a reader sees them: the closing page, fill, headers, leaders, figures.

Every page of the sample report is also written as a PNG to ``test-artefacts/pdf/`` (gitignored)
to be looked at.
"""

from __future__ import annotations

import datetime
import importlib
import io
import itertools
import logging
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import InMemoryStorage
from django.test import override_settings
from django.urls import reverse
from django.utils import translation
from PIL import Image
from pypdf import PdfReader

from backpain_report import checks
from backpain_report.report import pdfcache
from backpain_report.report.pdf import (
    PACKAGE_DIR,
    PackageOnlyURLFetcher,
    layout_html,
    render_report_html,
    render_report_pdf,
)
from backpain_report.site import DEFAULT_CTA_TEXT
from tests.samples import make_report

PREPARED_ON = datetime.date(2025, 3, 14)
READER = "Margaret Oyelaran-Whitfield"
SITE = "https://reports.example.com"  # tests/settings.py

# Seconds a test: whole reports rendered and read back; `make test-fast` skips it.
pytestmark = pytest.mark.heavy
CTA = {
    "text": "Book a free call with our physiotherapist",
    "url": "https://physio.example.org/book/",
}
SOURCES = (
    "https://www.nhs.uk/conditions/back-pain/",
    "https://www.nhs.uk/conditions/sciatica/",
    "https://www.nhs.uk/conditions/cauda-equina-syndrome/",
    "https://www.nice.org.uk/guidance/ng59",
)
ARTEFACTS = Path(__file__).resolve().parent.parent / "test-artefacts" / "pdf"
MM = 72 / 25.4
# The body pages' content box (report.css: A4, margin 22mm 19mm 20mm 21mm), in points.
CONTENT_TOP, CONTENT_BOTTOM = 22 * MM, (297 - 20) * MM


def app_settings(**extra: object) -> dict[str, object]:
    return {"FROM_EMAIL": "Back Pain Reports <reports@example.com>", "SITE_URL": SITE, **extra}


def render_bytes() -> bytes:
    return render_report_pdf(report=make_report(), reader_name=READER, prepared_on=PREPARED_ON)


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.pdf"
    path.write_bytes(render_bytes())
    return path


@pytest.fixture(scope="module")
def sample(pdf_path: Path) -> PdfReader:
    return PdfReader(pdf_path)


def uris(page) -> list[str]:
    """The URIs of the page's link annotations."""
    found = []
    for annot in page.get("/Annots") or []:
        annot = annot.get_object()
        action = annot.get("/A")
        if annot.get("/Subtype") == "/Link" and action and "/URI" in action.get_object():
            found.append(str(action.get_object()["/URI"]))
    return found


def pdftotext(path: Path, page: int, *extra: str) -> str:
    args = ["pdftotext", "-f", str(page), "-l", str(page), *extra, str(path), "-"]
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def words(path: Path, page: int) -> list[tuple[float, float, float, float, str]]:
    """``(x_min, y_min, x_max, y_max, word)`` for every word on the page (pdftotext -bbox)."""
    found = []
    pattern = r'xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)<'
    for match in re.finditer(pattern, pdftotext(path, page, "-bbox")):
        *box, word = match.groups()
        found.append((*map(float, box), word))
    return found


def section_starts(reader: PdfReader) -> list[tuple[int, str]]:
    """``(page number, title)`` of every section bookmark after the contents, in order."""
    return [
        (reader.get_destination_page_number(item) + 1, item.title)
        for item in reader.outline
        if not isinstance(item, list) and item.title not in ("Contents", reader.metadata.title)
    ]


def darkest(image: Image.Image, x: int, y: int, width: int, height: int) -> int:
    """The darkest grey level in a rectangle of a greyscale image."""
    return image.crop((x, y, x + width, y + height)).getextrema()[0]


# ---- The closing page --------------------------------------------------------------------------


def test_closing_page_has_the_next_step_the_site_and_the_sources(
    sample: PdfReader, pdf_path: Path
) -> None:
    last = sample.pages[-1]
    links = uris(last)
    home = SITE + reverse("backpain_report:home")
    assert links.count(home) == 2  # the default next step and the site's own link
    for url in SOURCES:
        assert url in links
    text = pdftotext(pdf_path, len(sample.pages))
    flat = re.sub(r"\s+", " ", text).lower()
    order = ["Where to go from here", "Your next step", DEFAULT_CTA_TEXT, "Sources"]
    order += ["NHS: Back pain", "NICE guideline NG59", "Important information"]
    positions = [flat.find(phrase.lower()) for phrase in order]
    assert -1 not in positions and positions == sorted(positions), positions
    assert "reports.example.com" in flat


def test_closing_page_links_to_the_configured_cta_also_on_the_cached_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pdfcache.clear_memory()
    with override_settings(BACKPAIN_REPORT=app_settings(REPORT_CTA=CTA)):
        full = PdfReader(io.BytesIO(render_bytes()))
        with caplog.at_level(logging.WARNING):
            cached = pdfcache.report_pdf(
                report=make_report(),
                reader_name=READER,
                prepared_on=PREPARED_ON,
                storage=InMemoryStorage(),
            )
    pdfcache.clear_memory()
    assert "cover swap impossible" not in caplog.text  # the cover stayed free of links
    for reader in (full, PdfReader(io.BytesIO(cached))):
        assert CTA["url"] in uris(reader.pages[-1])
        assert CTA["text"] in re.sub(r"\s+", " ", reader.pages[-1].extract_text())
        assert uris(reader.pages[0]) == []


def test_without_site_url_the_closing_page_keeps_its_sources() -> None:
    with override_settings(BACKPAIN_REPORT=app_settings(SITE_URL=None)):
        reader = PdfReader(io.BytesIO(render_bytes()))
    last = reader.pages[-1]
    assert "your next step" not in last.extract_text().lower()
    assert sorted(uris(last)) == sorted(SOURCES)


@pytest.mark.parametrize(
    "value",
    [
        {"text": "Book"},
        {"text": "", "url": "https://example.com/"},
        {"text": "Book", "url": "/book/"},
        {"text": "Book", "url": "javascript:alert(1)"},
        {"text": "x" * 201, "url": "https://example.com/"},
        {"text": "Book", "url": "https://example.com/", "extra": 1},
        "https://example.com/",
    ],
)
def test_a_report_cta_without_text_and_absolute_url_is_an_error(value: object) -> None:
    # A dict the validator refuses is E009; a value that is no dict at all, the wrong type (E002).
    expected = "backpain_report.E009" if isinstance(value, dict) else "backpain_report.E002"
    with override_settings(BACKPAIN_REPORT=app_settings(REPORT_CTA=value)):
        errors = [e for e in checks.check_settings() if "REPORT_CTA" in e.msg]
    assert [e.id for e in errors] == [expected]


def test_a_good_report_cta_passes_the_checks() -> None:
    with override_settings(BACKPAIN_REPORT=app_settings(REPORT_CTA=CTA)):
        assert not [e for e in checks.check_settings() if "REPORT_CTA" in e.msg]


# ---- Layout ------------------------------------------------------------------------------------


def test_every_page_as_png_for_looking_at(
    pdf_path: Path, sample: PdfReader, tmp_path: Path
) -> None:
    """Checked in a folder of this run's own, then copied to ``test-artefacts/pdf/``: two runs
    side by side (`make test`'s unit tiers and .ci/run's test-compat) each emptied and counted
    that shared folder while the other wrote to it."""
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", str(pdf_path), str(tmp_path / "report")],
        check=True,
        timeout=120,
    )
    pngs = sorted(tmp_path.glob("report-*.png"))
    assert len(pngs) == len(sample.pages)
    assert all(png.read_bytes().startswith(b"\x89PNG") for png in pngs)
    artefacts_publish(pngs, ARTEFACTS)


def artefacts_publish(files: list[Path], folder: Path) -> None:
    """Put copies of FILES in FOLDER, each whole (written aside, then renamed into place), and
    remove the pages of an earlier, longer report; another run's copy may win, never a torn
    file or an error."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        aside = folder / f".{file.name}.{os.getpid()}"
        shutil.copyfile(file, aside)
        os.replace(aside, folder / file.name)
    names = {file.name for file in files}
    for old in folder.glob("report-*.png"):
        if old.name not in names:
            old.unlink(missing_ok=True)


def test_publishing_artefacts_leaves_whole_pages_of_the_latest_report(tmp_path: Path) -> None:
    folder = tmp_path / "artefacts"
    longer, shorter = tmp_path / "longer", tmp_path / "shorter"
    for source, pages in ((longer, 12), (shorter, 3)):
        source.mkdir()
        for page in range(1, pages + 1):
            (source / f"report-{page:02d}.png").write_bytes(f"{source.name} {page}".encode())
    artefacts_publish(sorted(longer.iterdir()), folder)
    artefacts_publish(sorted(shorter.iterdir()), folder)
    assert sorted(path.name for path in folder.iterdir()) == [
        "report-01.png",
        "report-02.png",
        "report-03.png",
    ]
    assert (folder / "report-03.png").read_bytes() == b"shorter 3"


#: The section kept whole (heading, introduction and the red-flag box: the red flags are never
#: split, nor parted from their heading) that may leave the page before it part empty, when it
#: does not fit below the exercise cards. No other page may end short.
KEPT_WHOLE = "When to see a doctor"


@pytest.fixture(scope="module")
def pdf_path_de(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report-de") / "report.pdf"
    with translation.override("de"):
        path.write_bytes(render_bytes())
    return path


def page_fills(pdf_path: Path, folder: Path) -> dict[int, float]:
    """How far down its content box each page after the cover is inked (0 to 1): the lowest
    row of the page's text area darker than light grey (table rules count; tints do not)."""
    dpi = 30
    subprocess.run(
        ["pdftoppm", "-gray", "-png", "-r", str(dpi), str(pdf_path), str(folder / "p")],
        check=True,
        timeout=120,
    )
    scale = dpi / 72
    top, bottom = round(CONTENT_TOP * scale), round(CONTENT_BOTTOM * scale)
    pngs = sorted(folder.glob("p-*.png"))
    fills = {}
    for number, png in enumerate(pngs[1:], 2):
        image = Image.open(png).convert("L").crop((0, top, round(595.28 * scale), bottom))
        inked = [y for y in range(image.height) if darkest(image, 0, y, image.width, 1) < 230]
        fills[number] = (max(inked) + 1) / image.height if inked else 0
    return fills


@pytest.mark.parametrize("language", ["en", "de"])
def test_every_page_is_three_quarters_full_but_the_last(
    language: str, request: pytest.FixtureRequest, sample: PdfReader, tmp_path: Path
) -> None:
    """The contents and every body page are at least 75 % full; the closing page, a third. The
    one exception: the page before the section :data:`KEPT_WHOLE`, at least half full."""
    path = request.getfixturevalue("pdf_path" if language == "en" else "pdf_path_de")
    fills = page_fills(path, tmp_path)
    *pages, last = sorted(fills)
    kept_whole = dict((title, page) for page, title in section_starts(sample))[KEPT_WHOLE]
    short = {n: round(fills[n], 2) for n in pages if fills[n] < 0.75}
    assert set(short) <= {kept_whole - 1}, (short, fills)
    assert all(fills[n] >= 0.5 for n in pages), fills
    assert fills[last] >= 1 / 3, fills


def test_running_header_names_the_section_that_starts_or_fills_the_page(
    pdf_path: Path, sample: PdfReader
) -> None:
    starts = section_starts(sample)
    first_body = starts[0][0]
    for number in range(first_body, len(sample.pages) + 1):
        starting = [title for page, title in starts if page == number]
        expected = starting[0] if starting else [t for p, t in starts if p < number][-1]
        header = pdftotext(pdf_path, number, "-x", "300", "-y", "0", "-W", "300", "-H", "55")
        assert re.sub(r"\s+", " ", header).strip() == expected, number


def test_contents_leaders_reach_the_page_numbers(pdf_path: Path) -> None:
    lines: dict[float, list] = {}
    for box in words(pdf_path, 2):
        lines.setdefault(round(box[1]), []).append(box)
    rows = [row for row in lines.values() if sum(word == "." for *_, word in row) > 10]
    assert len(rows) >= 10
    right_edges = set()
    for row in rows:
        dots = sorted(box for box in row if box[4] == ".")
        number = max(row, key=lambda box: box[2])
        assert number[4].isdigit()
        pitch = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(dots))
        gap = number[0] - dots[-1][2]
        assert -0.5 < gap < pitch, (number[4], gap, pitch)
        right_edges.add(round(number[2]))
    assert max(right_edges) - min(right_edges) <= 1


def test_numbers_use_lining_figures(tmp_path: Path) -> None:
    """The "1" of the body font stands as tall as an "H" (old-style: only x-height tall)."""
    css = (PACKAGE_DIR / "templates/backpain_report/report/report.css").read_text()
    source = f'<html><style>{css}</style><body><p style="font-size:72pt">H 1</p></body></html>'
    path = tmp_path / "figures.pdf"
    path.write_bytes(layout_html(source).write_pdf())
    subprocess.run(
        [
            "pdftoppm",
            "-gray",
            "-png",
            "-r",
            "72",
            "-f",
            "1",
            "-l",
            "1",
            str(path),
            str(tmp_path / "f"),
        ],
        check=True,
        timeout=60,
    )
    image = (
        Image.open(next(tmp_path.glob("f-*.png")))
        .convert("L")
        .point(lambda v: 255 if v > 128 else 0)
    )
    box = image.crop((0, 0, image.width, image.height // 3))
    columns = [x for x in range(box.width) if darkest(box, x, 0, 1, box.height) == 0]
    groups: list[list[int]] = []
    for x in columns:
        if groups and x == groups[-1][-1] + 1:
            groups[-1].append(x)
        else:
            groups.append([x])
    letter, figure = groups[0], groups[-1]

    def top(xs: list[int]) -> int:
        part = box.crop((xs[0], 0, xs[-1] + 1, box.height))
        return next(y for y in range(part.height) if darkest(part, 0, y, part.width, 1) == 0)

    assert len(groups) == 2
    assert abs(top(figure) - top(letter)) <= 3, (top(letter), top(figure))


def test_cover_inside_list_reads_down_the_columns(pdf_path: Path, sample: PdfReader) -> None:
    """Down the left column, then the right; in the content (and tag) order too. (pdftotext's
    default physical layout reads the two columns across, row by row.)"""
    titles = [title for _page, title in section_starts(sample)][:9]
    text = re.sub(r"\s+", " ", pdftotext(pdf_path, 1, "-raw"))
    positions = [text.find(title) for title in titles]
    assert -1 not in positions and positions == sorted(positions), positions
    numbers = {
        word: (x0, y0)
        for x0, y0, _x1, _y1, word in words(pdf_path, 1)
        if re.fullmatch(r"0\d", word)
    }
    left, right = [numbers[f"0{n}"] for n in range(1, 6)], [numbers[f"0{n}"] for n in range(6, 10)]
    assert len({round(x) for x, _y in left}) == 1 and len({round(x) for x, _y in right}) == 1
    assert [y for _x, y in left] == sorted(y for _x, y in left)
    assert right[0][1] == pytest.approx(left[0][1], abs=1)  # 06 heads the second column


FROZEN_BODY = importlib.import_module("backpain_report.migrations.0001_initial").REPORT["body"]
CARD_BY_CLASS = """<div class="exercise-grid" markdown="1">

<div class="exercise ex-bridge" markdown="1">
### Lift your hips

Text.
</div>

</div>
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),  # the bundled seed: all six
        (FROZEN_BODY, None),  # as the first migration stored it: all six
        (CARD_BY_CLASS, {"bridge.svg"}),  # a site's own card, by class
    ],
)
def test_exercises_are_illustrated_with_the_packages_drawings(
    monkeypatch: pytest.MonkeyPatch, body: str | None, expected: set[str] | None
) -> None:
    folder = PACKAGE_DIR / "templates/backpain_report/report/exercises"
    drawings = sorted(folder.glob("*.svg"))
    assert len(drawings) == 6
    for drawing in drawings:
        svg = drawing.read_text()
        # One style: the same frame, a floor line, filled limbs and an arrowhead for the movement.
        assert 'viewBox="25 0 250 100"' in svg and 'stroke="#c9d6db"' in svg, drawing.name
        assert 'stroke="#1f4e5f"' in svg and re.search(r'stroke-width="1[3-9]"', svg), drawing.name
        assert '<polygon points="' in svg and 'fill="#d9643a"' in svg, drawing.name
        assert (
            "<title>" in svg
            and "href" not in svg
            and "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
        )
    fetched: list[str] = []
    original = PackageOnlyURLFetcher.fetch

    def spy(self, url, headers=None):
        fetched.append(url)
        return original(self, url, headers)

    monkeypatch.setattr(PackageOnlyURLFetcher, "fetch", spy)
    report = make_report() if body is None else make_report(body=body)
    render_report_pdf(report=report, reader_name=READER, prepared_on=PREPARED_ON)
    expected = {d.name for d in drawings} if expected is None else expected
    assert {Path(url).name for url in fetched if url.endswith(".svg")} == expected


def test_the_bundled_report_has_eleven_pages(sample: PdfReader) -> None:
    assert len(sample.pages) == 11  # docs: "an eleven-page practical guide"


def test_the_next_step_is_part_of_the_cached_bodys_name() -> None:
    report = make_report()
    default = pdfcache.cache_name(report)
    with override_settings(BACKPAIN_REPORT=app_settings(REPORT_CTA=CTA)):
        configured = pdfcache.cache_name(report)
    with override_settings(BACKPAIN_REPORT=app_settings(SITE_URL="https://other.example")):
        other_site = pdfcache.cache_name(report)
    assert len({default, configured, other_site}) == 3


def test_a_site_can_override_the_sources_block(tmp_path: Path) -> None:
    folder = tmp_path / "backpain_report" / "report"
    folder.mkdir(parents=True)
    (folder / "mine.html").write_text(
        '{% extends "backpain_report/report/report.html" %}'
        "{% block sources %}<p>Our own sources</p>{% endblock %}"
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    with override_settings(TEMPLATES=templates):
        source = render_report_html(
            report=make_report(template_name="backpain_report/report/mine.html"),
            reader_name=READER,
            prepared_on=PREPARED_ON,
        )
    assert "Our own sources" in source and "nice.org.uk" not in source
    assert "Your next step" in source


# ---- Page flow: whole checklist groups, no heading left at a page's foot, reading order -------


def page_texts(path: Path, pages: int) -> list[str]:
    """Each page's text (pdftotext's reading order), whitespace collapsed."""
    return [re.sub(r"\s+", " ", pdftotext(path, n)) for n in range(1, pages + 1)]


def checklist_groups(body: str) -> list[tuple[str, list[str]]]:
    """``(heading, items)`` of every "### heading" followed by "- [ ] item" lines in ``body``."""
    groups = []
    for match in re.finditer(r"^### (.+)\n\n((?:- \[[ xX]\] .+\n(?: {2}.+\n)*)+)", body, re.M):
        items = re.findall(r"^- \[[ xX]\] (.+(?:\n {2}.+)*)", match.group(2), re.M)
        groups.append((match.group(1), [re.sub(r"\s+", " ", item) for item in items]))
    return groups


def page_of(texts: list[str], phrase: str) -> int:
    """The number of the one page whose text holds ``phrase`` (its first words)."""
    start = " ".join(phrase.split()[:6])
    found = [number for number, text in enumerate(texts, 1) if start in text]
    assert len(found) == 1, (phrase, found)
    return found[0]


def test_no_checklist_group_is_split_across_pages(pdf_path: Path, sample: PdfReader) -> None:
    texts = page_texts(pdf_path, len(sample.pages))
    groups = checklist_groups(make_report().body)
    assert len(groups) >= 8  # standing ... sleeping, and the plan's three
    for heading, items in groups:
        pages = {page_of(texts, item) for item in items}
        # The heading reads straight before its first item, on the same page.
        assert pages == {page_of(texts, f"{heading} {items[0]}")}, (heading, pages)


def last_lines(path: Path, pages: int) -> dict[int, str]:
    """The last line of text inside each page's content box (not the running footer)."""
    found = {}
    pattern = r'<line xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">(.*?)</line>'
    for number in range(2, pages + 1):
        xml = pdftotext(path, number, "-bbox-layout")
        lines = [
            (float(y_max), re.sub(r"<[^>]+>", " ", inner))
            for y_min, y_max, inner in re.findall(pattern, xml, re.S)
            if float(y_min) > CONTENT_TOP - 2 and float(y_max) < CONTENT_BOTTOM + 2
        ]
        found[number] = re.sub(r"\s+", " ", max(lines)[1]).strip() if lines else ""
    return found


def test_no_heading_is_the_last_thing_on_a_page(pdf_path: Path, sample: PdfReader) -> None:
    headings = {
        re.sub(r"\s+", " ", heading).strip()
        for heading in re.findall(r"^#{2,3} (.+)$", make_report().body, re.M)
    }
    for number, line in last_lines(pdf_path, len(sample.pages)).items():
        assert line not in headings and not re.fullmatch(r"\d\d", line), (number, line)


# ---- The closing page's next step: the site's name, never a raw URL ---------------------------


def closing_html(**extra: object) -> str:
    with override_settings(BACKPAIN_REPORT=app_settings(**extra)):
        source = render_report_html(
            report=make_report(), reader_name=READER, prepared_on=PREPARED_ON
        )
    return source[source.index('class="next-step"') :]


def next_step_button(source: str) -> str:
    match = re.search(r'<p class="next-step-link"><a href="([^"]+)">([^<]*)</a>', source)
    assert match, "no next step"
    return match.group(2).strip()


def test_the_next_step_names_the_site_not_its_url(pdf_path: Path, sample: PdfReader) -> None:
    last = re.sub(r"\s+", " ", pdftotext(pdf_path, len(sample.pages)))
    assert "Back Pain Reports" in last  # FROM_EMAIL's display name: the name readers know
    assert "https://" not in last.split("Sources")[0]


def test_a_loopback_site_url_is_never_shown_as_the_sites_name() -> None:
    source = closing_html(SITE_URL="http://127.0.0.1:8137")
    assert next_step_button(source) == "Back Pain Reports"
    assert 'href="http://127.0.0.1:8137/back-pain/"' in source
    assert "http://127.0.0.1" not in re.sub(r'href="[^"]*"', "", source)


def test_without_a_senders_name_the_next_step_shows_the_sites_host() -> None:
    source = closing_html(FROM_EMAIL="reports@example.com")
    assert next_step_button(source) == "reports.example.com"


def test_the_sites_framework_names_the_site_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    apps = [*settings.INSTALLED_APPS, "django.contrib.sites"]
    with override_settings(INSTALLED_APPS=apps, SITE_ID=1):
        from django.contrib.sites.models import Site

        named = Site(name="Rückenpraxis")
        monkeypatch.setattr(Site.objects, "get_current", lambda request=None: named)
        assert next_step_button(closing_html()) == "Rückenpraxis"
        named.name = " "
        assert next_step_button(closing_html()) == "Back Pain Reports"


def test_text_reads_in_order_headings_before_their_text_cards_one_by_one(
    pdf_path: Path, sample: PdfReader
) -> None:
    """In content order (``pdftotext -raw``, as a screen reader or a copy takes it) each exercise
    card reads heading, then text, then the next card; in pdftotext's physical order each card's
    heading still comes before its text and the cards keep their order."""
    cards = re.findall(r"^### (\d\. .+)\n\n(.+)$", make_report().body, re.M)
    assert len(cards) == 6
    pages = str(len(sample.pages))
    for mode in (["-raw"], []):
        args = ["pdftotext", *mode, "-f", "3", "-l", pages, str(pdf_path), "-"]
        text = re.sub(
            r"\s+", " ", subprocess.run(args, check=True, capture_output=True, text=True).stdout
        )
        headings = [text.index(heading) for heading, _ in cards]
        # Each card's first words, found after its heading (two cards begin alike).
        starts = [
            text.find(" ".join(first.split()[:6]), at)
            for at, (_, first) in zip(headings, cards, strict=True)
        ]
        assert headings == sorted(headings) and -1 not in starts, mode
        if mode:
            assert all(map(int.__lt__, starts[:-1], headings[1:])), "card text after the next card"
    sections = [title for _page, title in section_starts(sample)]
    flat = re.sub(
        r"\s+",
        " ",
        subprocess.run(
            ["pdftotext", "-raw", str(pdf_path), "-"], check=True, capture_output=True, text=True
        ).stdout,
    )
    body = flat[flat.index("01 " + sections[0]) :]
    positions = [body.find(title) for title in sections]
    assert -1 not in positions and positions == sorted(positions), positions
