"""The PDF report renderer: content, metadata, safety and template overrides (no database)."""

from __future__ import annotations

import datetime
import io
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from pypdf import PdfReader

from backpain_report.report.pdf import (
    FONTS_DIR,
    PACKAGE_DIR,
    PackageOnlyURLFetcher,
    font_configuration,
    render_cover_pdf,
    render_report_html,
    render_report_pdf,
)
from tests.samples import make_report

pytestmark = pytest.mark.heavy  # whole WeasyPrint renders: every tier, not `make test-fast`

PREPARED_ON = datetime.date(2025, 3, 14)
READER = "Margaret Oyelaran-Whitfield"


def render(reader_name: str = READER, **overrides: object) -> PdfReader:
    pdf = render_report_pdf(
        report=make_report(**overrides), reader_name=reader_name, prepared_on=PREPARED_ON
    )
    assert pdf.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(pdf))


def squash(text: str) -> str:
    """Text with all whitespace removed, so line wrapping does not matter."""
    return re.sub(r"\s+", "", text)


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def outline_titles(reader: PdfReader) -> list[str]:
    def walk(items: list) -> Iterator[str]:
        for item in items:
            if isinstance(item, list):
                yield from walk(item)
            else:
                yield item.title

    return list(walk(reader.outline))


@pytest.fixture(scope="module")
def sample() -> PdfReader:
    return render()


@pytest.fixture(scope="module")
def sample_text(sample: PdfReader) -> str:
    return flat(" ".join(page.extract_text() for page in sample.pages))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1; any connection to it would show up in accept()."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.3)
    yield server
    server.close()


def assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(socket.timeout):
        conn, _ = server.accept()
        conn.close()


def test_report_has_cover_contents_and_body(sample: PdfReader) -> None:
    assert len(sample.pages) >= 4
    assert sample.pages[0].mediabox.width == pytest.approx(595.28, abs=1)  # A4
    assert "Contents" in sample.pages[1].extract_text()


def test_cover_is_personalised(sample: PdfReader) -> None:
    cover = flat(sample.pages[0].extract_text())
    assert READER in cover
    assert "14 March 2025" in cover
    assert "Edition 3" in cover


def test_body_keeps_the_articles_phrases(sample_text: str) -> None:
    for phrase in (
        "erector spinae",
        "keep moving",
        "good posture",
        "muscle relaxants",
        "ice pack",
        "heavy lifting",
        "massage",
        "physical therapy",
    ):
        assert phrase in sample_text.lower(), phrase


def test_red_flags_and_disclaimer(sample: PdfReader, sample_text: str) -> None:
    assert "Red flags" in sample_text
    assert "loss of bladder or bowel control" in sample_text
    assert "general information, not medical advice" in sample_text
    assert "general information, not medical advice" in flat(sample.pages[0].extract_text())


def test_page_numbers_in_footer(sample: PdfReader) -> None:
    total = len(sample.pages)
    assert f"Page 3 of {total}" in sample.pages[2].extract_text()


def test_metadata(sample: PdfReader) -> None:
    meta = sample.metadata
    assert meta.title == "Back Pain Muscle Spasms"
    assert meta.author == "The Back Pain Report team"
    assert meta.subject.startswith("A practical guide")
    assert "erector spinae" in sample.metadata["/Keywords"]
    assert sample.trailer["/Root"]["/Lang"] == "en-us"  # LANGUAGE_CODE: the language of its texts


def test_bookmarks_follow_the_sections(sample: PdfReader) -> None:
    titles = outline_titles(sample)
    assert titles[0] == "Back Pain Muscle Spasms"
    for title in ("Contents", "Meet the erector spinae", "When to see a doctor", "Your plan"):
        assert title in titles


def test_contents_page_numbers_match_the_bookmarks(sample: PdfReader) -> None:
    contents = sample.pages[1].extract_text()
    for item in sample.outline:
        if isinstance(item, list) or item.title in ("Contents", "Back Pain Muscle Spasms"):
            continue
        page = sample.get_destination_page_number(item) + 1
        assert re.search(re.escape(item.title) + r"[ .]*" + str(page) + r"\b", contents), item.title


def test_checklists_are_real_boxes() -> None:
    source = render_report_html(report=make_report(), reader_name=READER, prepared_on=PREPARED_ON)
    assert '<ul class="checklist">' in source
    assert source.count('<li class="check">') >= 20
    body = source[source.index('<main class="report-body">') :]
    assert "[ ]" not in body
    assert '<div class="callout warning">' in source


def test_hostile_name_is_escaped_and_fetches_nothing(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    name = f"<img src=http://127.0.0.1:{port}/x>"
    reader = render(reader_name=name)
    assert_no_connection(listener)
    assert squash(name) in squash(reader.pages[0].extract_text())


def test_name_is_escaped_in_the_html() -> None:
    source = render_report_html(
        report=make_report(), reader_name='<b onclick="x">Eve</b>', prepared_on=PREPARED_ON
    )
    assert "&lt;b onclick=&quot;x&quot;&gt;Eve&lt;/b&gt;" in source
    assert '<b onclick="x">' not in source


def test_template_cannot_reach_the_network_or_other_files(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    template = tmp_path / "hostile.html"
    template.write_text(
        "<html><head>"
        f'<link rel="stylesheet" href="http://127.0.0.1:{port}/style.css">'
        f"<style>@import url(http://127.0.0.1:{port}/more.css);"
        f" body {{ background: url(http://127.0.0.1:{port}/bg.png) }}</style>"
        "</head><body>"
        f'<img src="http://127.0.0.1:{port}/x.png"><img src="file:///etc/hostname">'
        "<p>{{ reader_name }}</p></body></html>"
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    with override_settings(TEMPLATES=templates):
        reader = render(template_name="hostile.html")
    assert_no_connection(listener)
    assert READER in reader.pages[0].extract_text()


def test_url_fetcher_serves_only_package_files(tmp_path: Path) -> None:
    fetcher = PackageOnlyURLFetcher()
    inside = fetcher(f"file://{PACKAGE_DIR}/seed/article.txt")
    assert b"erector spinae" in inside.read()
    inside.close()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    for url in (
        "http://127.0.0.1:9/x",
        "https://example.com/font.woff2",
        "data:text/plain,hello",
        f"file://{outside}",
        f"file://{PACKAGE_DIR}/../../../etc/hostname",
        f"file://{PACKAGE_DIR}/seed/../../{outside.name}",
    ):
        with pytest.raises(ValueError):
            fetcher(url)


def test_site_can_override_the_report_template(tmp_path: Path) -> None:
    folder = tmp_path / "backpain_report" / "report"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(
        '<html lang="en"><head><title>{{ report.title }}</title></head><body>'
        "<h1>Site cover for {{ reader_name }}</h1>"
        "{% for anchor, title in sections %}<p>{{ title }}</p>{% endfor %}"
        "</body></html>"
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    with override_settings(TEMPLATES=templates):
        reader = render()
    text = squash(reader.pages[0].extract_text())
    assert squash(f"Site cover for {READER}") in text
    assert squash("Meet the erector spinae") in text


def test_site_can_override_only_the_stylesheet(tmp_path: Path) -> None:
    folder = tmp_path / "backpain_report" / "report"
    folder.mkdir(parents=True)
    (folder / "report.css").write_text(
        '@page { size: A5; } .cover::before { content: "Site stylesheet"; }'
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    with override_settings(TEMPLATES=templates):
        reader = render()
    assert reader.pages[0].mediabox.width == pytest.approx(419.53, abs=1)  # A5
    assert "Site stylesheet" in reader.pages[0].extract_text()


# ---- Fonts ---------------------------------------------------------------------------------

BUNDLED = {"Vollkorn", "Vollkorn-Bold", "Vollkorn-Italic", "Inter", "Inter-Bold"}


def font_names(reader: PdfReader, pages: range | None = None) -> set[str]:
    """The BaseFont names used by ``pages``, without the subset prefix (``ABCDEF+``)."""
    names = set()
    for number in pages or range(len(reader.pages)):
        fonts = reader.pages[number]["/Resources"].get("/Font", {})
        for font in fonts.values():
            names.add(str(font.get_object()["/BaseFont"]).lstrip("/").split("+")[-1])
    return names


def render_cover(reader_name: str) -> PdfReader:
    pdf = render_cover_pdf(report=make_report(), reader_name=reader_name, prepared_on=PREPARED_ON)
    return PdfReader(io.BytesIO(pdf))


def test_fonts_ship_in_the_package_with_their_licences() -> None:
    fonts = sorted(FONTS_DIR.iterdir())
    files = [path.name for path in fonts]
    expected = ["Inter-Bold.otf", "Inter-OFL.txt", "Inter-Regular.otf", "README.md"]
    expected += ["Vollkorn-Bold.ttf", "Vollkorn-Italic.ttf", "Vollkorn-OFL.txt"]
    expected += ["Vollkorn-Regular.ttf"]
    assert files == expected
    for licence in FONTS_DIR.glob("*-OFL.txt"):
        assert "SIL OPEN FONT LICENSE Version 1.1" in licence.read_text()
    assert sum(path.stat().st_size for path in fonts) < 2 * 1024 * 1024
    css = (PACKAGE_DIR / "templates" / "backpain_report" / "report" / "report.css").read_text()
    for path in fonts:
        if path.suffix in (".ttf", ".otf"):
            assert f'url("fonts/{path.name}")' in css


def test_bundled_fonts_are_embedded(sample: PdfReader) -> None:
    assert font_names(sample) == BUNDLED


def test_latin_extended_names_use_the_bundled_fonts() -> None:
    name = "Zoë Łukasiewicz-Øvergaard Şükrü Nguyễn Thị Ánh"
    cover = render_cover(name)
    assert name in flat(cover.pages[0].extract_text())
    assert font_names(cover) <= BUNDLED


def system_has_font_for(lang: str) -> bool:
    try:
        found = subprocess.run(["fc-list", f":lang={lang}"], capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return bool(found.stdout.strip())


@pytest.mark.parametrize(
    ("lang", "script_name"),
    [("zh", "王小明"), ("ar", "محمد العلي"), ("hi", "अनीता शर्मा"), ("ja", "さくら")],
)
def test_other_scripts_fall_back_to_system_fonts(lang: str, script_name: str) -> None:
    """No crash whatever the system has; the text is there when the system has a font for it."""
    pdf = render_cover_pdf(
        report=make_report(), reader_name=f"Ann {script_name}", prepared_on=PREPARED_ON
    )
    text = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    assert "Ann" in text
    if lang in ("zh", "ja") and system_has_font_for(lang):
        assert script_name in text


# ---- Accessibility -------------------------------------------------------------------------


def test_pdf_is_tagged(sample: PdfReader) -> None:
    root = sample.trailer["/Root"]
    assert "/StructTreeRoot" in root
    assert root["/MarkInfo"]["/Marked"].value is True
    assert root["/ViewerPreferences"]["/DisplayDocTitle"].value is True
    document = root["/StructTreeRoot"]["/K"][0].get_object()
    assert document["/S"] == "/Document"
    pdf = render_cover_pdf(report=make_report(), reader_name=READER, prepared_on=PREPARED_ON)
    info = subprocess.run(["pdfinfo", "-"], input=pdf, capture_output=True, check=True)
    assert re.search(rb"Tagged:\s+yes", info.stdout)


def test_cover_illustration_has_alternative_text() -> None:
    source = render_report_html(report=make_report(), reader_name=READER, prepared_on=PREPARED_ON)
    assert "<title>Illustration: the vertebrae of a spine</title>" in source


def test_reader_name_is_only_on_the_cover(sample: PdfReader) -> None:
    assert READER in flat(sample.pages[0].extract_text())
    for page in sample.pages[1:]:
        assert "Oyelaran" not in page.extract_text()
        assert "14 March 2025" not in page.extract_text()


def test_cover_only_render_is_one_page() -> None:
    cover = render_cover(READER)
    assert len(cover.pages) == 1
    assert READER in flat(cover.pages[0].extract_text())
    assert cover.metadata.title == "Back Pain Muscle Spasms"


def test_font_configuration_is_reused_per_thread() -> None:
    """A WeasyPrint font configuration per render leaks native memory: keep one per thread."""
    assert font_configuration() is font_configuration()
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(font_configuration()))
    thread.start()
    thread.join()
    assert other[0] is not font_configuration()


def _page_png(document, tmp_path: Path, name: str) -> bytes:
    from backpain_report.report.pdf import write_report_pdf

    pdf_path = tmp_path / f"{name}.pdf"
    pdf_path.write_bytes(write_report_pdf(document, report=make_report(), prepared_on=PREPARED_ON))
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", pdf_path, tmp_path / name],
        check=True,
    )
    [png] = tmp_path.glob(f"{name}*.png")
    return png.read_bytes()


def test_the_stylesheet_parsed_once_renders_the_same_pages(tmp_path: Path) -> None:
    """Issue 11: handing WeasyPrint the report.css parsed once per thread (a quarter of a
    cover's render time) changes no pixel; a template that styles itself otherwise is laid
    out as it is."""
    from weasyprint import HTML

    from backpain_report.report import pdf

    source = render_report_html(
        report=make_report(), reader_name=READER, prepared_on=PREPARED_ON, cover_only=True
    )
    inline = HTML(
        string=source, base_url=pdf._BASE_URL, url_fetcher=pdf.PackageOnlyURLFetcher()
    ).render(font_config=pdf.font_configuration(), **pdf.PDF_OPTIONS)
    parsed = pdf.layout_html(source)
    assert _page_png(parsed, tmp_path, "parsed") == _page_png(inline, tmp_path, "inline")
    assert pdf._parsed_stylesheet(pdf.render_to_string(pdf.REPORT_CSS)) is pdf._parsed_stylesheet(
        pdf.render_to_string(pdf.REPORT_CSS)
    )
    own = source.replace("<style>", '<style data-site="own">', 1)  # a site's own styling
    assert len(pdf.layout_html(own).pages) == 1


def _first_color(document, tag: str) -> tuple:
    for page in document.pages:
        for box in page._page_box.descendants():
            if getattr(box, "element_tag", None) == tag:
                return tuple(box.style["color"])
    raise AssertionError(f"no <{tag}> box")


def test_a_site_template_with_its_own_rules_keeps_the_cascade() -> None:
    from weasyprint import HTML

    from backpain_report.report import pdf

    css = pdf.render_to_string(pdf.REPORT_CSS)
    # A site's report.html: the bundled stylesheet, then a rule of its own of lower specificity
    # than report.css's .cover-title (which must keep winning, as it did when inlined).
    source = (
        f"<!doctype html><html><head><style>{css}</style><style>h1 {{ color: #ff0000 }}</style>"
        '</head><body><section class="cover"><h1 class="cover-title">T</h1></section></body></html>'
    )
    inline = HTML(
        string=source, base_url=pdf._BASE_URL, url_fetcher=pdf.PackageOnlyURLFetcher()
    ).render(font_config=pdf.font_configuration(), **pdf.PDF_OPTIONS)
    assert _first_color(inline, "h1") != (1.0, 0.0, 0.0, 1.0)  # report.css wins when inlined
    assert _first_color(pdf.layout_html(source), "h1") == _first_color(inline, "h1")


@pytest.mark.parametrize("tag", ["STYLE", "Style"])
def test_a_site_style_element_in_capitals_keeps_the_cascade(tag: str) -> None:
    """HTML tag names are case-insensitive: a site's ``<STYLE>`` is its own styling too, so
    report.css is not handed over parsed (as a user stylesheet its rules would lose to it)."""
    from weasyprint import HTML

    from backpain_report.report import pdf

    css = pdf.render_to_string(pdf.REPORT_CSS)
    source = (
        f"<!doctype html><html><head><{tag}>h1 {{ color: #ff0000 }}</{tag}><style>{css}</style>"
        '</head><body><section class="cover"><h1 class="cover-title">T</h1></section></body></html>'
    )
    inline = HTML(
        string=source, base_url=pdf._BASE_URL, url_fetcher=pdf.PackageOnlyURLFetcher()
    ).render(font_config=pdf.font_configuration(), **pdf.PDF_OPTIONS)
    assert _first_color(inline, "h1") != (1.0, 0.0, 0.0, 1.0)  # report.css wins when inlined
    assert _first_color(pdf.layout_html(source), "h1") == _first_color(inline, "h1")
