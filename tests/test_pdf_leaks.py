"""Tests for pipeline.checks.pdf_leaks on PDFs, PNGs and JPEGs built in temporary folders."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    TextStringObject,
)

from pipeline.checks.anonymity import AnonymityCheckError, load_identity_terms
from pipeline.checks.pdf_leaks import check_figure_files, check_pdf_objects


AUTHORS_YAML = """\
authors:
  - name: Ada Lovelace
    email: ada@analytical.example.org
    affiliation: Analytical Engine Society
"""


@pytest.fixture()
def terms(tmp_path):
    authors = tmp_path / "authors.yaml"
    authors.write_text(AUTHORS_YAML, encoding="utf-8")
    return load_identity_terms(authors)


def checks_of(findings) -> list[str]:
    return sorted(finding.check for finding in findings)


# --- PDF builders ----------------------------------------------------------------


def write_pdf(path: Path, content: bytes = b"", setup=None) -> Path:
    """Write a one-page PDF whose page draws ``content`` with Helvetica as /F1."""
    writer = PdfWriter()
    page = writer.add_blank_page(300, 300)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    resources = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    page[NameObject("/Resources")] = resources
    stream = DecodedStreamObject()
    stream.set_data(content)
    page[NameObject("/Contents")] = writer._add_object(stream)
    if setup is not None:
        setup(writer, page)
    with path.open("wb") as file:
        writer.write(file)
    return path


def visible_text(text: bytes) -> bytes:
    return b"0 g BT /F1 12 Tf 20 200 Td (" + text + b") Tj ET\n"


# --- Attachments, bookmarks, PTEX keys, paths ------------------------------------


def test_embedded_file_reported(tmp_path, terms):
    pdf = write_pdf(tmp_path / "a.pdf", setup=lambda writer, page: writer.add_attachment("data.csv", b"1,2\n"))

    findings = [f for f in check_pdf_objects(pdf, terms) if f.check == "attachment"]

    assert len(findings) == 1
    assert "data.csv" in findings[0].message
    assert "object" in findings[0].location


def test_file_attachment_annotation_reported(tmp_path, terms):
    def add_annotation(writer, page):
        spec = DictionaryObject({NameObject("/Type"): NameObject("/Filespec"), NameObject("/F"): TextStringObject("notes.txt")})
        annotation = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Annot"),
                NameObject("/Subtype"): NameObject("/FileAttachment"),
                NameObject("/FS"): spec,
            }
        )
        page[NameObject("/Annots")] = ArrayObject([writer._add_object(annotation)])

    pdf = write_pdf(tmp_path / "a.pdf", setup=add_annotation)

    findings = [f for f in check_pdf_objects(pdf, terms) if f.check == "attachment"]

    assert len(findings) == 1
    assert "notes.txt" in findings[0].message
    assert findings[0].location == f"{pdf} page 1"


def test_bookmark_with_name_reported(tmp_path, terms):
    def add_outline(writer, page):
        writer.add_outline_item(title="Introduction", page_number=0)
        writer.add_outline_item(title="Thanks to Ada Lovelace", page_number=0)

    pdf = write_pdf(tmp_path / "b.pdf", setup=add_outline)

    findings = check_pdf_objects(pdf, terms)

    assert checks_of(findings) == ["bookmark"]
    assert "Ada Lovelace" in findings[0].message
    assert "Thanks to" in findings[0].message


def test_ptex_keys_and_home_path_reported(tmp_path, terms):
    def add_figure(writer, page):
        figure = DecodedStreamObject()
        figure.set_data(b"0 0 10 10 re f")
        figure.update(
            {
                NameObject("/Type"): NameObject("/XObject"),
                NameObject("/Subtype"): NameObject("/Form"),
                NameObject("/PTEX.FileName"): TextStringObject("/home/ada/paper/fig.pdf"),
                NameObject("/PTEX.PageNumber"): TextStringObject("1"),
            }
        )
        page["/Resources"][NameObject("/XObject")] = DictionaryObject({NameObject("/Im1"): writer._add_object(figure)})

    pdf = write_pdf(tmp_path / "p.pdf", b"q /Im1 Do Q\n", setup=add_figure)

    findings = check_pdf_objects(pdf, terms)

    assert checks_of(findings) == ["absolute-path", "ptex", "ptex"]
    path_finding = next(f for f in findings if f.check == "absolute-path")
    assert '"/home/ada/paper/fig.pdf"' in path_finding.message
    assert "/PTEX.FileName" in path_finding.message
    assert path_finding.location.startswith(f"{pdf} page 1 object ")


@pytest.mark.parametrize(
    "path",
    ["/Users/ada/fig.pdf", "C:\\Users\\ada\\fig.pdf", "/root/fig.pdf", "/tmp/build/fig.pdf", "/work/paper/fig.pdf"],
)
def test_absolute_paths_in_strings(tmp_path, terms, path):
    def add_string(writer, page):
        page[NameObject("/Custom")] = TextStringObject(path)

    pdf = write_pdf(tmp_path / "s.pdf", setup=add_string)

    findings = check_pdf_objects(pdf, terms)

    assert checks_of(findings) == ["absolute-path"]
    assert path in findings[0].message


def test_url_with_tmp_segment_not_a_path(tmp_path, terms):
    def add_string(writer, page):
        page[NameObject("/Custom")] = TextStringObject("https://example.org/tmp/x and ~/work/notes")

    pdf = write_pdf(tmp_path / "u.pdf", setup=add_string)

    assert check_pdf_objects(pdf, terms) == []


def test_identity_term_in_metadata_and_stream(tmp_path, terms):
    def add_metadata(writer, page):
        writer.add_metadata({"/Subject": "Draft by Ada Lovelace"})

    # The name is drawn in visible black text, so only the object search reports it.
    pdf = write_pdf(tmp_path / "m.pdf", visible_text(b"Ada Lovelace"), setup=add_metadata)

    findings = check_pdf_objects(pdf, terms)

    assert checks_of(findings) == ["identity", "identity"]
    assert any("/Subject" in f.message for f in findings)
    assert any("stream data" in f.message and "page 1" in f.location for f in findings)

    without_metadata = check_pdf_objects(pdf, terms, include_metadata=False)
    assert checks_of(without_metadata) == ["identity"]


def test_identity_term_in_compressed_stream(tmp_path, terms):
    def compress(writer, page):
        page.compress_content_streams()

    pdf = write_pdf(tmp_path / "z.pdf", b"% built in /home/ada/drafts\n" + visible_text(b"x"), setup=compress)

    findings = check_pdf_objects(pdf, terms)

    assert checks_of(findings) == ["absolute-path"]
    assert "/home/ada/drafts" in findings[0].message


# --- Invisible text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"1 1 1 rg BT /F1 12 Tf 20 200 Td (Ada Lovelace) Tj ET", "white text"),
        (b"1 g BT /F1 12 Tf 20 200 Td (Ada Lovelace) Tj ET", "white text"),
        (b"0 0 0 0 k BT /F1 12 Tf 20 200 Td [(Ada) -250 (Lovelace)] TJ ET", "white text"),
        (b"/DeviceRGB cs 1 1 1 sc BT /F1 12 Tf 20 200 Td (Ada Lovelace) Tj ET", "white text"),
        (b"BT 3 Tr /F1 12 Tf 20 200 Td (Ada Lovelace) Tj ET", "text render mode 3"),
        (b"BT /F1 0.5 Tf 20 200 Td (Ada Lovelace) Tj ET", "font size 0.5 pt"),
        (b"BT /F1 12 Tf 0.05 0 0 0.05 20 200 Tm (Ada Lovelace) Tj ET", "font size 0.6 pt"),
        (b"q 0.01 0 0 0.01 0 0 cm BT /F1 12 Tf (Ada Lovelace) Tj ET Q", "font size 0.12 pt"),
    ],
)
def test_invisible_text_reported(tmp_path, terms, content, reason):
    pdf = write_pdf(tmp_path / "i.pdf", content + b"\n")

    findings = [f for f in check_pdf_objects(pdf, terms) if f.check == "invisible-text"]

    assert len(findings) == 1
    assert findings[0].location == f"{pdf} page 1"
    assert reason in findings[0].message
    assert "Ada" in findings[0].message


def test_invisible_text_state_restored(tmp_path, terms):
    # White text inside q/Q, then black text after Q: only the first is hidden.
    content = b"q 1 g BT /F1 12 Tf 20 200 Td (hidden) Tj ET Q BT /F1 12 Tf 20 100 Td (shown) Tj ET\n"
    pdf = write_pdf(tmp_path / "q.pdf", content)

    findings = [f for f in check_pdf_objects(pdf, terms) if f.check == "invisible-text"]

    assert len(findings) == 1
    assert "hidden" in findings[0].message
    assert "shown" not in findings[0].message


def test_whitespace_and_visible_text_not_reported(tmp_path, terms):
    content = b"1 g BT /F1 12 Tf 20 200 Td (   ) Tj ET 0.55 g BT /F1 9 Tf 20 100 Td (001) Tj ET\n"
    pdf = write_pdf(tmp_path / "w.pdf", content)

    assert check_pdf_objects(pdf, terms) == []


def test_unreadable_pdf_raises(tmp_path, terms):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\nnot a pdf at all")
    missing = tmp_path / "missing.pdf"

    with pytest.raises(AnonymityCheckError):
        check_pdf_objects(broken, terms)
    with pytest.raises(AnonymityCheckError):
        check_pdf_objects(missing, terms)


def test_default_paper_clean(terms, default_paper):
    findings = check_pdf_objects(default_paper / "build" / "main.pdf", terms)

    assert findings == []


# --- Figure files ----------------------------------------------------------------------


def png_chunk(chunk_type: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", zlib.crc32(chunk_type + body))


def write_png(path: Path, *chunks: bytes) -> Path:
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    pixels = png_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + pixels + png_chunk(b"IEND", b""))
    return path


def test_png_author_text_chunk(tmp_path, terms):
    png = write_png(tmp_path / "fig.png", png_chunk(b"tEXt", b"Author\x00Ada Lovelace"))

    findings = check_figure_files([png], terms)

    assert checks_of(findings) == ["figure-metadata", "identity"]
    assert all(f.location == str(png) for f in findings)
    assert any('Author is "Ada Lovelace"' in f.message for f in findings)


def test_png_compressed_and_international_chunks(tmp_path, terms):
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"saved from /home/ada/plots"))
    itxt = png_chunk(b"iTXt", b"Copyright\x00\x01\x00en\x00\x00" + zlib.compress("© Analytical Engine Society".encode()))
    png = write_png(tmp_path / "fig.png", ztxt, itxt)

    findings = check_figure_files([png], terms)

    assert checks_of(findings) == ["absolute-path", "figure-metadata", "identity"]
    assert any("/home/ada/plots" in f.message for f in findings)
    assert any("Analytical Engine Society" in f.message for f in findings if f.check == "identity")


def test_png_software_chunk_clean(tmp_path, terms):
    png = write_png(tmp_path / "fig.png", png_chunk(b"tEXt", b"Software\x00Matplotlib version3.11.2"))

    assert check_figure_files([png], terms) == []


def test_matplotlib_png_author(tmp_path, terms):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1, 1))
    axes.plot([0, 1], [0, 1])
    png = tmp_path / "plot.png"
    figure.savefig(png, metadata={"Author": "Ada Lovelace"})
    plt.close(figure)

    findings = check_figure_files([png], terms)

    assert checks_of(findings) == ["figure-metadata", "identity"]


def test_matplotlib_pdf_author(tmp_path, terms):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1, 1))
    axes.plot([0, 1], [0, 1])
    pdf = tmp_path / "plot.pdf"
    figure.savefig(pdf, metadata={"Author": "Ada Lovelace"})
    clean = tmp_path / "clean.pdf"
    figure.savefig(clean)
    plt.close(figure)

    findings = check_figure_files([pdf], terms)

    assert checks_of(findings) == ["figure-metadata", "identity"]
    assert check_figure_files([clean], terms) == []


def exif_with_artist(artist: bytes) -> bytes:
    """Build an APP1 EXIF segment whose IFD0 contains one ASCII Artist tag, little-endian."""
    value = artist + b"\x00"
    value_offset = 8 + 2 + 12 + 4
    entry = struct.pack("<HHII", 0x013B, 2, len(value), value_offset)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0) + value
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def write_jpeg(path: Path, *segments: bytes) -> Path:
    scan = b"\xff\xda" + struct.pack(">H", 8) + b"\x01\x01\x00\x00\x3f\x00" + b"\x00\x00"
    path.write_bytes(b"\xff\xd8" + b"".join(segments) + scan + b"\xff\xd9")
    return path


def test_jpeg_exif_artist(tmp_path, terms):
    jpeg = write_jpeg(tmp_path / "photo.jpg", exif_with_artist(b"Ada Lovelace"))

    findings = check_figure_files([jpeg], terms)

    assert checks_of(findings) == ["figure-metadata", "identity"]
    assert any('EXIF Artist is "Ada Lovelace"' in f.message for f in findings)


def test_jpeg_exif_path_in_strings(tmp_path, terms):
    comment = b"exported from C:\\Users\\ada\\photos"
    jpeg = write_jpeg(tmp_path / "photo.jpg", exif_with_artist(b"Anonymous Authors"),
                      b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment)

    findings = check_figure_files([jpeg], terms)

    assert checks_of(findings) == ["absolute-path"]
    assert "C:\\Users\\ada\\photos" in findings[0].message


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("truncated.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"),
        ("bad.jpg", b"\xff\xd8\xff\xe1\x00\xff"),
        ("cut.jpg", b"\xff\xd8\xff"),
        ("notes.svg", b"<svg/>"),
    ],
)
def test_unreadable_figure_raises(tmp_path, terms, name, data):
    path = tmp_path / name
    path.write_bytes(data)

    with pytest.raises(AnonymityCheckError):
        check_figure_files([path], terms)


def test_missing_figure_raises(tmp_path, terms):
    with pytest.raises(AnonymityCheckError):
        check_figure_files([tmp_path / "missing.png"], terms)


def test_paper_figures_clean(terms, default_paper):
    figures = sorted((default_paper / "figures").glob("*.pdf"))
    assert figures
    assert check_figure_files(figures, terms) == []
