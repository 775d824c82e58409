"""The ``float-page`` rule: every float is first referred to on or before the page it is printed on.

The float's page comes from the ``\\newlabel`` lines of ``main.aux``. The
page of the reference comes from ``main.synctex.gz``, which maps each line
of ``main.tex`` to the pages that typeset it (the build runs latexmk with
``-synctex=1``). Both are trusted only when ``main.tex.sha256``, written by
the build, matches the current ``main.tex``.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path


class StaleBuild(ValueError):
    """The build files are missing or older than the LaTeX they should describe."""


@dataclass(frozen=True)
class FloatPageFinding:
    line: int
    message: str


def label_pages(aux: Path) -> dict[str, int]:
    """Return the page of every label in ``aux`` (hyperref's five-field \\newlabel)."""
    pages = {}
    for match in re.finditer(r"\\newlabel\{([^}@]*)\}\{\{[^{}]*\}\{(\d+)\}", aux.read_text(encoding="utf-8",
                                                                                  errors="replace")):
        pages[match.group(1)] = int(match.group(2))
    return pages


def line_pages(synctex: Path, tex_name: str) -> dict[int, int]:
    """Return the first page on which each line of the input ``tex_name`` is typeset."""
    tags: set[str] = set()
    pages: dict[int, int] = {}
    page = 0
    with gzip.open(synctex, "rt", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("Input:"):
                _, tag, path = line.rstrip("\n").split(":", 2)
                if Path(path).name == tex_name:
                    tags.add(tag)
            elif line.startswith("{"):
                page = int(line[1:])
            elif line[:1] in "[(vhxkg$" and page:
                record = re.match(r"[\[(vhxkg$](\d+),(\d+)", line)
                if record and record.group(1) in tags:
                    number = int(record.group(2))
                    pages[number] = min(pages.get(number, page), page)
    return pages


def _page_of_line(pages: dict[int, int], line: int) -> int | None:
    """Return the page of ``line``, or of the nearest earlier line that was typeset."""
    earlier = [number for number in pages if number <= line]
    return pages[max(earlier)] if earlier else None


def check_float_pages(tex_path: Path, build_dir: Path, floats: dict[str, int],
                      first_reference: dict[str, int]) -> list[FloatPageFinding]:
    """Compare each float's page with the page of its first reference; raise StaleBuild without a current build.

    ``floats`` maps each float's label to the line of its ``\\begin``, and ``first_reference`` each label to
    the line of its first reference.
    """
    aux = build_dir / f"{tex_path.stem}.aux"
    synctex = build_dir / f"{tex_path.stem}.synctex.gz"
    digest = build_dir / f"{tex_path.name}.sha256"
    for path in (aux, synctex, digest):
        if not path.is_file():
            raise StaleBuild(f"{path} not found; run `make paper` to build the paper before the writing check.")
    if digest.read_text(encoding="utf-8").strip() != hashlib.sha256(tex_path.read_bytes()).hexdigest():
        raise StaleBuild(f"{build_dir} was built from another version of {tex_path}; run `make paper` to rebuild it.")

    label_page = label_pages(aux)
    lines = line_pages(synctex, tex_path.name)
    findings = []
    for label, float_line in floats.items():
        if label not in first_reference or label not in label_page:
            continue  # the float-reference rule reports a float that is never referred to
        reference_line = first_reference[label]
        reference_page = _page_of_line(lines, reference_line)
        if reference_page is not None and reference_page > label_page[label]:
            findings.append(FloatPageFinding(
                float_line,
                f"{label} is printed on page {label_page[label]}, but the text first refers to it on page "
                f"{reference_page} (line {reference_line}); refer to it earlier or place it later",
            ))
    return findings
