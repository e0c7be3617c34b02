"""Put a freshly rendered cover in place of page 1 of a cached report, as an incremental update.

The cached PDF (WeasyPrint's render of the whole report with a placeholder cover) is copied byte
for byte; after it come the cover page's objects (content stream, fonts, images), a new page 1
object under the same object number, the tag tree's document element and parent tree with the
cover's structure elements in place of the placeholder's, the cover render's document
information (dates), and a cross-reference stream pointing back at the cached one (PDF 1.7,
7.5.6 "Incremental updates"). Every other page, link, named destination, bookmark and tag of the
cached file stays as it is, so the result matches a full render while costing a few milliseconds
instead of a WeasyPrint layout of the whole report.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NumberObject,
    StreamObject,
)

Ref = Callable[[IndirectObject], int]


class JoinError(Exception):
    """The PDFs do not have the shape the cover swap relies on."""


def _raw(value: Any) -> Any:
    return value.get_object() if isinstance(value, IndirectObject) else value


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


def _dump_object(obj: Any, ref: Ref) -> bytes:
    """Serialise an object's body; a stream keeps its encoded data and its filters."""
    if isinstance(obj, StreamObject):
        data = obj._data  # the encoded bytes, matching the stream's /Filter
        header = DictionaryObject({k: v for k, v in dict.items(obj) if k != "/Length"})
        header[NameObject("/Length")] = NumberObject(len(data))
        return _dump(header, ref) + b"\nstream\n" + data + b"\nendstream"
    return _dump(obj, ref)


def _struct_tree(reader: PdfReader) -> tuple[int, DictionaryObject, int, DictionaryObject] | None:
    """(document element number and dict, parent tree number and dict), or None if untagged."""
    root = reader.trailer["/Root"]
    if "/StructTreeRoot" not in root:
        return None
    tree = root["/StructTreeRoot"]
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
        if not isinstance(kid, IndirectObject) or dict.get(kid.get_object(), "/Pg") != page:
            break
        found.append(kid)
    return found


def _parents_of(parent_tree: DictionaryObject, key: int) -> tuple[int, Any]:
    nums = _raw(parent_tree.raw_get("/Nums"))
    for index in range(0, len(nums), 2):
        if nums[index] == key:
            return index + 1, nums[index + 1]
    raise JoinError(f"no parent tree entry {key}")


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
            tags = _struct_tree(reader)
            base = cls(data, reader, page.indirect_reference, page.raw_get("/Parent"), tags)
        except (PyPdfError, KeyError, IndexError, ValueError) as exc:
            raise JoinError(f"unreadable PDF: {exc}") from exc
        return base


class _Update:
    """The objects of one incremental update, numbered after the base file's objects."""

    def __init__(self, base: BasePdf, cover: BasePdf) -> None:
        self.cover = cover.reader
        self.out = bytearray(base.data if base.data.endswith(b"\n") else base.data + b"\n")
        self.offsets: dict[int, int] = {}
        self.numbers: dict[int, int] = {}  # cover object number -> number in the result
        self.todo: list[IndirectObject] = []
        self.next = int(base.reader.trailer["/Size"])

    def ref(self, obj: IndirectObject) -> int:
        """The result's number for ``obj``: the base's objects keep theirs, the cover's are
        renumbered and copied on first use."""
        if obj.pdf is not self.cover:
            return obj.idnum
        if obj.idnum not in self.numbers:
            self.numbers[obj.idnum] = self.next
            self.next += 1
            self.todo.append(obj)
        return self.numbers[obj.idnum]

    def emit(self, number: int, body: bytes) -> None:
        self.offsets[number] = len(self.out)
        self.out += b"%d 0 obj\n" % number + body + b"\nendobj\n"

    def copy_pending(self) -> None:
        while self.todo:
            obj = self.todo.pop()
            self.emit(self.numbers[obj.idnum], _dump_object(obj.get_object(), self.ref))

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
    base_page = base.page.get_object()
    page[NameObject("/StructParents")] = base_page.raw_get("/StructParents")
    old = _page_elements(document, base.page)
    new = _page_elements(cover_document, cover.page)
    kids = ArrayObject([*new, *list(_raw(document.raw_get("/K")))[len(old) :]])
    document = DictionaryObject({**dict(dict.items(document)), NameObject("/K"): kids})
    index, _ = _parents_of(tree, base_page["/StructParents"])
    _, cover_parents = _parents_of(cover_tree, cover.page.get_object()["/StructParents"])
    nums = ArrayObject(list(_raw(tree.raw_get("/Nums"))))
    nums[index] = cover_parents
    tree = DictionaryObject({**dict(dict.items(tree)), NameObject("/Nums"): nums})
    update.emit(doc_number, _dump(document, update.ref))
    update.emit(tree_number, _dump(tree, update.ref))


def swap_cover(base: BasePdf, cover_pdf: bytes) -> bytes:
    """``base`` with page 1 replaced by page 1 of ``cover_pdf``, and the cover render's document
    information (dates) and XMP metadata if any."""
    cover = BasePdf.from_bytes(cover_pdf)
    with base.lock:  # the base's reader resolves objects lazily: one thread at a time
        return _swap(base, cover)


def _swap(base: BasePdf, cover: BasePdf) -> bytes:
    if (base.tags is None) != (cover.tags is None):
        raise JoinError("one PDF is tagged and the other is not")
    if "/Annots" in base.page.get_object() or "/Annots" in cover.page.get_object():
        raise JoinError("the cover page has links")
    update = _Update(base, cover)
    update.numbers[cover.page.idnum] = base.page.idnum
    update.numbers[cover.pages.idnum] = base.pages.idnum
    page = DictionaryObject(dict.items(cover.page.get_object()))
    page[NameObject("/Parent")] = base.pages
    if base.tags:
        _swap_tags(update, base, cover, page)
    update.emit(base.page.idnum, _dump(page, update.ref))
    cover_root = cover.reader.trailer["/Root"]
    if "/Metadata" in cover_root:  # XMP (PDF/A, PDF/UA variants) holds dates too
        root_ref = base.reader.trailer.raw_get("/Root")
        root = DictionaryObject(dict.items(root_ref.get_object()))
        root[NameObject("/Metadata")] = cover_root.raw_get("/Metadata")
        update.emit(root_ref.idnum, _dump(root, update.ref))
    info = update.ref(cover.reader.trailer.raw_get("/Info"))
    update.copy_pending()
    return update.finish(base, info, base.reader.trailer.get("/ID"))
