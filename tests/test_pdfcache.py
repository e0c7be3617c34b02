"""The cached path: body once per edition, cover per reader, joined to match a full render."""

from __future__ import annotations

import datetime
import io
import logging
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import InMemoryStorage
from django.test import override_settings
from PIL import Image, ImageChops
from pypdf import PdfReader

from backpain_report.report import pdfcache
from backpain_report.report.pdf import PACKAGE_DIR, render_report_pdf
from backpain_report.report.pdfjoin import BasePdf, JoinError, swap_cover
from backpain_report.report.privatestorage import file_write
from tests.samples import make_report

# Seconds a test: a dozen full PDF renders; `make test-fast` skips it.
pytestmark = pytest.mark.heavy

PREPARED_ON = datetime.date(2025, 3, 14)
READER = "Zoë Łukasiewicz-Øvergaard"


def storages_in(folder: Path) -> dict[str, Any]:
    return {
        **settings.STORAGES,
        "backpain_report": {
            "BACKEND": "backpain_report.report.privatestorage.PrivateStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }


@pytest.fixture
def cache_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty private storage and an empty in-process cache."""
    pdfcache.clear_memory()
    with override_settings(STORAGES=storages_in(tmp_path)):
        yield tmp_path / "backpain_report" / "cache"
    pdfcache.clear_memory()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(full render, cached-path render) of the same report for the same reader."""
    pdfcache.clear_memory()
    with override_settings(STORAGES=storages_in(tmp_path_factory.mktemp("storage"))):
        joined = pdfcache.report_pdf(
            report=make_report(), reader_name=READER, prepared_on=PREPARED_ON
        )
    pdfcache.clear_memory()
    full = render_report_pdf(report=make_report(), reader_name=READER, prepared_on=PREPARED_ON)
    return full, joined


def read(data: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(data), strict=True)


def page_images(data: bytes, folder: Path, prefix: str) -> list[Image.Image]:
    source = folder / f"{prefix}.pdf"
    source.write_bytes(data)
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(source), str(folder / prefix)], check=True)
    return [Image.open(path).convert("RGB") for path in sorted(folder.glob(f"{prefix}-*.png"))]


def outline(reader: PdfReader) -> list[tuple[str, int]]:
    def walk(items: list) -> Iterator[tuple[str, int]]:
        for item in items:
            if isinstance(item, list):
                yield from walk(item)
            else:
                yield item.title, reader.get_destination_page_number(item)

    return list(walk(reader.outline))


def links(reader: PdfReader) -> list[tuple[int, str, tuple[int, ...]]]:
    found = []
    for number, page in enumerate(reader.pages):
        for annot in page.get("/Annots", []):
            annot = annot.get_object()
            rect = tuple(round(float(v)) for v in annot["/Rect"])
            found.append((number, str(annot.get("/Dest") or annot.get("/A")), rect))
    return found


def structure(reader: PdfReader) -> list[tuple[str, int, tuple[int, ...]]]:
    """The tag tree in reading order: (role, page index, marked-content ids)."""
    pages = {page.indirect_reference.idnum: n for n, page in enumerate(reader.pages)}
    out: list[tuple[str, int, tuple[int, ...]]] = []

    def walk(elem: Any) -> None:
        elem = elem.get_object()
        kids = elem.get("/K", [])
        kids = kids if isinstance(kids, list) else [kids]
        mcids = tuple(k for k in kids if isinstance(k, int))
        page = dict.get(elem, "/Pg")
        out.append((elem["/S"], pages[page.idnum] if page else -1, mcids))
        for kid in kids:
            if not isinstance(kid, int) and kid.get_object().get("/Type") == "/StructElem":
                walk(kid)

    walk(reader.trailer["/Root"]["/StructTreeRoot"]["/K"][0])
    return out


def test_joined_pages_look_like_a_full_render(pair: tuple[bytes, bytes], tmp_path: Path) -> None:
    full, joined = pair
    left, right = page_images(full, tmp_path, "full"), page_images(joined, tmp_path, "joined")
    assert len(left) == len(right) >= 8
    for number, (a, b) in enumerate(zip(left, right, strict=True), start=1):
        diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 16 else 0)
        changed = diff.histogram()[255] / (a.width * a.height)
        assert changed < 0.0005, f"page {number} differs on {changed:.2%} of its pixels"


def test_joined_text_and_page_numbers_match(pair: tuple[bytes, bytes]) -> None:
    full, joined = read(pair[0]), read(pair[1])
    for number, (a, b) in enumerate(zip(full.pages, joined.pages, strict=True), start=1):
        assert a.extract_text() == b.extract_text(), f"page {number}"
    total = len(joined.pages)
    assert f"Page 3 of {total}" in joined.pages[2].extract_text()
    assert READER in joined.pages[0].extract_text()


def test_reader_name_and_date_only_on_the_cover(pair: tuple[bytes, bytes]) -> None:
    joined = read(pair[1])
    assert READER in joined.pages[0].extract_text()
    assert "14 March 2025" in joined.pages[0].extract_text()
    for page in joined.pages[1:]:
        text = page.extract_text()
        assert "Łukasiewicz" not in text and "2025" not in text


def test_bookmarks_links_and_destinations_survive(pair: tuple[bytes, bytes]) -> None:
    full, joined = read(pair[0]), read(pair[1])
    assert outline(joined) == outline(full)
    assert ("Contents", 1) in outline(joined)
    assert links(joined) == links(full)
    assert len(links(joined)) >= 10
    pages = {name: joined.get_destination_page_number(dest)
             for name, dest in joined.named_destinations.items()}  # fmt: skip
    assert pages == {
        name: full.get_destination_page_number(dest)
        for name, dest in full.named_destinations.items()
    }
    by_title = dict(outline(joined))
    contents = joined.pages[1].extract_text()
    for title, page in by_title.items():
        if title not in ("Contents", "Back Pain Muscle Spasms"):
            assert re.search(re.escape(title) + r"[ .]*" + str(page + 1) + r"\b", contents), title


def test_tags_and_metadata_match_a_full_render(pair: tuple[bytes, bytes]) -> None:
    full, joined = read(pair[0]), read(pair[1])
    assert structure(joined) == structure(full)
    assert structure(joined)[1][1] == 0  # the cover's elements point at page 1
    root = joined.trailer["/Root"]
    assert root["/MarkInfo"]["/Marked"].value is True
    assert root["/Lang"] == "en-us"  # LANGUAGE_CODE: the language of its texts
    assert joined.metadata.title == full.metadata.title
    assert joined.metadata.author == full.metadata.author
    assert joined.metadata["/CreationDate"] == full.metadata["/CreationDate"]
    assert "20250314" in joined.metadata["/CreationDate"]


def test_body_is_rendered_once_per_edition(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = pdfcache.layout_html
    monkeypatch.setattr(
        pdfcache, "layout_html", lambda source: calls.append("body") or real(source)
    )
    report = make_report()
    for name in ("Ann", "Bob"):
        pdfcache.report_pdf(report=report, reader_name=name, prepared_on=PREPARED_ON)
    assert calls == ["body"]
    pdfcache.clear_memory()  # a new worker process: reads the stored file
    pdf = pdfcache.report_pdf(report=report, reader_name="Cy", prepared_on=PREPARED_ON)
    assert calls == ["body"]
    assert "Cy" in read(pdf).pages[0].extract_text()
    report.edition = 4  # the lead bumps the edition when the report is edited
    pdf = pdfcache.report_pdf(report=report, reader_name="Di", prepared_on=PREPARED_ON)
    assert calls == ["body", "body"]
    assert "Edition 4" in read(pdf).pages[0].extract_text()
    assert len(list(cache_dir.glob("report-7-ed3-*.pdf"))) == 1
    assert len(list(cache_dir.glob("report-7-ed4-*.pdf"))) == 1
    assert pdfcache.invalidate(report) == 2
    assert not list(cache_dir.iterdir())


def test_cache_name_follows_edition_and_content(cache_dir: Path) -> None:
    report = make_report()
    name = pdfcache.cache_name(report)
    assert name.startswith("backpain_report/cache/report-7-ed3-") and name.endswith(".pdf")
    assert pdfcache.cache_name(make_report()) == name
    assert pdfcache.cache_name(make_report(edition=4)) != name
    assert pdfcache.cache_name(make_report(body=report.body + "\nMore.")) != name
    assert pdfcache.cache_name(make_report(title="Another title")) != name
    assert pdfcache.cache_name(make_report(pk=8)) != name


def test_cache_name_follows_the_stylesheet_and_the_drawings(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stylesheet is inlined in the HTML; the exercise drawings are fetched by URL, so a
    redrawn figure must change the name too, or a cached body keeps the old drawing."""
    report = make_report()
    name = pdfcache.cache_name(report)
    drawing = PACKAGE_DIR / "templates/backpain_report/report/exercises/bridge.svg"
    original = Path.read_bytes

    def redrawn(path: Path) -> bytes:
        data = original(path)
        return data.replace(b"</svg>", b"<!-- redrawn --></svg>") if path == drawing else data

    monkeypatch.setattr(Path, "read_bytes", redrawn)
    assert pdfcache.cache_name(report) != name
    monkeypatch.undo()
    # A site's own report.css (an override in its templates) is inlined: a new name too.
    folder = cache_dir.parent / "site-templates" / "backpain_report" / "report"
    folder.mkdir(parents=True)
    css = PACKAGE_DIR / "templates/backpain_report/report/report.css"
    (folder / "report.css").write_text(css.read_text() + "\n/* edited */\n")
    templates = [{**settings.TEMPLATES[0], "DIRS": [str(folder.parent.parent)]}]
    with override_settings(TEMPLATES=templates):
        assert pdfcache.cache_name(report) != name


def test_two_workers_rendering_one_edition_at_once(cache_dir: Path) -> None:
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            results.append(
                pdfcache.report_pdf(report=make_report(), reader_name=name, prepared_on=PREPARED_ON)
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("Ann", "Bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 2
    files = sorted(path.name for path in cache_dir.iterdir())
    assert len(files) == 1 and files[0].endswith(".pdf"), files  # no leftover temporary file


def test_a_damaged_cache_file_is_rendered_again(cache_dir: Path) -> None:
    report = make_report()
    name = pdfcache.cache_name(report)
    target = cache_dir.parent.parent / name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"%PDF-1.7\ntruncated")
    pdf = pdfcache.report_pdf(report=report, reader_name="Ann", prepared_on=PREPARED_ON)
    assert len(read(pdf).pages) >= 8
    assert target.read_bytes().rstrip().endswith(b"%%EOF")


def test_object_storage_keeps_one_copy() -> None:
    storage = InMemoryStorage()
    pdfcache.clear_memory()
    report = make_report(pk=9)
    first = pdfcache.report_pdf(
        report=report, reader_name="Ann", prepared_on=PREPARED_ON, storage=storage
    )
    file_write(storage, pdfcache.cache_name(report), b"%PDF-1.7 other %%EOF")  # a late twin
    assert storage.listdir(pdfcache.CACHE_DIR)[1] == [pdfcache.cache_name(report).split("/")[-1]]
    assert first.startswith(b"%PDF-")
    pdfcache.clear_memory()


def test_cover_with_links_falls_back_to_a_full_render(
    cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "templates" / "backpain_report" / "report"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(
        '<html lang="en"><body><p><a href="#end">Skip</a> for {{ reader_name }}</p>'
        '<h2 id="end" style="break-before: page">The end</h2></body></html>'
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path / "templates"]}]
    with override_settings(TEMPLATES=templates), caplog.at_level(logging.WARNING):
        pdf = pdfcache.report_pdf(report=make_report(), reader_name="Ann", prepared_on=PREPARED_ON)
    assert "full render" in caplog.text
    reader = read(pdf)
    assert "for Ann" in reader.pages[0].extract_text()
    assert len(reader.pages) == 2


def test_swap_refuses_what_is_not_a_pdf() -> None:
    with pytest.raises(JoinError):
        BasePdf.from_bytes(b"%PDF-1.7\nnot really")
    with pytest.raises(JoinError):
        swap_cover(BasePdf.from_bytes(_tiny_pdf()), b"garbage")


def _tiny_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_refused_private_storage_costs_a_render_not_the_report(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from django.core.exceptions import ImproperlyConfigured

    def refused() -> None:
        raise ImproperlyConfigured("/tmp/backpain_report-0 is not a private directory")

    pdfcache.clear_memory()
    monkeypatch.setattr(pdfcache, "cache_storage", refused)
    with caplog.at_level(logging.WARNING):
        pdf = pdfcache.report_pdf(report=make_report(), reader_name="Ann", prepared_on=PREPARED_ON)
    assert "Ann" in read(pdf).pages[0].extract_text()
    assert "Report body cache unreadable" in caplog.text
    pdfcache.clear_memory()


# ---- The raw copy of the cover's objects -------------------------------------------------------

HOSTILE_TITLE = r"Spasms (part 2) 3 0 R \ ) ( >> << /Type /Page endobj"


def test_strings_that_look_like_references_survive_the_join(cache_dir: Path) -> None:
    """A title with unbalanced parentheses, a backslash and ``3 0 R`` stays text: only real
    references are renumbered when the cover's objects are copied."""
    report = make_report(title=HOSTILE_TITLE, author="Ann (3 0 R) Lee")
    joined = read(pdfcache.report_pdf(report=report, reader_name="Ann", prepared_on=PREPARED_ON))
    assert joined.metadata.title == HOSTILE_TITLE
    assert joined.metadata.author == "Ann (3 0 R) Lee"
    assert "Spasms (part 2) 3 0 R" in joined.pages[0].extract_text()
    checked = subprocess.run(["pdfinfo", "-"], input=pdf_bytes(joined), capture_output=True)
    assert checked.returncode == 0 and not checked.stderr, checked.stderr


def pdf_bytes(reader: PdfReader) -> bytes:
    stream = reader.stream
    stream.seek(0)
    return stream.read()


def test_the_covers_streams_are_deflated_and_the_file_stays_small(
    pair: tuple[bytes, bytes],
) -> None:
    full, joined = pair
    update = joined[joined.index(b"%%EOF") :]  # what the swap appended to the cached file
    streams = re.findall(rb"(\d+) 0 obj\n(<<.*?>>)\nstream\n", update, re.S)
    assert len(streams) >= 5  # content, fonts, ..., the cross-reference stream
    for number, dictionary in streams:
        assert b"/Filter" in dictionary or b"/Type /XRef" in dictionary, number
    # the cover's fonts are a second subset beside the body's: about 1.5x (2x if not deflated)
    assert len(joined) < 1.6 * len(full)


def test_swap_refuses_a_cover_with_object_streams() -> None:
    report = make_report()
    base = BasePdf.from_bytes(
        render_report_pdf(report=report, reader_name="A", prepared_on=PREPARED_ON)
    )
    compressed = render_report_pdf(report=report, reader_name="B", prepared_on=PREPARED_ON)
    with pytest.raises(JoinError, match="uncompressed"):
        swap_cover(base, compressed)


def test_a_damaged_cover_is_refused_cleanly() -> None:
    """Wherever an uncompressed cover is cut or altered, the swap raises JoinError (the cached
    path then renders in full) or gives a readable PDF, never another exception."""
    report = make_report()
    base = BasePdf.from_bytes(
        render_report_pdf(report=report, reader_name="A", prepared_on=PREPARED_ON)
    )
    from backpain_report.report.pdf import render_cover_pdf

    cover = render_cover_pdf(report=report, reader_name="Ann", prepared_on=PREPARED_ON)
    cuts = range(len(cover) // 3, len(cover), max(1, len(cover) // 40))
    damaged = [cover[:cut] + cover[-200:] for cut in cuts]
    damaged += [cover.replace(b"/Length ", b"/Length 9", 3), cover.replace(b" 0 obj", b" 0 obx", 5)]
    for data in damaged:
        try:
            joined = swap_cover(base, data)
        except JoinError:
            continue
        read(joined).pages[0].extract_text()
