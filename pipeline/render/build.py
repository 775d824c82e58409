"""Build ``paper/build/main.pdf`` with latexmk and report the first LaTeX error.

    python -m pipeline.render.build [--paper paper]

The build runs pdflatex without shell escape. When it fails, the report shows
the first error with its file and line and the source lines around it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
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
    """The PDF could not be built."""


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


def format_error(error: LatexError, paper_dir: Path) -> str:
    """Describe ``error`` with the source lines around it."""
    path = (paper_dir / error.file).resolve()
    location = f"{paper_dir / error.file}" + (f":{error.line}" if error.line else "")
    report = [f"LaTeX error at {location}: {error.message}"]
    if error.line and path.is_file():
        source = path.read_text(encoding="utf-8", errors="replace").splitlines()
        start = max(error.line - 1 - CONTEXT_LINES, 0)
        for number in range(start, min(error.line + CONTEXT_LINES, len(source))):
            marker = ">" if number + 1 == error.line else " "
            report.append(f"{marker} {number + 1:5d} | {source[number]}")
    return "\n".join(report)


def build(paper_dir: Path) -> Path:
    """Run latexmk on ``paper_dir/main.tex`` and return the PDF path; raise BuildError on failure."""
    if shutil.which("latexmk") is None:
        raise BuildError("latexmk not found; run `make tex` (installs TeX Live from Debian packages).")
    if not (paper_dir / "main.tex").is_file():
        raise BuildError(f"{paper_dir / 'main.tex'} not found; run `make paper` to render it first.")

    command = [
        "latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
        "-no-shell-escape", f"-outdir={BUILD_DIR}", "main.tex",
    ]
    environment = dict(os.environ, openout_any="p")
    result = subprocess.run(command, cwd=paper_dir, capture_output=True, text=True, env=environment)
    log = paper_dir / BUILD_DIR / "main.log"
    if result.returncode != 0:
        error = first_error(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else None
        if error is None:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise BuildError(f"latexmk failed (exit {result.returncode}) without a LaTeX error in {log}:\n{tail}")
        raise BuildError(format_error(error, paper_dir))
    return paper_dir / BUILD_DIR / "main.pdf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.render.build", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", type=Path, default=REPOSITORY / "paper", help="directory holding main.tex")
    args = parser.parse_args(argv)
    try:
        pdf = build(args.paper)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Built {pdf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
