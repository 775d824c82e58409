"""Find author-identifying data hidden in PDF objects and in figure files.

The text checks in pipeline.checks.anonymity read what a reader sees. This
module reads what a reader does not see:

* ``check_pdf_objects`` walks every object of a PDF. It reports embedded
  files, bookmark titles with an identity term, pdfTeX ``/PTEX.*`` keys,
  absolute paths and identity terms in any string, name or decompressed
  stream (images and fonts excepted), and text drawn invisibly on a page.
* ``check_figure_files`` reads the metadata of PDF, PNG and JPEG figures.

Both raise AnonymityCheckError when a file cannot be read, so that an
unreadable file is never reported as clean.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from xml.parsers.expat import ExpatError

from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    ContentStream,
    DictionaryObject,
    FloatObject,
    IndirectObject,
    NameObject,
    NumberObject,
    StreamObject,
    TextStringObject,
)

from pipeline.checks.anonymity import (
    ANONYMOUS_AUTHOR,
    AnonymityCheckError,
    Finding,
    IdentityTerm,
    _identity_finding,
    find_terms,
    fold_text,
)

# Errors that pypdf and the decoders raise on a damaged or unsupported file.
_READ_ERRORS = (PyPdfError, OSError, ValueError, KeyError, TypeError, ExpatError, zlib.error, struct.error)

# The start of an absolute path that names a user, a home folder or a build machine.
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~/\\-])"
    r"(?:/home/[^/\s()<>\[\]]+|/Users/[^/\s()<>\[\]]+|/root/|/tmp/|/work/"
    r"|[A-Za-z]:(?:\\{1,2}|/)Users(?:\\{1,2}|/))"
    r"[^\s()<>\[\]{}\"'\x00]{0,80}"
)

MIN_VISIBLE_FONT_SIZE_PT = 1.0
EXCERPT_CHARACTERS = 60
MAX_FORM_DEPTH = 16

_FIX_PTEX = (
    "set \\pdfsuppressptexinfo=-1 in the preamble, so that pdfTeX does not copy "
    "the file names and metadata of included PDFs"
)
_FIX_PATH = "rebuild without the path, or strip it from the file that carries it (for example a figure PDF)"
_FIX_ATTACHMENT = "remove the embedded file, or submit it as anonymized supplementary material"
_FIX_BOOKMARK = "rename the section, or build the bookmarks from the anonymized titles"
_FIX_INVISIBLE = "remove the hidden text from the source, or make it visible if it is meant to be read"
_FIX_FIGURE_METADATA = "save the figure again without the metadata (for example matplotlib's metadata={'Author': None})"


def _resolve(value: object) -> object:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARACTERS else text[: EXCERPT_CHARACTERS - 1] + "…"


def _string_value(value: object) -> str:
    """Return a PDF string or name as text; bytes that are no text decode as Latin-1."""
    if isinstance(value, TextStringObject):
        return str(value)
    if isinstance(value, ByteStringObject):
        return bytes(value).decode("latin-1")
    return str(value)


# --- Text searches shared by PDFs and figure files ------------------------------


def _term_findings(location: str, text: str, terms: Sequence[IdentityTerm], where: str = "") -> list[Finding]:
    """Report each identity term found in ``text`` once."""
    findings = []
    reported: set[str] = set()
    for match in find_terms(fold_text(text), terms):
        if match.term.pattern.pattern in reported:
            continue
        reported.add(match.term.pattern.pattern)
        finding = _identity_finding(match, location)
        if where:
            finding = replace(finding, message=f"{finding.message} in {where}")
        findings.append(finding)
    return findings


def _path_findings(location: str, text: str, where: str) -> list[Finding]:
    """Report each distinct absolute path found in ``text`` once."""
    findings = []
    for path in dict.fromkeys(match.group() for match in _ABSOLUTE_PATH.finditer(text)):
        findings.append(Finding("absolute-path", location, f'absolute path "{path}" in {where}', _FIX_PATH))
    return findings


def _text_findings(location: str, text: str, terms: Sequence[IdentityTerm], where: str) -> list[Finding]:
    return _path_findings(location, text, where) + _term_findings(location, text, terms, where)


# --- PDF objects -----------------------------------------------------------------


@dataclass
class _PdfIndex:
    """Document structure that the object walk uses to place and skip objects."""

    page_of_object: dict[int, int]
    skipped_streams: set[int]  # fonts and images
    outline_items: set[int]
    metadata_objects: set[int]  # the Info dictionary and the catalog's XMP stream


def _object_location(pdf: Path, number: int, index: _PdfIndex) -> str:
    page = index.page_of_object.get(number)
    return f"{pdf} page {page} object {number}" if page else f"{pdf} object {number}"


def _indirect_children(value: object) -> Iterator[IndirectObject]:
    """Yield the indirect references inside a direct object, skipping links back up the tree."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, IndirectObject):
            yield item
        elif isinstance(item, DictionaryObject):
            for key, child in item.items():
                if key not in ("/Parent", "/P", "/Dest", "/A", "/Prev", "/Next", "/First", "/Last"):
                    pending.append(child)
        elif isinstance(item, ArrayObject):
            pending.extend(item)


def _index_pdf(reader: PdfReader) -> _PdfIndex:
    index = _PdfIndex({}, set(), set(), set())

    # Each object gets the first page that reaches it: its contents, resources, annotations.
    for number, page in enumerate(reader.pages, start=1):
        if page.indirect_reference is not None:
            index.page_of_object.setdefault(page.indirect_reference.idnum, number)
        pending = list(_indirect_children(page))
        while pending:
            reference = pending.pop()
            if reference.idnum in index.page_of_object:
                continue
            target = _resolve(reference)
            if isinstance(target, DictionaryObject) and target.get("/Type") == "/Page":
                continue
            index.page_of_object[reference.idnum] = number
            pending.extend(_indirect_children(target))

    info = reader.trailer.get("/Info")
    if isinstance(info, IndirectObject):
        index.metadata_objects.add(info.idnum)
    root = _resolve(reader.trailer.get("/Root"))
    if isinstance(root, DictionaryObject) and isinstance(root.get("/Metadata"), IndirectObject):
        index.metadata_objects.add(root.raw_get("/Metadata").idnum)
    return index


def _iter_object_numbers(reader: PdfReader) -> Iterator[tuple[int, int]]:
    """Yield (number, generation) of every object in the cross-reference table, in order."""
    numbers: dict[int, int] = {}
    for generation, entries in reader.xref.items():
        for number in entries:
            numbers[number] = generation
    for number in reader.xref_objStm:
        numbers.setdefault(number, 0)
    yield from sorted(numbers.items())


def _is_font_or_image(stream: StreamObject) -> bool:
    if stream.get("/Subtype") in ("/Image", "/Type1C", "/CIDFontType0C", "/OpenType"):
        return True
    return any(key in stream for key in ("/Length1", "/Length2", "/Length3"))


def _walk_direct(value: object, where: str) -> Iterator[tuple[str, str, object]]:
    """Yield (key path, key, value) for every entry of a direct object, depth first."""
    if isinstance(value, DictionaryObject):
        for key, child in value.items():
            path = f"{where}{key}"
            yield path, str(key), child
            if not isinstance(child, IndirectObject):
                yield from _walk_direct(child, path)
    elif isinstance(value, ArrayObject):
        for position, child in enumerate(value):
            path = f"{where}[{position}]"
            yield path, "", child
            if not isinstance(child, IndirectObject):
                yield from _walk_direct(child, path)


def _object_findings(
    location: str, number: int, obj: object, terms: Sequence[IdentityTerm], index: _PdfIndex
) -> list[Finding]:
    findings: list[Finding] = []
    for path, key, value in _walk_direct(obj, ""):
        if key.startswith("/PTEX."):
            value_text = "" if isinstance(value, (DictionaryObject, ArrayObject)) else f" = {_excerpt(str(_resolve(value)))}"
            findings.append(Finding("ptex", location, f"pdfTeX key {key}{value_text}", _FIX_PTEX))
        if key == "/Title" and number in index.outline_items:
            continue  # reported by the bookmark check
        if isinstance(value, (TextStringObject, ByteStringObject, NameObject)):
            findings += _text_findings(location, _string_value(value), terms, path or "the object")

    if isinstance(obj, StreamObject) and number not in index.skipped_streams and not _is_font_or_image(obj):
        if obj.get("/Type") not in ("/ObjStm", "/XRef"):
            try:
                data = obj.get_data()
            except _READ_ERRORS as error:
                raise AnonymityCheckError(f"{location}: failed to decompress the stream: {error}. Save the PDF again with a standard filter") from error
            findings += _text_findings(location, data.decode("latin-1"), terms, "the stream data")
    return findings


def _font_and_image_streams(reader: PdfReader, numbers: Sequence[tuple[int, int]]) -> set[int]:
    """Find the font programs that FontDescriptors point at, whatever their stream dictionaries declare."""
    skipped = set()
    for number, generation in numbers:
        obj = reader.get_object(IndirectObject(number, generation, reader))
        if isinstance(obj, DictionaryObject) and obj.get("/Type") == "/FontDescriptor":
            for key in ("/FontFile", "/FontFile2", "/FontFile3"):
                if isinstance(obj.get(key), IndirectObject):
                    skipped.add(obj.raw_get(key).idnum)
    return skipped


def _attachment_findings(pdf: Path, reader: PdfReader, index: _PdfIndex) -> list[Finding]:
    findings = []
    root = _resolve(reader.trailer.get("/Root"))
    names = _resolve(root.get("/Names")) if isinstance(root, DictionaryObject) else None
    tree = _resolve(names.get("/EmbeddedFiles")) if isinstance(names, DictionaryObject) else None
    pending = [tree] if tree is not None else []
    seen: set[int] = set()
    while pending:
        node = _resolve(pending.pop())
        if not isinstance(node, DictionaryObject) or id(node) in seen:
            continue
        seen.add(id(node))
        pending.extend(_resolve(node.get("/Kids")) or [])
        entries = _resolve(node.get("/Names")) or []
        for name, spec in zip(entries[0::2], entries[1::2]):
            where = f"{pdf} object {spec.idnum}" if isinstance(spec, IndirectObject) else f"{pdf} catalog"
            findings.append(
                Finding("attachment", where, f'embedded file "{_string_value(_resolve(name))}"', _FIX_ATTACHMENT)
            )

    for number, page in enumerate(reader.pages, start=1):
        for annotation in _resolve(page.get("/Annots")) or []:
            annotation = _resolve(annotation)
            if isinstance(annotation, DictionaryObject) and annotation.get("/Subtype") == "/FileAttachment":
                spec = _resolve(annotation.get("/FS"))
                file_name = ""
                if isinstance(spec, DictionaryObject):
                    file_name = _string_value(_resolve(spec.get("/UF", spec.get("/F", ""))))
                message = f'file attachment annotation "{file_name}"' if file_name else "file attachment annotation"
                findings.append(Finding("attachment", f"{pdf} page {number}", message, _FIX_ATTACHMENT))
    return findings


def _bookmark_findings(pdf: Path, reader: PdfReader, terms: Sequence[IdentityTerm], index: _PdfIndex) -> list[Finding]:
    findings = []
    root = _resolve(reader.trailer.get("/Root"))
    outlines = _resolve(root.get("/Outlines")) if isinstance(root, DictionaryObject) else None
    pending = [outlines.get("/First")] if isinstance(outlines, DictionaryObject) else []
    while pending:
        reference = pending.pop()
        if not isinstance(reference, IndirectObject) or reference.idnum in index.outline_items:
            continue
        index.outline_items.add(reference.idnum)
        item = _resolve(reference)
        if not isinstance(item, DictionaryObject):
            continue
        pending += [item.get("/Next"), item.get("/First")]
        title = _string_value(_resolve(item.get("/Title", "")))
        for finding in _term_findings(f"{pdf} object {reference.idnum}", title, terms):
            message = f'{finding.message} in bookmark "{_excerpt(title)}"'
            findings.append(replace(finding, check="bookmark", message=message, fix=_FIX_BOOKMARK))
    return findings


# --- Invisible text ----------------------------------------------------------------

_Matrix = tuple[float, float, float, float, float, float]
_IDENTITY: _Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def _multiply(first: _Matrix, second: _Matrix) -> _Matrix:
    a1, b1, c1, d1, e1, f1 = first
    a2, b2, c2, d2, e2, f2 = second
    return (
        a1 * a2 + b1 * c2,
        a1 * b2 + b1 * d2,
        c1 * a2 + d1 * c2,
        c1 * b2 + d1 * d2,
        e1 * a2 + f1 * c2 + e2,
        e1 * b2 + f1 * d2 + f2,
    )


def _numbers(operands: Sequence[object]) -> list[float] | None:
    if all(isinstance(value, (NumberObject, FloatObject, int, float)) for value in operands):
        return [float(value) for value in operands]
    return None


def _is_white(components: Sequence[float], family: str) -> bool:
    """Tell whether a colour in a colour-space family paints white."""
    if family == "gray":
        return len(components) == 1 and components[0] >= 1.0
    if family == "rgb":
        return len(components) == 3 and all(value >= 1.0 for value in components)
    if family == "cmyk":
        return len(components) == 4 and all(value <= 0.0 for value in components)
    if family == "tint":  # Separation and DeviceN: tint 0 puts no ink on the page
        return bool(components) and all(value <= 0.0 for value in components)
    return False


def _colour_space_family(name: object, resources: DictionaryObject) -> str:
    """Classify a colour space as gray, rgb, cmyk, tint or other (never taken as white)."""
    space = _resolve(name)
    if isinstance(space, NameObject) and space not in ("/DeviceGray", "/DeviceRGB", "/DeviceCMYK", "/Pattern"):
        spaces = _resolve(resources.get("/ColorSpace"))
        space = _resolve(spaces.get(space)) if isinstance(spaces, DictionaryObject) else None
    if isinstance(space, ArrayObject) and space:
        kind = space[0]
        if kind in ("/Separation", "/DeviceN"):
            return "tint"
        if kind == "/ICCBased" and len(space) > 1:
            components = _resolve(space[1]).get("/N")
            return {1: "gray", 3: "rgb", 4: "cmyk"}.get(int(components) if components else 0, "other")
        space = kind
    return {"/DeviceGray": "gray", "/CalGray": "gray", "/DeviceRGB": "rgb", "/CalRGB": "rgb", "/DeviceCMYK": "cmyk"}.get(
        str(space), "other"
    )


@dataclass
class _GraphicsState:
    ctm: _Matrix = _IDENTITY
    fill_family: str = "gray"
    fill_white: bool = False
    stroke_family: str = "gray"
    stroke_white: bool = False
    fill_alpha: float = 1.0
    stroke_alpha: float = 1.0
    render_mode: int = 0
    font: DictionaryObject | None = None
    font_size: float = 0.0


class _FontDecoder:
    """Decode the bytes that a text-showing operator draws, through the font's encoding."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[object, dict]] = {}

    def decode(self, raw: bytes, font: DictionaryObject | None) -> str:
        if font is None:
            return raw.decode("latin-1")
        key = id(font)
        if key not in self._cache:
            self._cache[key] = self._load(font)
        encoding, character_map = self._cache[key]
        if encoding is None:
            return raw.decode("latin-1")
        if isinstance(encoding, str):
            text = raw.decode(encoding, "replace")
        else:
            text = "".join(encoding.get(byte, chr(byte)) for byte in raw)
        # Some ToUnicode maps (matplotlib's, for one) put a byte-order mark before every character.
        return "".join(character_map.get(char, char) for char in text).replace("\ufeff", "")

    @staticmethod
    def _load(font: DictionaryObject) -> tuple[object, dict]:
        # NOTE: pypdf has no public API that maps character codes to Unicode, so
        # this uses its internal get_encoding (pypdf 7.1). Without it, codes are
        # read as Latin-1, which can take a space glyph of a CID font for a character.
        try:
            from pypdf._cmap import get_encoding

            return get_encoding(font)
        except Exception:  # noqa: BLE001 - any failure falls back to Latin-1
            return None, {}


@dataclass
class _HiddenText:
    """Invisible text collected on one page, by the reason it cannot be seen."""

    pieces: dict[str, list[str]]

    def add(self, reason: str, text: str) -> None:
        self.pieces.setdefault(reason, []).append(text)


def _invisibility_reason(state: _GraphicsState, text_matrix: _Matrix) -> str | None:
    mode = state.render_mode
    if mode in (3, 7):
        return f"text render mode {mode} (invisible)"
    uses_fill = mode in (0, 2, 4, 6)
    uses_stroke = mode in (1, 2, 5, 6)
    fill_hidden = state.fill_white or state.fill_alpha <= 0.0
    stroke_hidden = state.stroke_white or state.stroke_alpha <= 0.0
    if (not uses_fill or fill_hidden) and (not uses_stroke or stroke_hidden):
        if (uses_fill and state.fill_alpha <= 0.0) or (uses_stroke and state.stroke_alpha <= 0.0):
            return "fully transparent text"
        return "white text"

    a, b, c, d, _, _ = _multiply(text_matrix, state.ctm)
    scale = math.hypot(c, d)
    font = state.font
    if font is not None and font.get("/Subtype") == "/Type3":
        font_matrix = _resolve(font.get("/FontMatrix"))
        if isinstance(font_matrix, ArrayObject) and len(font_matrix) >= 4:
            scale *= math.hypot(float(font_matrix[2]), float(font_matrix[3])) * 1000
    size = abs(state.font_size) * scale
    if size < MIN_VISIBLE_FONT_SIZE_PT:
        return f"font size {size:.2g} pt"
    return None


def _shown_bytes(operator: bytes, operands: Sequence[object]) -> list[bytes]:
    if operator == b"TJ":
        items = operands[0] if operands else []
    elif operator in (b"Tj", b"'"):
        items = operands[:1]
    elif operator == b'"':
        items = operands[2:3]
    else:
        return []
    shown = []
    for item in items:
        if isinstance(item, TextStringObject):
            shown.append(item.get_original_bytes())
        elif isinstance(item, (ByteStringObject, bytes)):
            shown.append(bytes(item))
    return shown


def _scan_content(
    reader: PdfReader,
    content: ContentStream,
    resources: DictionaryObject,
    state: _GraphicsState,
    hidden: _HiddenText,
    decoder: _FontDecoder,
    depth: int,
) -> None:
    """Follow the graphics state through one content stream and its form XObjects."""
    stack: list[_GraphicsState] = []
    text_matrix = _IDENTITY
    for operands, operator in content.operations:
        if operator == b"q":
            stack.append(replace(state))
        elif operator == b"Q":
            if stack:
                state = stack.pop()
        elif operator == b"cm":
            values = _numbers(operands)
            if values and len(values) == 6:
                state.ctm = _multiply(tuple(values), state.ctm)  # type: ignore[arg-type]
        elif operator in (b"g", b"rg", b"k", b"G", b"RG", b"K"):
            values = _numbers(operands) or []
            family = {b"g": "gray", b"rg": "rgb", b"k": "cmyk"}[operator.lower()]
            if operator.islower():
                state.fill_family, state.fill_white = family, _is_white(values, family)
            else:
                state.stroke_family, state.stroke_white = family, _is_white(values, family)
        elif operator in (b"cs", b"CS") and operands:
            family = _colour_space_family(operands[0], resources)
            # A new colour space starts at its initial colour: black, or tint 1 (full ink).
            if operator == b"cs":
                state.fill_family, state.fill_white = family, False
            else:
                state.stroke_family, state.stroke_white = family, False
        elif operator in (b"sc", b"scn", b"SC", b"SCN"):
            values = _numbers(operands)  # None for a pattern name
            if operator.islower():
                state.fill_white = values is not None and _is_white(values, state.fill_family)
            else:
                state.stroke_white = values is not None and _is_white(values, state.stroke_family)
        elif operator == b"gs" and operands:
            states = _resolve(resources.get("/ExtGState"))
            graphics = _resolve(states.get(operands[0])) if isinstance(states, DictionaryObject) else None
            if isinstance(graphics, DictionaryObject):
                if "/ca" in graphics:
                    state.fill_alpha = float(graphics["/ca"])
                if "/CA" in graphics:
                    state.stroke_alpha = float(graphics["/CA"])
        elif operator == b"Tr" and operands:
            state.render_mode = int(operands[0])
        elif operator == b"Tf" and len(operands) >= 2:
            fonts = _resolve(resources.get("/Font"))
            font = _resolve(fonts.get(operands[0])) if isinstance(fonts, DictionaryObject) else None
            state.font = font if isinstance(font, DictionaryObject) else None
            state.font_size = float(operands[1])
        elif operator == b"BT":
            text_matrix = _IDENTITY
        elif operator == b"Tm":
            values = _numbers(operands)
            if values and len(values) == 6:
                text_matrix = tuple(values)  # type: ignore[assignment]
        elif operator in (b"Tj", b"TJ", b"'", b'"'):
            text = "".join(decoder.decode(raw, state.font) for raw in _shown_bytes(operator, operands))
            if text.strip():
                reason = _invisibility_reason(state, text_matrix)
                if reason:
                    hidden.add(reason, text)
        elif operator == b"Do" and operands and depth < MAX_FORM_DEPTH:
            xobjects = _resolve(resources.get("/XObject"))
            form = _resolve(xobjects.get(operands[0])) if isinstance(xobjects, DictionaryObject) else None
            if isinstance(form, StreamObject) and form.get("/Subtype") == "/Form":
                matrix = _numbers(_resolve(form.get("/Matrix")) or []) or list(_IDENTITY)
                inner = replace(state, ctm=_multiply(tuple(matrix), state.ctm))  # type: ignore[arg-type]
                inner_resources = _resolve(form.get("/Resources"))
                if not isinstance(inner_resources, DictionaryObject):
                    inner_resources = resources
                form_content = ContentStream(form, reader)
                _scan_content(reader, form_content, inner_resources, inner, hidden, decoder, depth + 1)


def _invisible_text_findings(pdf: Path, reader: PdfReader) -> list[Finding]:
    # NOTE: text in annotation appearance streams, text clipped away or drawn
    # outside the page, and text covered by a filled shape are not detected.
    findings = []
    decoder = _FontDecoder()
    for number, page in enumerate(reader.pages, start=1):
        content = page.get_contents()
        if content is None:
            continue
        resources = _resolve(page.get("/Resources"))
        hidden = _HiddenText({})
        _scan_content(
            reader,
            ContentStream(content, reader),
            resources if isinstance(resources, DictionaryObject) else DictionaryObject(),
            _GraphicsState(),
            hidden,
            decoder,
            depth=0,
        )
        for reason, pieces in hidden.pieces.items():
            findings.append(
                Finding(
                    "invisible-text",
                    f"{pdf} page {number}",
                    f'{reason}: "{_excerpt(" ".join(pieces))}"',
                    _FIX_INVISIBLE,
                )
            )
    return findings


def _read_pdf(pdf: Path) -> PdfReader:
    try:
        reader = PdfReader(pdf)
        if reader.is_encrypted:
            raise AnonymityCheckError(f"{pdf} is encrypted, so its objects cannot be checked. Save it unencrypted")
        len(reader.pages)
    except AnonymityCheckError:
        raise
    except _READ_ERRORS as error:
        raise AnonymityCheckError(f"cannot read {pdf}: {error}. Rebuild it, or check that it is a complete PDF") from error
    return reader


def check_pdf_objects(pdf: Path, terms: Sequence[IdentityTerm], include_metadata: bool = True) -> list[Finding]:
    """Search every object of ``pdf`` for data that identifies the authors.

    Reports embedded files (attachment), bookmark titles with an identity term
    (bookmark), pdfTeX keys (ptex), absolute paths and identity terms in strings,
    names and decompressed streams other than fonts and images (absolute-path and
    identity), and text drawn invisibly (invisible-text). With ``include_metadata``
    false the Info dictionary and the XMP stream are skipped, for a caller that
    already checks them. Raises AnonymityCheckError when the PDF cannot be read.
    """
    pdf = Path(pdf)
    reader = _read_pdf(pdf)
    try:
        numbers = list(_iter_object_numbers(reader))
        index = _index_pdf(reader)
        index.skipped_streams = _font_and_image_streams(reader, numbers)

        findings = _attachment_findings(pdf, reader, index)
        findings += _bookmark_findings(pdf, reader, terms, index)
        for number, generation in numbers:
            if not include_metadata and number in index.metadata_objects:
                continue
            obj = reader.get_object(IndirectObject(number, generation, reader))
            if obj is None:
                continue
            findings += _object_findings(_object_location(pdf, number, index), number, obj, terms, index)
        findings += _invisible_text_findings(pdf, reader)
    except AnonymityCheckError:
        raise
    except _READ_ERRORS as error:
        raise AnonymityCheckError(f"cannot read the objects of {pdf}: {error}. Rebuild it, or check that it is a complete PDF") from error
    return findings


# --- Figure files ------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"

# Metadata keys that name a person whatever their value (PNG keywords, EXIF tags, PDF Info keys).
_PERSON_KEYS = ("author", "artist", "copyright", "creator-person")
_EXIF_PERSON_TAGS = {0x013B: "Artist", 0x8298: "Copyright", 0x9C9D: "XPAuthor"}
_EXIF_ASCII = 2
_EXIF_BYTE = 1
_EXIF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{4,}")


def _person_key_finding(location: str, key: str, value: str) -> Finding | None:
    if not value.strip() or value.strip().casefold() == ANONYMOUS_AUTHOR.casefold():
        return None
    return Finding("figure-metadata", location, f'{key} is "{_excerpt(value)}"', _FIX_FIGURE_METADATA)


def _metadata_entry_findings(location: str, key: str, value: str, terms: Sequence[IdentityTerm]) -> list[Finding]:
    findings = _text_findings(location, f"{key} {value}", terms, f"metadata {key}")
    if key.strip().casefold() in _PERSON_KEYS:
        finding = _person_key_finding(location, key, value)
        findings += [finding] if finding else []
    return findings


def _iter_png_text(data: bytes, path: Path) -> Iterator[tuple[str, str | bytes]]:
    """Yield (keyword, text) of every text chunk, and ("eXIf", raw EXIF) for an EXIF chunk."""
    position = len(PNG_SIGNATURE)
    while position < len(data):
        if position + 8 > len(data):
            raise AnonymityCheckError(f"{path}: truncated PNG chunk header at byte {position}")
        length, chunk_type = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        crc = data[position + 8 + length : position + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise AnonymityCheckError(f"{path}: truncated PNG chunk {chunk_type!r} at byte {position}")
        if zlib.crc32(chunk_type + body) != struct.unpack(">I", crc)[0]:
            raise AnonymityCheckError(f"{path}: CRC mismatch in PNG chunk {chunk_type!r} at byte {position}")
        position += 12 + length

        if chunk_type == b"tEXt":
            keyword, _, text = body.partition(b"\x00")
            yield keyword.decode("latin-1"), text.decode("latin-1")
        elif chunk_type == b"zTXt":
            keyword, _, rest = body.partition(b"\x00")
            yield keyword.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
        elif chunk_type == b"iTXt":
            keyword, _, rest = body.partition(b"\x00")
            compressed, rest = rest[0], rest[2:]
            language, _, rest = rest.partition(b"\x00")
            translated, _, text = rest.partition(b"\x00")
            if compressed:
                text = zlib.decompress(text)
            value = text.decode("utf-8", "replace")
            if translated:
                value = f"{translated.decode('utf-8', 'replace')} {value}"
            yield keyword.decode("latin-1"), value
        elif chunk_type == b"eXIf":
            yield "eXIf", body
        elif chunk_type == b"IEND":
            return
    raise AnonymityCheckError(f"{path}: PNG ends without an IEND chunk")


def _exif_person_tags(tiff: bytes) -> Iterator[tuple[str, str]]:
    """Yield (tag name, value) of the Artist, Copyright and XPAuthor tags in IFD0 of a TIFF header."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        raise ValueError("EXIF data does not start with a TIFF header")
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd_offset,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[ifd_offset : ifd_offset + 2])
    for entry in range(count):
        start = ifd_offset + 2 + 12 * entry
        tag, field_type, value_count = struct.unpack(order + "HHI", tiff[start : start + 8])
        if tag not in _EXIF_PERSON_TAGS:
            continue
        size = _EXIF_TYPE_SIZES.get(field_type, 1) * value_count
        if size <= 4:
            raw = tiff[start + 8 : start + 8 + size]
        else:
            (offset,) = struct.unpack(order + "I", tiff[start + 8 : start + 12])
            raw = tiff[offset : offset + size]
        if tag == 0x9C9D:  # XPAuthor: UTF-16LE in BYTE fields
            value = raw.decode("utf-16-le", "replace")
        else:
            value = raw.decode("utf-8", "replace")
        yield _EXIF_PERSON_TAGS[tag], value.replace("\x00", " ").strip()


def _exif_findings(location: str, exif: bytes, terms: Sequence[IdentityTerm], path: Path) -> list[Finding]:
    findings = []
    try:
        for tag, value in _exif_person_tags(exif):
            finding = _person_key_finding(location, f"EXIF {tag}", value)
            findings += [finding] if finding else []
    except (ValueError, struct.error) as error:
        raise AnonymityCheckError(f"{path}: invalid EXIF data: {error}") from error
    strings = "\n".join(run.decode("ascii") for run in _PRINTABLE_RUN.findall(exif))
    return findings + _text_findings(location, strings, terms, "the EXIF data")


def _check_png(path: Path, data: bytes, location: str, terms: Sequence[IdentityTerm]) -> list[Finding]:
    findings = []
    try:
        for keyword, value in _iter_png_text(data, path):
            if isinstance(value, bytes):
                findings += _exif_findings(location, value, terms, path)
            else:
                findings += _metadata_entry_findings(location, keyword, value, terms)
    except (zlib.error, IndexError) as error:
        raise AnonymityCheckError(f"{path}: invalid compressed PNG text chunk: {error}") from error
    return findings


def _check_jpeg(path: Path, data: bytes, location: str, terms: Sequence[IdentityTerm]) -> list[Finding]:
    findings = []
    position = 2
    while position < len(data):
        if data[position] != 0xFF:
            raise AnonymityCheckError(f"{path}: invalid JPEG marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or start of the compressed scan: no more metadata
            return findings
        if position + 4 > len(data):
            raise AnonymityCheckError(f"{path}: truncated JPEG segment at byte {position}")
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        segment = data[position + 4 : position + 2 + length]
        if length < 2 or len(segment) != length - 2:
            raise AnonymityCheckError(f"{path}: truncated JPEG segment at byte {position}")
        position += 2 + length

        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            findings += _exif_findings(location, segment[6:], terms, path)
        elif marker == 0xE1 or marker == 0xFE:  # XMP packet or comment
            text = segment.decode("utf-8", "replace")
            where = "the XMP metadata" if marker == 0xE1 else "a JPEG comment"
            findings += _text_findings(location, text, terms, where)
            for creator in re.findall(r"<dc:creator>(.*?)</dc:creator>", text, re.DOTALL):
                finding = _person_key_finding(location, "XMP dc:creator", re.sub(r"<[^>]+>", " ", creator))
                findings += [finding] if finding else []
    raise AnonymityCheckError(f"{path}: JPEG ends without an end-of-image marker")


def _check_figure_pdf(path: Path, terms: Sequence[IdentityTerm]) -> list[Finding]:
    findings = check_pdf_objects(path, terms)
    reader = _read_pdf(path)
    try:
        info = reader.metadata or {}
        for key in ("/Author",):
            if key in info:
                finding = _person_key_finding(f"{path} metadata Author", "Author", str(info[key]))
                findings += [finding] if finding else []
        xmp = reader.xmp_metadata
        for creator in (xmp.dc_creator or []) if xmp is not None else []:
            finding = _person_key_finding(f"{path} XMP metadata", "dc:creator", str(creator))
            findings += [finding] if finding else []
    except _READ_ERRORS as error:
        raise AnonymityCheckError(f"cannot read the metadata of {path}: {error}") from error
    return findings


def check_figure_files(paths: Sequence[Path], terms: Sequence[IdentityTerm]) -> list[Finding]:
    """Check the metadata of PDF, PNG and JPEG figure files for data that identifies the authors.

    The file type comes from the file's first bytes, not its suffix. Raises
    AnonymityCheckError for a file that cannot be read or is of another type.
    """
    findings: list[Finding] = []
    for path in map(Path, paths):
        try:
            data = path.read_bytes()
        except OSError as error:
            raise AnonymityCheckError(f"cannot read the figure {path}: {error}") from error

        if b"%PDF-" in data[:1024]:
            findings += _check_figure_pdf(path, terms)
            continue
        try:
            if data.startswith(PNG_SIGNATURE):
                findings += _check_png(path, data, str(path), terms)
                continue
            if data.startswith(JPEG_SIGNATURE):
                findings += _check_jpeg(path, data, str(path), terms)
                continue
        except (IndexError, struct.error) as error:
            raise AnonymityCheckError(f"{path}: truncated or invalid image file: {error}") from error
        raise AnonymityCheckError(
            f"{path} is not a PDF, PNG or JPEG file, so its metadata cannot be checked. "
            "Convert the figure to one of these formats"
        )
    return findings
