"""Build ``paper/build/main.pdf`` with latexmk, report the first LaTeX error, and gate the result.

    python -m pipeline.render.build [--paper paper]

The build runs pdflatex without shell escape, with file access limited to the
paper folder (``openin_any=p``, ``openout_any=p``), and with
``SOURCE_DATE_EPOCH`` set from the last commit so that two builds give the
same bytes. When it fails, the report shows the first error with its file
and line, the template line that wrote it (``main.sourcemap.json``), and the
lines around both. A build that succeeds is then checked by
``pipeline.render.gates``: the log, the page limit and the order of the parts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pipeline.render import gates

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parents[2]
SOURCE_MAP = "main.sourcemap.json"
FALLBACK_EPOCH = "1767225600"  # 2026-01-01, for a build outside a git checkout
BUILD_DIR = "build"
CONTEXT_LINES = 3

# With -file-line-error, errors read "./main.tex:42: Undefined control sequence."
_FILE_LINE_ERROR = re.compile(r"^(?P<file>[^\s:][^:]*\.(?:tex|sty|cls|bbl)):(?P<line>\d+): (?P<message>.*)$")
_PLAIN_ERROR = re.compile(r"^! (?P<message>.*)$")
_LINE_MARK = re.compile(r"^l\.(?P<line>\d+)")


@dataclass(frozen=True)
class LatexError:
    file: str
    line: int | None
    message: str


class BuildError(RuntimeError):
    """The PDF could not be built, or it failed a check."""


class PageLimitError(BuildError):
    """The PDF built and passed every check but the page limit."""


def first_error(log_text: str) -> LatexError | None:
    """Find the first error in a pdflatex log."""
    lines = log_text.splitlines()
    for index, text in enumerate(lines):
        match = _FILE_LINE_ERROR.match(text)
        if match:
            return LatexError(match["file"], int(match["line"]), match["message"])
        match = _PLAIN_ERROR.match(text)
        if match:
            for follow in lines[index + 1 : index + 30]:
                mark = _LINE_MARK.match(follow)
                if mark:
                    return LatexError("main.tex", int(mark["line"]), match["message"])
            return LatexError("main.tex", None, match["message"])
    return None


def _excerpt(path: Path, line: int) -> list[str]:
    source = path.read_text(encoding="utf-8", errors="replace").splitlines()
    start = max(line - 1 - CONTEXT_LINES, 0)
    excerpt = []
    for number in range(start, min(line + CONTEXT_LINES, len(source))):
        marker = ">" if number + 1 == line else " "
        excerpt.append(f"{marker} {number + 1:5d} | {source[number]}")
    return excerpt


def template_origin(paper_dir: Path, line: int) -> tuple[Path, int] | None:
    """Return the template file and line that wrote ``main.tex`` line ``line``, from the render's source map."""
    map_path = paper_dir / SOURCE_MAP
    if not map_path.is_file():
        return None
    try:
        data = json.loads(map_path.read_text(encoding="utf-8"))
        origin = data["lines"][line - 1]
        templates = REPOSITORY / data["templates"]  # relative to the repository, or absolute
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not origin:
        return None
    name, _, number = origin.rpartition(":")
    return templates / name, int(number)


def format_error(error: LatexError, paper_dir: Path) -> str:
    """Describe ``error`` with the source lines around it and the template line that produced it."""
    path = (paper_dir / error.file).resolve()
    location = f"{paper_dir / error.file}" + (f":{error.line}" if error.line else "")
    report = [f"LaTeX error at {location}: {error.message}"]
    if error.line and path.is_file():
        report += _excerpt(path, error.line)
        origin = template_origin(paper_dir, error.line) if error.file.endswith("main.tex") else None
        if origin and origin[0].is_file():
            shown = origin[0].relative_to(REPOSITORY) if origin[0].is_relative_to(REPOSITORY) else origin[0]
            report.append(f"written by the template {shown}:{origin[1]}:")
            report += _excerpt(origin[0], origin[1])
    return "\n".join(report)


def source_date_epoch() -> str:
    """Return the time of the last commit, so that the PDF's dates do not change between builds of one commit."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    try:
        result = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=REPOSITORY, capture_output=True,
                                text=True, check=True)
        return result.stdout.strip() or FALLBACK_EPOCH
    except (OSError, subprocess.CalledProcessError):
        return FALLBACK_EPOCH


SOURCE_DIGEST = "main.tex.sha256"  # in the build folder: SHA-256 of the main.tex that latexmk last built


def build(paper_dir: Path) -> Path:
    """Run latexmk on ``paper_dir/main.tex`` and return the PDF path; raise BuildError on failure."""
    if shutil.which("latexmk") is None:
        raise BuildError("latexmk not found; run `make tex` (installs TeX Live from Debian packages).")
    if not (paper_dir / "main.tex").is_file():
        raise BuildError(f"{paper_dir / 'main.tex'} not found; run `make paper` to render it first.")

    command = [
        "latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
        "-no-shell-escape", "-synctex=1", f"-outdir={BUILD_DIR}", "main.tex",
    ]  # synctex maps lines to pages for the writing check's float-page rule
    environment = dict(os.environ, openout_any="p", openin_any="p", SOURCE_DATE_EPOCH=source_date_epoch(),
                       FORCE_SOURCE_DATE="1")
    source_digest = hashlib.sha256((paper_dir / "main.tex").read_bytes()).hexdigest()
    result = subprocess.run(command, cwd=paper_dir, capture_output=True, text=True, env=environment)
    log = paper_dir / BUILD_DIR / "main.log"
    log_text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    if result.returncode != 0:
        error = first_error(log_text)
        if error is None:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise BuildError(f"latexmk failed (exit {result.returncode}) without a LaTeX error in {log}:\n{tail}")
        raise BuildError(format_error(error, paper_dir))

    # The build files describe this text: the writing check compares the digest before it trusts their pages.
    write_text_atomically(paper_dir / BUILD_DIR / SOURCE_DIGEST, source_digest + "\n")
    main_lines = (paper_dir / "main.tex").read_text(encoding="utf-8").splitlines()
    appendix_line = next((n for n, line in enumerate(main_lines, 1) if line.strip() == r"\appendix"), None)
    findings, warnings = gates.log_findings(log_text, appendix_line)
    aux = paper_dir / BUILD_DIR / "main.aux"
    try:
        report = gates.page_report(aux.read_text(encoding="utf-8", errors="replace"), gates.PAGE_LIMIT)
    except (OSError, ValueError) as error:
        raise BuildError(f"{aux}: {error}") from None
    findings += gates.page_findings(report, gates.PAGE_LIMIT)
    if warnings:
        logger.info("Warnings that do not fail the build: %s",
                    ", ".join(f"{count} {kind}" for kind, count in sorted(warnings.items())))
    logger.info("Main text ends on page %d of %d allowed", report.main_end, gates.PAGE_LIMIT)
    if findings:
        listed = "\n".join(f"  {paper_dir}/{finding}" for finding in findings)
        message = f"the build succeeded but {len(findings)} check(s) failed:\n{listed}"
        if any(finding.message.startswith(gates.OVER_LIMIT) for finding in findings):
            floats = gates.main_text_floats("\n".join(main_lines))
            message += "\n  floats in the main text, two-column ones first: " + ", ".join(floats)
        if all(finding.message.startswith(gates.OVER_LIMIT) for finding in findings):
            raise PageLimitError(message)
        raise BuildError(message)
    return paper_dir / BUILD_DIR / "main.pdf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.render.build", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", type=Path, default=REPOSITORY / "paper", help="directory holding main.tex")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        pdf = build(args.paper)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Built {pdf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
