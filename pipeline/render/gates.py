"""Checks on a built paper: the LaTeX log, the page limit, and the PDF format.

- Log: undefined references and citations, multiply defined labels, missing
  files, and overfull boxes wider than 1 pt in the main text fail; other
  warnings are counted in a summary.
- Pages: ICML 2026 allows 8 pages of main text. The labels ``page:main-end``,
  ``page:impact``, ``page:references`` and ``page:appendix`` in the ``.aux``
  give the page where each part starts or ends, and ``\\mainendposition``
  where on its page the main text ends, so a main text over the limit is
  reported in lines.
- Format: ``pdffonts`` must list no Type 3 font and no font that is not
  embedded, in the paper and in every figure; the paper is US letter and
  smaller than 10 MB.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PAGE_LIMIT = 8
OVERFULL_LIMIT_PT = 1.0
MAX_PDF_BYTES = 10 * 2**20
OVER_LIMIT = "the main text ends on page"
LETTER_PT = (612, 792)
TEXT_TOP_SP = 72 * 65536 * (11 - 1)  # the text block's top, 1 in below the top of an 11 in page, in sp from the bottom


@dataclass(frozen=True)
class Finding:
    """One failed check: where (file and line or page) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# The log wraps lines at 79 characters, so the input line may follow a line break.
_UNDEFINED = re.compile(
    r"(?:LaTeX|Package natbib) Warning: (Reference|Citation) `([^']+)' on page (\d+) undefined on input\s+line\s+(\d+)"
)
_MULTIPLY = re.compile(r"LaTeX Warning: Label `([^']+)' multiply defined")
_MISSING_FILE = re.compile(r"(?:LaTeX Warning: File|! LaTeX Error: File) `([^']+)' not found")
_OVERFULL = re.compile(r"Overfull \\hbox \(([\d.]+)pt too wide\) (?:in paragraph|detected) at lines? (\d+)")
_WARNING = re.compile(r"^(?:LaTeX|Package \w+|Class \w+) Warning|^Underfull", re.MULTILINE)


def log_findings(log_text: str, main_text_lines: int | None = None) -> tuple[list[Finding], dict[str, int]]:
    """Return the failing findings of a final pdflatex log and a count of the other warnings by kind.

    ``main_text_lines`` is the line of ``main.tex`` where the appendix starts;
    overfull boxes after it are counted, not failed.
    """
    findings = []
    for kind, key, page, line in _UNDEFINED.findall(log_text):
        findings.append(Finding(f"main.tex:{line}", f"{kind.lower()} '{key}' is undefined (page {page})"))
    for label in dict.fromkeys(_MULTIPLY.findall(log_text)):
        findings.append(Finding("main.tex", f"label '{label}' is defined more than once"))
    for name in dict.fromkeys(_MISSING_FILE.findall(log_text)):
        findings.append(Finding("main.tex", f"file '{name}' not found"))
    overfull_later = 0
    for width, line in _OVERFULL.findall(log_text):
        if float(width) <= OVERFULL_LIMIT_PT:
            continue
        if main_text_lines is not None and int(line) >= main_text_lines:
            overfull_later += 1
            continue
        findings.append(Finding(f"main.tex:{line}", f"overfull box, {width} pt too wide"))

    counts: dict[str, int] = {}
    for match in _WARNING.finditer(log_text):
        line = log_text[match.start() : log_text.find("\n", match.start())]
        if "undefined" in line or "multiply defined" in line:  # failing findings, listed above
            continue
        kind = "Underfull box" if line.startswith("Underfull") else match.group().removesuffix(" Warning")
        counts[kind] = counts.get(kind, 0) + 1
    if overfull_later:
        counts["Overfull box in the appendix"] = overfull_later
    return findings, counts


def _label_pages(aux_text: str) -> dict[str, int]:
    pages = {}
    for key, page in re.findall(r"\\newlabel\{(page:[\w-]+)\}\{\{[^{}]*\}\{(\d+)\}", aux_text):
        pages[key] = int(page)
    return pages


@dataclass(frozen=True)
class PageReport:
    """Pages of the paper's parts: the main text's end, and the start of the Impact Statement, references and appendix."""

    main_end: int
    impact: int | None
    references: int | None
    appendix: int | None
    lines_over: int  # lines past the limit, 0 when the main text fits


def page_report(aux_text: str, limit: int = PAGE_LIMIT) -> PageReport:
    """Read the part labels of a final ``.aux``; raise ValueError when the main text's end label is missing."""
    pages = _label_pages(aux_text)
    if "page:main-end" not in pages:
        raise ValueError("the .aux has no label page:main-end; the template must place it after the conclusion.")
    main_end = pages["page:main-end"]
    lines_over = 0
    if main_end > limit:
        position = re.search(r"\\mainendposition\{(\d+)\}\{([\d.]+)pt\}", aux_text)
        per_page = 0
        line_height = 1.0
        if position:
            line_height = float(position.group(2)) * 65536
            per_page = round((TEXT_TOP_SP - 72 * 65536) / line_height)  # a 9 in text block
            used = max(TEXT_TOP_SP - int(position.group(1)), 0)
            lines_over = (main_end - limit - 1) * per_page * 2 + max(round(used / line_height), 1)
        else:
            lines_over = (main_end - limit) * 2 * 60
    return PageReport(main_end, pages.get("page:impact"), pages.get("page:references"), pages.get("page:appendix"),
                      lines_over)


def page_findings(report: PageReport, limit: int = PAGE_LIMIT) -> list[Finding]:
    """The page limit and the order of the parts: main text, Impact Statement, references, appendix."""
    findings = []
    if report.main_end > limit:
        findings.append(Finding(
            f"page {report.main_end}",
            f"{OVER_LIMIT} {report.main_end}, over the {limit}-page limit by about "
            f"{report.lines_over} lines of one column; shorten it (captions, Related Work, the ablation) "
            "or move material to the appendix",
        ))
    if report.impact is not None and report.references is not None and report.impact > report.references:
        findings.append(Finding(f"page {report.impact}", "the Impact Statement must come before the references"))
    if report.impact is not None and report.impact < report.main_end:
        findings.append(Finding(f"page {report.impact}", "the Impact Statement must follow the conclusion"))
    if report.appendix is not None and report.references is not None and report.appendix < report.references:
        findings.append(Finding(f"page {report.appendix}", "only the appendix may follow the references"))
    return findings


_FLOAT = re.compile(r"\\begin\{(figure\*?|table\*?|algorithm)\}.*?\\end\{\1\}", re.DOTALL)


def main_text_floats(tex: str) -> list[str]:
    """The floats of the main text as ``label (kind)``, two-column floats first: the first candidates to shrink."""
    end = tex.find("\\appendix")
    floats = []
    for match in _FLOAT.finditer(tex[: end if end >= 0 else len(tex)]):
        label = re.search(r"\\label\{([^}]*)\}", match.group())
        floats.append((not match.group(1).endswith("*"), f"{label.group(1) if label else 'unlabelled'} "
                                                          f"({match.group(1)})"))
    return [name for _, name in sorted(floats, key=lambda item: item[0])]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found; install poppler-utils (`make tex` installs it).")
    return path


def font_findings(pdf: Path) -> list[Finding]:
    """Type 3 and non-embedded fonts in ``pdf``, from ``pdffonts``."""
    output = subprocess.run([_tool("pdffonts"), str(pdf)], capture_output=True, text=True, check=True).stdout
    findings = []
    for line in output.splitlines()[2:]:
        columns = line.split()
        if len(columns) < 5:
            continue
        name = columns[0]
        if "Type 3" in line:
            findings.append(Finding(pdf.name, f"font {name} is Type 3; save figures with TrueType or Type 1 fonts "
                                              "(matplotlib: pdf.fonttype 42)"))
        # The columns after the encoding are emb, sub, uni and the object id.
        embedded = columns[-5]
        if embedded != "yes":
            findings.append(Finding(pdf.name, f"font {name} is not embedded"))
    return findings


def format_findings(pdf: Path, figures: list[Path]) -> list[Finding]:
    """Fonts of the paper and its figures, the page size, and the file size."""
    findings = font_findings(pdf)
    for figure in figures:
        findings += font_findings(figure)
    info = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout
    size = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    if size is None or (round(float(size.group(1))), round(float(size.group(2)))) != LETTER_PT:
        found = f"{size.group(1)} x {size.group(2)} pt" if size else "unknown"
        findings.append(Finding(pdf.name, f"page size is {found}, not US letter (612 x 792 pt)"))
    if pdf.stat().st_size > MAX_PDF_BYTES:
        findings.append(Finding(pdf.name, f"the PDF has {pdf.stat().st_size / 2**20:.1f} MB, over the 10 MB limit"))
    return findings


def main(argv: list[str] | None = None) -> int:
    """``make check-format``: the format gates on the built paper and its figures."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m pipeline.render.gates", description=main.__doc__)
    parser.add_argument("--paper", type=Path, default=Path(__file__).resolve().parents[2] / "paper",
                        help="directory holding build/main.pdf and figures/")
    args = parser.parse_args(argv)
    pdf = args.paper / "build" / "main.pdf"
    if not pdf.is_file():
        print(f"error: {pdf} not found; run `make paper` first.", file=sys.stderr)
        return 2
    figures = sorted((args.paper / "figures").glob("*.pdf"))
    try:
        findings = format_findings(pdf, figures)
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for finding in findings:
        print(f"{finding}")
    if findings:
        print(f"check-format: {len(findings)} finding(s)", file=sys.stderr)
        return 1
    print(f"check-format: clean ({pdf.name} and {len(figures)} figure(s): fonts embedded, no Type 3, US letter, "
          f"{pdf.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
