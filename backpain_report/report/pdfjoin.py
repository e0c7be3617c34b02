"""Put a freshly rendered cover in place of page 1 of a cached report, as an incremental update.

The cached PDF (WeasyPrint's render of the whole report with a placeholder cover) is copied byte
for byte; after it come the cover page's objects (content stream, fonts, images), a new page 1
object under the same object number, the tag tree's document element and parent tree with the
cover's structure elements in place of the placeholder's, the cover render's document
information (dates), and a cross-reference stream pointing back at the cached one (PDF 1.7,
7.5.6 "Incremental updates"). Every other page, link, named destination, bookmark and tag of the
cached file stays as it is, so the result matches a full render while costing a few milliseconds
instead of a WeasyPrint layout of the whole report.

The cover is written uncompressed (a classic cross-reference table, no object streams), so that
its objects can be copied as they are: pypdf reads only the few objects the swap changes (page,
tag tree), and every other object's bytes are copied with its references renumbered by
:func:`_renumbered` and its stream, if uncompressed, deflated here.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pypdf import PdfReader
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
)

Ref = Callable[[IndirectObject], int]


class JoinError(Exception):
    """The PDFs do not have the shape the cover swap relies on."""


def _raw(value: Any) -> Any:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _dict(value: Any) -> DictionaryObject:
    """``value`` (resolved if indirect) as a dictionary."""
    value = _raw(value)
    if not isinstance(value, DictionaryObject):
        raise JoinError(f"expected a dictionary, not {type(value).__name__}")
    return value


def _number(value: Any) -> int:
    if not isinstance(value, IndirectObject):
        raise JoinError("expected an indirect object")
    return value.idnum


def _dump(obj: Any, ref: Ref) -> bytes:
    """Serialise a (non-stream) pypdf object, writing references through ``ref``."""
    if isinstance(obj, IndirectObject):
        return b"%d 0 R" % ref(obj)
    if isinstance(obj, DictionaryObject):
        items = b"".join(
            _dump(key, ref) + b" " + _dump(value, ref) + b"\n" for key, value in dict.items(obj)
        )
        return b"<<\n" + items + b">>"
    if isinstance(obj, ArrayObject):
        return b"[" + b" ".join(_dump(item, ref) for item in obj) + b"]"
    out = io.BytesIO()
    obj.write_to_stream(out)
    return out.getvalue()


def _struct_tree(reader: PdfReader) -> tuple[int, DictionaryObject, int, DictionaryObject] | None:
    """(document element number and dict, parent tree number and dict), or None if untagged."""
    root = _dict(reader.trailer["/Root"])
    if "/StructTreeRoot" not in root:
        return None
    tree = _dict(root["/StructTreeRoot"])
    kids = _raw(tree.raw_get("/K"))
    if not isinstance(kids, ArrayObject) or len(kids) != 1:
        raise JoinError("the tag tree has no single document element")
    parents = tree.raw_get("/ParentTree")
    if "/Nums" not in _raw(parents):
        raise JoinError("the tag tree's parent tree is not a flat number tree")
    return _number(kids[0]), _raw(kids[0]), _number(parents), _raw(parents)


def _page_elements(document: DictionaryObject, page: IndirectObject) -> list[IndirectObject]:
    """The document element's leading children that sit on ``page``."""
    found = []
    for kid in list(_raw(document.raw_get("/K"))):
        if not isinstance(kid, IndirectObject) or dict.get(_dict(kid), "/Pg") != page:
            break
        found.append(kid)
    return found


def _parents_of(parent_tree: DictionaryObject, key: object) -> tuple[int, Any]:
    nums = _raw(parent_tree.raw_get("/Nums"))
    for index in range(0, len(nums), 2):
        if nums[index] == key:
            return index + 1, nums[index + 1]
    raise JoinError(f"no parent tree entry {key}")


# A literal string (pydyf escapes every parenthesis), a hex string, a name, or a reference: the
# only tokens of an object's dictionary part that matter when its references are renumbered.
_TOKEN = re.compile(
    rb"\((?:[^\\()]|\\.)*\)"
    rb"|<[0-9A-Fa-f\s]*>"
    rb"|/[^\s/\[\]()<>{}%]*"
    rb"|(?<![\w.+-])(\d+)\s+(\d+)\s+R(?![\w#])",
    re.S,
)
# Dictionary brackets, and the strings and names whose brackets do not count.
_BRACKETS = re.compile(rb"\((?:[^\\()]|\\.)*\)|<<|>>|<[0-9A-Fa-f\s]*>|/[^\s/\[\]()<>{}%]*", re.S)
_XREF_ENTRY = re.compile(rb"(\d{10}) (\d{5}) ([nf])")
_SUBSECTION = re.compile(rb"(\d+) (\d+)[ \t]*\r?\n")
_LENGTH = re.compile(rb"/Length\s+(\d+)(?!\s+\d+\s+R)")


def _renumbered(text: bytes, ref: Callable[[int], int]) -> bytes:
    """``text`` (an object's dictionary part) with every ``n g R`` written as ``ref(n) 0 R``."""

    def swap(match: re.Match[bytes]) -> bytes:
        if match.group(1) is None:
            return match.group(0)
        return b"%d 0 R" % ref(int(match.group(1)))

    return _TOKEN.sub(swap, text)


def _dictionary_end(body: bytes) -> int:
    """The offset just past the ``>>`` closing the dictionary ``body`` starts with."""
    depth = 0
    for match in _BRACKETS.finditer(body):
        token = match.group(0)
        if token == b"<<":
            depth += 1
        elif token == b">>":
            depth -= 1
            if depth == 0:
                return match.end()
    raise JoinError("unterminated dictionary")


class RawObjects:
    """The objects of an uncompressed PDF (classic cross-reference table), as bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        try:
            self._read_table(data)
        except (ValueError, IndexError) as exc:
            raise JoinError(f"damaged cross-reference table: {exc}") from exc

    def _read_table(self, data: bytes) -> None:
        start = int(data[data.rindex(b"startxref") + 9 :].split()[0])
        if not data.startswith(b"xref", start):
            raise JoinError("the cover is not written uncompressed (no classic xref table)")
        self.offsets: dict[int, int] = {}
        at = data.index(b"\n", start) + 1
        while (section := _SUBSECTION.match(data, at)) is not None:
            first, count = int(section.group(1)), int(section.group(2))
            at = section.end()
            for number in range(first, first + count):
                entry = _XREF_ENTRY.match(data, at)
                if entry is None:
                    raise JoinError("damaged cross-reference table")
                if entry.group(3) == b"n":
                    self.offsets[number] = int(entry.group(1))
                at = entry.end()
                while data[at : at + 1] in (b" ", b"\r", b"\n"):
                    at += 1
        # An object ends where the next one (or the table) starts.
        order = sorted(self.offsets, key=self.offsets.__getitem__)
        ends = [self.offsets[number] for number in order[1:]] + [start]
        self.ends = dict(zip(order, ends, strict=True))

    def body(self, number: int, ref: Callable[[int], int]) -> bytes:
        """Object ``number``'s body (between ``obj`` and ``endobj``), references renumbered by
        ``ref``; an unfiltered stream is deflated."""
        try:
            start, end = self.offsets[number], self.ends[number]
        except KeyError as exc:
            raise JoinError(f"the cover has no object {number}") from exc
        head = b"%d 0 obj" % number
        chunk = self.data[start:end]
        if not chunk.startswith(head) or (close := chunk.rfind(b"endobj")) < 0:
            raise JoinError(f"object {number} is not where the table says")
        body = chunk[len(head) : close].strip()
        if not body.startswith(b"<<"):
            return _renumbered(body, ref)
        split = _dictionary_end(body)
        rest = body[split:].lstrip(b" \r\n")
        dictionary = _renumbered(body[:split], ref)
        if not rest.startswith(b"stream"):
            return dictionary + rest
        length = _LENGTH.search(dictionary)
        if length is None:
            raise JoinError(f"stream {number} has no direct /Length")
        data_start = len(b"stream")
        data_start += 2 if rest[data_start : data_start + 2] == b"\r\n" else 1
        data = rest[data_start : data_start + int(length.group(1))]
        if len(data) != int(length.group(1)) or b"endstream" not in rest[-20:]:
            raise JoinError(f"stream {number} is cut short")
        if b"/Filter" not in dictionary and b"/Metadata" not in dictionary:  # XMP stays plain
            data = zlib.compress(data, 6)
            dictionary = dictionary[:-2].rstrip() + b" /Filter /FlateDecode>>"
        dictionary = _LENGTH.sub(b"/Length %d" % len(data), dictionary, count=1)
        return dictionary + b"\nstream\n" + data + b"\nendstream"


@dataclass
class BasePdf:
    """A cached full render and the facts about its page 1 the cover swap needs."""

    data: bytes
    reader: PdfReader
    page: IndirectObject
    pages: IndirectObject
    tags: tuple[int, DictionaryObject, int, DictionaryObject] | None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> BasePdf:
        """Read ``data``; raise :class:`JoinError` if it is not a complete PDF."""
        if not data.startswith(b"%PDF-") or not data.rstrip().endswith(b"%%EOF"):
            raise JoinError("not a complete PDF")
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            page = reader.pages[0]
            if page.indirect_reference is None:
                raise JoinError("page 1 is not an indirect object")
            tags = _struct_tree(reader)
            base = cls(data, reader, page.indirect_reference, page.raw_get("/Parent"), tags)
        except JoinError:
            raise
        except Exception as exc:  # pypdf on damaged input raises more than PyPdfError
            raise JoinError(f"unreadable PDF: {exc!r}") from exc
        return base


class _Update:
    """The objects of one incremental update, numbered after the base file's objects."""

    def __init__(self, base: BasePdf, cover: BasePdf, raw: RawObjects) -> None:
        self.cover = cover.reader
        self.raw = raw
        self.out = bytearray(base.data if base.data.endswith(b"\n") else base.data + b"\n")
        self.offsets: dict[int, int] = {}
        self.numbers: dict[int, int] = {}  # cover object number -> number in the result
        self.todo: list[int] = []  # cover objects to copy
        size = base.reader.trailer["/Size"]
        if not isinstance(size, int):
            raise JoinError("the trailer's /Size is not a number")
        self.next = int(size)

    def ref(self, obj: IndirectObject) -> int:
        """The result's number for ``obj``: the base's objects keep theirs, the cover's are
        renumbered and copied on first use."""
        return obj.idnum if obj.pdf is not self.cover else self.cover_ref(obj.idnum)

    def cover_ref(self, number: int) -> int:
        """The result's number for the cover's object ``number``, queued for copying."""
        if number not in self.numbers:
            self.numbers[number] = self.next
            self.next += 1
            self.todo.append(number)
        return self.numbers[number]

    def emit(self, number: int, body: bytes) -> None:
        self.offsets[number] = len(self.out)
        self.out += b"%d 0 obj\n" % number + body + b"\nendobj\n"

    def copy_pending(self) -> None:
        while self.todo:
            number = self.todo.pop()
            self.emit(self.numbers[number], self.raw.body(number, self.cover_ref))

    def finish(self, base: BasePdf, info: int, file_id: Any) -> bytes:
        """Append the cross-reference stream and the trailer; return the whole file."""
        xref = self.next
        self.offsets[xref] = len(self.out)
        numbers = sorted(self.offsets)
        rows = b"".join(b"\x01" + self.offsets[n].to_bytes(4, "big") + b"\0\0" for n in numbers)
        index: list[int] = []
        for number in numbers:
            if index and index[-2] + index[-1] == number:
                index[-1] += 1
            else:
                index += [number, 1]
        first = (
            file_id[0]
            if file_id
            else ByteStringObject(hashlib.md5(base.data, usedforsecurity=False).digest())
        )
        second = ByteStringObject(
            hashlib.md5(bytes(self.out[len(base.data) :]), usedforsecurity=False).digest()
        )
        prev = base.data.rindex(b"startxref")
        start = int(base.data[prev + 9 :].split()[0])
        header = (
            b"<< /Type /XRef /Size %d /W [1 4 2] /Index [%s] /Prev %d /Root %d 0 R /Info %d 0 R"
            b" /ID [%s %s] /Length %d >>"
            % (
                xref + 1,
                b" ".join(b"%d" % n for n in index),
                start,
                _number(base.reader.trailer.raw_get("/Root")),
                info,
                _dump(first, self.ref),
                _dump(second, self.ref),
                len(rows),
            )
        )
        self.out += b"%d 0 obj\n" % xref + header + b"\nstream\n" + rows + b"\nendstream\nendobj\n"
        self.out += b"startxref\n%d\n%%%%EOF\n" % self.offsets[xref]
        return bytes(self.out)


def _swap_tags(update: _Update, base: BasePdf, cover: BasePdf, page: DictionaryObject) -> None:
    """Put the cover's structure elements in place of the placeholder's in the tag tree."""
    assert base.tags and cover.tags
    doc_number, document, tree_number, tree = base.tags
    cover_doc_number, cover_document, _, cover_tree = cover.tags
    update.numbers[cover_doc_number] = doc_number
    if "/NS" in document and "/NS" in cover_document:  # share the base's namespace object
        update.numbers[_number(cover_document.raw_get("/NS"))] = _number(document.raw_get("/NS"))
    base_page = _dict(base.page)
    page[NameObject("/StructParents")] = base_page.raw_get("/StructParents")
    old = _page_elements(document, base.page)
    new = _page_elements(cover_document, cover.page)
    kids = ArrayObject([*new, *list(_raw(document.raw_get("/K")))[len(old) :]])
    document = DictionaryObject({**dict(dict.items(document)), NameObject("/K"): kids})
    index, _ = _parents_of(tree, base_page["/StructParents"])
    _, cover_parents = _parents_of(cover_tree, _dict(cover.page)["/StructParents"])
    nums = ArrayObject(list(_raw(tree.raw_get("/Nums"))))
    nums[index] = cover_parents
    tree = DictionaryObject({**dict(dict.items(tree)), NameObject("/Nums"): nums})
    update.emit(doc_number, _dump(document, update.ref))
    update.emit(tree_number, _dump(tree, update.ref))


def swap_cover(base: BasePdf, cover_pdf: bytes) -> bytes:
    """``base`` with page 1 replaced by page 1 of ``cover_pdf``, and the cover render's document
    information (dates) and XMP metadata if any.

    ``cover_pdf`` must be written uncompressed (WeasyPrint's ``uncompressed_pdf=True``); its
    streams are deflated on the way in.
    """
    cover = BasePdf.from_bytes(cover_pdf)
    raw = RawObjects(cover_pdf)
    with base.lock:  # the base's reader resolves objects lazily: one thread at a time
        try:
            return _swap(base, cover, raw)
        except JoinError:
            raise
        except Exception as exc:  # a damaged cover read lazily: the caller renders in full
            raise JoinError(f"unreadable cover: {exc!r}") from exc


def _swap(base: BasePdf, cover: BasePdf, raw: RawObjects) -> bytes:
    if (base.tags is None) != (cover.tags is None):
        raise JoinError("one PDF is tagged and the other is not")
    if "/Annots" in _dict(base.page) or "/Annots" in _dict(cover.page):
        raise JoinError("the cover page has links")
    update = _Update(base, cover, raw)
    update.numbers[cover.page.idnum] = base.page.idnum
    update.numbers[cover.pages.idnum] = base.pages.idnum
    page = DictionaryObject(dict.items(_dict(cover.page)))
    page[NameObject("/Parent")] = base.pages
    if base.tags:
        _swap_tags(update, base, cover, page)
    update.emit(base.page.idnum, _dump(page, update.ref))
    cover_root = _dict(cover.reader.trailer["/Root"])
    if "/Metadata" in cover_root:  # XMP (PDF/A, PDF/UA variants) holds dates too
        root_ref = base.reader.trailer.raw_get("/Root")
        root = DictionaryObject(dict.items(root_ref.get_object()))
        root[NameObject("/Metadata")] = cover_root.raw_get("/Metadata")
        update.emit(root_ref.idnum, _dump(root, update.ref))
    info = update.ref(cover.reader.trailer.raw_get("/Info"))
    update.copy_pending()
    return update.finish(base, info, base.reader.trailer.get("/ID"))
