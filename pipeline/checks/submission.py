"""Pack the built review paper into a clean, reproducible source archive and check it.

    python -m pipeline.checks.submission [--paper paper] [--output paper/build/submission.tar.gz]

The archive holds only the files that the last build read from the paper
folder, as latexmk's recorder file ``build/main.fls`` lists them (or, without
it, as ``build/main.log`` names them), plus ``build/main.bbl`` stored as
``main.bbl`` so that the archive builds without BibTeX. The ``.bib`` and
``.bst`` files named by ``\\bibliography`` and ``\\bibliographystyle`` are
added when they sit in the paper folder, because BibTeX reads them and pdfTeX
does not record them. Files outside the paper folder (TeX Live's own), hidden
files, ``build/`` apart from the ``.bbl``, the authors file and the source map
are never shipped.

Comments are removed from ``.tex``, ``.sty`` and ``.bbl`` files, and comment
lines outside entries from ``.bib`` files. The archive is written
deterministically and atomically, then extracted to a temporary folder, built
there with latexmk, compared with ``build/main.pdf`` (page count and text) and
passed to the anonymity check.

Exit status: 0 archive written and clean, 1 findings, 2 when a file or tool is missing.
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from pipeline.atomic import write_bytes_atomically
from pipeline.checks.anonymity import (
    AnonymityCheckError,
    AnonymityReport,
    Finding,
    check_anonymity,
    check_pdf_metadata,
    extract_pdf_text,
    load_identity_terms,
)

logger = logging.getLogger(__name__)

DEFAULT_PAPER = Path("paper")
BUILD_FOLDER = "build"
DEFAULT_OUTPUT = DEFAULT_PAPER / BUILD_FOLDER / "submission.tar.gz"
MAIN = "main"
ARCHIVE_FILE_MODE = 0o644
LATEXMK_TIMEOUT_S = 600

# Files in the paper folder that identify the authors or only serve the pipeline.
EXCLUDED_NAMES = frozenset({"authors.yaml", "main.sourcemap.json", ".variant"})
# Files whose comments are removed with TeX's rules.
TEX_COMMENT_SUFFIXES = frozenset({".tex", ".sty", ".bbl"})


class SubmissionError(AnonymityCheckError):
    """The archive could not be written or checked: a missing file or tool."""


# --- Collecting the files the build read ----------------------------------------


def _parse_recorder(fls: Path) -> tuple[Path | None, list[str]]:
    """Return the PWD and the INPUT paths, in order and deduplicated, of a latexmk recorder file."""
    working_directory: Path | None = None
    inputs: dict[str, None] = {}
    for line in fls.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("PWD "):
            working_directory = Path(line[4:].strip())
        elif line.startswith("INPUT "):
            inputs[line[6:].strip()] = None
    return working_directory, list(inputs)


# pdfTeX wraps log lines at this many characters (max_print_line in texmf.cnf).
_LOG_LINE_WIDTH = 79
_LOG_OPENED_FILE = re.compile(r"\((\.?/?[^\s()<>{}]+\.[A-Za-z0-9]+)")
_LOG_GRAPHIC = re.compile(r"<(\.?/?[^\s<>,{}]+\.(?:pdf|png|jpe?g|eps))")


def _parse_log(log: Path) -> list[str]:
    """Return the file names that a pdfTeX log shows as opened: ``(./file.sty`` and ``<figure.pdf>``."""
    physical_lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    logical_lines: list[str] = []
    pending = ""
    for line in physical_lines:
        pending += line
        if len(line) != _LOG_LINE_WIDTH:
            logical_lines.append(pending)
            pending = ""
    logical_lines.append(pending)

    names: dict[str, None] = {}
    for line in logical_lines:
        for pattern in (_LOG_OPENED_FILE, _LOG_GRAPHIC):
            for match in pattern.finditer(line):
                names[match.group(1)] = None
    return list(names)


def _inside(path: Path, folder: Path) -> PurePosixPath | None:
    """Return ``path`` relative to ``folder`` when it lies inside it, else None."""
    try:
        return PurePosixPath(path.resolve().relative_to(folder.resolve()).as_posix())
    except ValueError:
        return None


def _is_shipped(relative: PurePosixPath) -> bool:
    """Tell whether a file the build read belongs in the archive."""
    if any(part.startswith(".") for part in relative.parts):
        return False
    if relative.name in EXCLUDED_NAMES:
        return False
    if relative.parts[0] == BUILD_FOLDER:
        return relative == PurePosixPath(BUILD_FOLDER, f"{MAIN}.bbl")
    return True


def _resolve_recorded(name: str, paper: Path, working_directory: Path | None) -> Path:
    """Map a path from the recorder file to this machine, even when the paper folder has moved."""
    path = Path(name)
    if not path.is_absolute():
        return paper / path
    if working_directory is not None:
        try:
            return paper / path.relative_to(working_directory)
        except ValueError:
            pass
    return path


_BIBLIOGRAPHY = re.compile(r"\\bibliography\s*\{([^}]*)\}")
_BIBLIOGRAPHY_STYLE = re.compile(r"\\bibliographystyle\s*\{([^}]*)\}")


def _bibtex_inputs(paper: Path, tex_files: Sequence[Path]) -> list[Path]:
    """Return the .bib and .bst files in ``paper`` that the TeX files name for BibTeX."""
    found: list[Path] = []
    for tex_file in tex_files:
        text = strip_tex_comments(tex_file.read_text(encoding="utf-8", errors="replace"))
        for pattern, suffix in ((_BIBLIOGRAPHY, ".bib"), (_BIBLIOGRAPHY_STYLE, ".bst")):
            for match in pattern.finditer(text):
                for name in match.group(1).split(","):
                    name = name.strip()
                    if not name:
                        continue
                    candidate = paper / (name if name.endswith(suffix) else name + suffix)
                    if candidate.is_file():
                        found.append(candidate)
    return found


def collect_files(paper: Path) -> dict[str, Path]:
    """Return the files to ship as {archive name: file on disk}, sorted by archive name.

    Reads ``build/main.fls``, or ``build/main.log`` when there is no recorder
    file. Raises SubmissionError when neither exists, when the ``.bbl`` is
    missing, or when ``main.tex`` is not among the files the build read.
    """
    build = paper / BUILD_FOLDER
    fls = build / f"{MAIN}.fls"
    log = build / f"{MAIN}.log"
    if fls.is_file():
        working_directory, names = _parse_recorder(fls)
    elif log.is_file():
        logger.warning("%s not found, so the files are taken from %s, which may miss some", fls, log)
        working_directory, names = None, _parse_log(log)
    else:
        raise SubmissionError(f"neither {fls} nor {log} found. Run `make paper` first")

    bbl = build / f"{MAIN}.bbl"
    if not bbl.is_file():
        raise SubmissionError(f"{bbl} not found, so the archive cannot build without BibTeX. Run `make paper`")

    files: dict[str, Path] = {}
    for name in names:
        path = _resolve_recorded(name, paper, working_directory)
        relative = _inside(path, paper)
        if relative is None or not path.is_file() or not _is_shipped(relative):
            continue
        archive_name = f"{MAIN}.bbl" if relative.parts[0] == BUILD_FOLDER else relative.as_posix()
        files[archive_name] = path

    if f"{MAIN}.tex" not in files:
        raise SubmissionError(
            f"{MAIN}.tex is not among the files that {fls if fls.is_file() else log} lists. Run `make paper`"
        )
    files[f"{MAIN}.bbl"] = bbl

    tex_files = [path for name, path in files.items() if name.endswith(".tex")]
    for path in _bibtex_inputs(paper, tex_files):
        relative = _inside(path, paper)
        if relative is not None and _is_shipped(relative):
            files[relative.as_posix()] = path
    return dict(sorted(files.items()))


# --- Removing comments --------------------------------------------------------------

_VERBATIM_BEGIN = re.compile(r"\\begin\s*\{(verbatim\*?|Verbatim\*?|lstlisting)\}")
_VERB = re.compile(r"\\(?:verb\*?|lstinline)(?![A-Za-z])")
_URL_COMMAND = re.compile(r"\\(?:url|href)(?![A-Za-z])\s*\{")


def _balanced_group_end(text: str, open_brace: int) -> int:
    """Return the index after the brace that closes the group opened at ``open_brace``."""
    depth = 0
    index = open_brace
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return len(text)


def _comment_spans(text: str) -> list[tuple[int, int]]:
    """Return the [start, end) span of each comment: from its unescaped ``%`` to the line end.

    Text inside verbatim, Verbatim and lstlisting environments, inside ``\\verb``
    and ``\\lstinline``, and inside the argument of ``\\url`` and the first
    argument of ``\\href`` is data, so a ``%`` there starts no comment.
    """
    spans: list[tuple[int, int]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            verbatim = _VERBATIM_BEGIN.match(text, index)
            if verbatim:
                end = text.find(f"\\end{{{verbatim.group(1)}}}", verbatim.end())
                index = len(text) if end < 0 else end + len(verbatim.group(1)) + 6
                continue
            inline = _VERB.match(text, index)
            if inline and inline.end() < len(text):
                delimiter = text[inline.end()]
                closing = "}" if delimiter == "{" else delimiter
                # \verb cannot span lines, so an unclosed one protects only the rest of its line.
                line_end = text.find("\n", inline.end())
                line_end = len(text) if line_end < 0 else line_end
                end = text.find(closing, inline.end() + 1, line_end)
                index = line_end if end < 0 else end + 1
                continue
            url = _URL_COMMAND.match(text, index)
            if url:
                index = _balanced_group_end(text, url.end() - 1)
                continue
            index += 2  # an escaped character, such as \% or the second \ of \\
            continue
        if char == "%":
            end = text.find("\n", index)
            end = len(text) if end < 0 else end
            spans.append((index, end))
            index = end
            continue
        index += 1
    return spans


def strip_tex_comments(text: str) -> str:
    """Remove TeX comments from ``text`` and return the result.

    A line that holds only a comment (after optional spaces) is dropped with
    its line break, which TeX treats the same way. A comment after code keeps
    its ``%``, so the line break after it still produces no space, and loses
    only the text after it. ``\\%`` and data in verbatim and URL arguments stay.

    NOTE: catcode changes (such as ``\\catcode`\\%=12``) are not followed.
    """
    pieces: list[str] = []
    position = 0
    for start, end in _comment_spans(text):
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].strip(" \t") == "" and line_start >= position:
            pieces.append(text[position:line_start])
            position = end + 1 if end < len(text) else end  # the line break goes too
        else:
            pieces.append(text[position : start + 1])
            position = end
    pieces.append(text[position:])
    return "".join(pieces)


_BIB_ENTRY_START = re.compile(r"@\s*[A-Za-z]+\s*[{(]")


def strip_bib_comments(text: str) -> str:
    """Drop the lines outside BibTeX entries that start with ``%`` and return the rest.

    A ``%`` inside an entry is data for BibTeX (a URL, an abstract), so it stays.
    """
    kept_lines: list[str] = []
    depth = 0
    for line in text.splitlines(keepends=True):
        if depth == 0 and line.lstrip().startswith("%"):
            continue
        kept_lines.append(line)
        index = 0
        while index < len(line):
            if depth == 0:
                entry = _BIB_ENTRY_START.search(line, index)
                if entry is None:
                    break
                depth = 1
                index = entry.end()
                continue
            if line[index] in "{(":
                depth += 1
            elif line[index] in "})":
                depth -= 1
            index += 1
    return "".join(kept_lines)


def clean_file(name: str, content: bytes) -> bytes:
    """Return the archived bytes of the file ``name``: comments removed where its type allows."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in TEX_COMMENT_SUFFIXES and suffix != ".bib":
        return content
    text = content.decode("utf-8")
    text = strip_bib_comments(text) if suffix == ".bib" else strip_tex_comments(text)
    return text.encode("utf-8")


# --- Writing the archive ----------------------------------------------------------------


def archive_epoch() -> int:
    """Return the timestamp of every archive entry: SOURCE_DATE_EPOCH, or 0 when it is unset."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    try:
        return int(value)
    except ValueError as error:
        raise SubmissionError(f"SOURCE_DATE_EPOCH={value!r} is not an integer number of seconds") from error


def _check_archive_name(name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise SubmissionError(f"{name!r} is not a relative path inside the paper folder")


def archive_bytes(files: dict[str, bytes], epoch: int) -> bytes:
    """Return a gzipped tar of ``files``: sorted names, fixed time, owner 0, mode 0644."""
    raw = io.BytesIO()
    # An empty file name and a fixed mtime keep the gzip header the same between runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=epoch) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as archive:
            for name in sorted(files):
                _check_archive_name(name)
                info = tarfile.TarInfo(name)
                info.size = len(files[name])
                info.mtime = epoch
                info.mode = ARCHIVE_FILE_MODE
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                archive.addfile(info, io.BytesIO(files[name]))
    return raw.getvalue()


def write_archive(paper: Path, output: Path) -> list[str]:
    """Collect, clean and write the archive of ``paper`` to ``output``; return the archived names."""
    files = collect_files(paper)
    contents: dict[str, bytes] = {}
    for name, path in files.items():
        try:
            contents[name] = clean_file(name, path.read_bytes())
        except UnicodeDecodeError as error:
            raise SubmissionError(f"{path} is not valid UTF-8, so its comments cannot be removed: {error}") from error
        except OSError as error:
            raise SubmissionError(f"cannot read {path}: {error}") from error
    write_bytes_atomically(output, archive_bytes(contents, archive_epoch()))
    return sorted(contents)


# --- Checking the archive ---------------------------------------------------------------


@dataclass
class SubmissionReport:
    """The archive written, the files in it, and what the rebuild and anonymity checks found."""

    archive: Path
    members: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    anonymity: AnonymityReport | None = None

    @property
    def clean(self) -> bool:
        return not self.findings and (self.anonymity is None or self.anonymity.clean)

    def format_text(self) -> str:
        lines = [finding.format() for finding in self.findings]
        if self.anonymity is not None:
            lines.append(self.anonymity.format_text())
        state = "clean" if self.clean else "not clean"
        lines.append(f"submission archive: {self.archive} ({len(self.members)} files), {state}")
        return "\n".join(lines)


def extract_archive(archive: Path, destination: Path) -> None:
    """Extract ``archive`` into ``destination``, rejecting members that would land outside it."""
    with tarfile.open(archive, mode="r:gz") as tar:
        tar.extractall(destination, filter="data")


def rebuild(folder: Path) -> Path:
    """Build ``folder/main.tex`` with latexmk and no BibTeX, in place; return the PDF.

    Raises SubmissionError when latexmk is missing, and RebuildFailed, with
    the first LaTeX error, when the build fails or times out.
    """
    if shutil.which("latexmk") is None:
        raise SubmissionError("latexmk not found, so the archive cannot be rebuilt. Run `make tex`")
    command = [
        "latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
        "-no-shell-escape", "-bibtex-", f"{MAIN}.tex",
    ]  # fmt: skip
    environment = dict(os.environ, openout_any="p", openin_any="p", FORCE_SOURCE_DATE="1")
    environment.setdefault("SOURCE_DATE_EPOCH", _build_epoch())
    try:
        result = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, env=environment,
            timeout=LATEXMK_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as error:
        raise RebuildFailed(f"latexmk timed out after {LATEXMK_TIMEOUT_S} s") from error
    pdf = folder / f"{MAIN}.pdf"
    if result.returncode != 0 or not pdf.is_file():
        log = folder / f"{MAIN}.log"
        log_text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        errors = [line for line in log_text.splitlines() if line.startswith("!") or ".tex:" in line]
        detail = errors[0] if errors else "\n".join((result.stdout + result.stderr).splitlines()[-5:])
        raise RebuildFailed(f"latexmk failed (exit {result.returncode}): {detail}")
    return pdf


class RebuildFailed(Exception):
    """The extracted archive did not build."""


def _build_epoch() -> str:
    """Return the SOURCE_DATE_EPOCH that ``make paper`` used, so dates in the text agree."""
    from pipeline.render.build import source_date_epoch

    return source_date_epoch()


def _page_count(pdf: Path) -> int:
    try:
        return len(PdfReader(pdf).pages)
    except (PyPdfError, OSError, ValueError) as error:
        raise SubmissionError(f"cannot read {pdf}: {error}") from error


def compare_pdfs(original: Path, rebuilt: Path, archive: Path) -> list[Finding]:
    """Compare the page counts and the pdftotext text of two PDFs; return a finding per difference."""
    findings: list[Finding] = []
    fix = (
        "a file the build needs is missing from the archive or was changed by comment removal; "
        "build the extracted archive by hand to see which"
    )
    original_pages, rebuilt_pages = _page_count(original), _page_count(rebuilt)
    if original_pages != rebuilt_pages:
        findings.append(
            Finding(
                "submission-rebuild",
                f"{archive}",
                f"the archive builds to {rebuilt_pages} pages, but {original} has {original_pages}",
                fix,
            )
        )

    original_text = extract_pdf_text(original, layout=False).split("\f")
    rebuilt_text = extract_pdf_text(rebuilt, layout=False).split("\f")
    for page, (expected, actual) in enumerate(zip(original_text, rebuilt_text), start=1):
        if expected == actual:
            continue
        expected_lines, actual_lines = expected.splitlines(), actual.splitlines()
        line = next(
            (number for number, pair in enumerate(zip(expected_lines, actual_lines), start=1) if pair[0] != pair[1]),
            min(len(expected_lines), len(actual_lines)) + 1,
        )
        findings.append(
            Finding(
                "submission-rebuild",
                f"{archive} rebuilt page {page} line {line}",
                f"the text differs from {original} page {page}",
                fix,
            )
        )
        break  # later pages usually differ only because this one does
    return findings


def check_submission(
    paper: Path | str = DEFAULT_PAPER,
    output: Path | str = DEFAULT_OUTPUT,
    authors: Path | str | None = None,
) -> SubmissionReport:
    """Write the archive of ``paper`` to ``output``, rebuild it, compare it and check its anonymity.

    ``authors`` defaults to ``paper/authors.yaml``. Raises SubmissionError or
    AnonymityCheckError when a file or tool is missing.
    """
    paper, output = Path(paper), Path(output)
    authors = Path(authors) if authors is not None else paper / "authors.yaml"
    original = paper / BUILD_FOLDER / f"{MAIN}.pdf"
    if not original.is_file():
        raise SubmissionError(f"{original} not found. Run `make paper` first")

    report = SubmissionReport(archive=output)
    report.members = write_archive(paper, output)
    logger.info("wrote %s with %d files", output, len(report.members))

    with tempfile.TemporaryDirectory(prefix="submission-") as temporary:
        extracted = Path(temporary) / "source"
        build_folder = Path(temporary) / "rebuild"
        extract_archive(output, extracted)
        shutil.copytree(extracted, build_folder)

        try:
            rebuilt = rebuild(build_folder)
        except RebuildFailed as error:
            report.findings.append(
                Finding(
                    "submission-rebuild",
                    f"{output}",
                    f"the extracted archive does not build: {error}",
                    "ship the missing file or undo the change that comment removal made",
                )
            )
            return report

        report.findings += compare_pdfs(original, rebuilt, output)
        report.anonymity = check_anonymity(sources=extracted, pdf=rebuilt, authors=authors,
                                           allowlist=paper / "anonymity-allowlist.yaml")
        report.findings += check_figure_metadata(extracted, output, authors)
    return report


def check_figure_metadata(extracted: Path, archive: Path, authors: Path) -> list[Finding]:
    """Check the metadata of every PDF in the extracted archive, located as ``archive:name``.

    The rebuilt PDF does not show it when the paper sets ``\\pdfsuppressptexinfo``,
    but anyone who unpacks the archive can read it.
    """
    terms = load_identity_terms(authors) if authors.is_file() else []
    findings: list[Finding] = []
    for pdf in sorted(extracted.rglob("*.pdf")):
        name = pdf.relative_to(extracted).as_posix()
        try:
            findings += check_pdf_metadata(Path(f"{archive}:{name}"), PdfReader(pdf), terms)
        except (PyPdfError, OSError, ValueError, KeyError) as error:
            raise SubmissionError(f"cannot read the metadata of {name} in {archive}: {error}") from error
    return findings


# --- Command line -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.checks.submission",
        description="Write a clean source archive of the built paper, rebuild it and check it. "
        "Exit status: 0 written and clean, 1 findings, 2 when a file or tool is missing.",
    )
    parser.add_argument(
        "--paper", type=Path, default=DEFAULT_PAPER,
        help=f"paper folder that `make paper` built, with build/main.pdf (default: {DEFAULT_PAPER})",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT,
        help=f"archive to write (default: {DEFAULT_OUTPUT})",
    )  # fmt: skip
    parser.add_argument(
        "--authors", type=Path,
        help="YAML file with the authors' identities for the anonymity check (default: PAPER/authors.yaml)",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Write and check the archive, print the report and return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    try:
        report = check_submission(paper=args.paper, output=args.output, authors=args.authors)
    except (AnonymityCheckError, OSError, tarfile.TarError) as error:
        logger.error("%s", error)
        print("submission check: could not run (see the error above)")
        return 2
    print(report.format_text())
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
