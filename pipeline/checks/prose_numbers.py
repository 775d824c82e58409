"""Find digits typed into the paper's prose instead of coming from a result macro.

Every number in the text must come from ``\\result{KEY}``, generated from the
results JSON. What is left after removing the following is prose, and a digit
in it is a finding:

- the preamble, and comments;
- math (``$...$``, ``\\(...\\)``, ``\\[...\\]`` and display environments), where
  digits are notation constants such as the 1 in 1/T;
- the arguments of ``\\result``, ``\\label``, references and citations
  (keys, not numbers), of graphics and length commands, and of environment
  options such as ``\\begin{tabular}{lrr}``, and the lengths of ``\\vskip``;
- tables (``tabular``) and drawings (``tikzpicture``): their cells are
  generated from the results, row by row, and a drawing's coordinates are
  not prose;
- names that contain digits: method, model and task names such as H2O or
  MK-NIAH-1, passed in by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SKIPPED_ENVIRONMENTS = ("tabular", "tikzpicture", "equation", "equation*", "align", "align*")
KEY_COMMANDS = (
    "result", "label", "ref", "cref", "Cref", "eqref", "autoref", "pageref", "cite", "citep", "citet", "citealp",
    "citeauthor", "citeyear", "includegraphics", "vspace", "hspace", "setlength", "bibliography",
    "bibliographystyle", "begin", "end", "texttt", "url", "href", "usetikzlibrary", "icmlauthor",
    "icmlaffiliation", "icmlcorrespondingauthor",
)
_ARGUMENTS = r"(?:\[[^\]]*\])*(?:\{[^{}]*\})*"


@dataclass(frozen=True)
class TypedNumber:
    """A digit in prose: the line number in the rendered file, and the line's remaining text."""

    line: int
    text: str


def _blank(match: re.Match) -> str:
    """Replace a match by spaces, keeping its line breaks so that line numbers stay right."""
    return re.sub(r"[^\n]", " ", match.group())


def prose_text(tex: str, names: list[str]) -> str:
    """Return the body of ``tex`` with everything but prose blanked out, line for line."""
    begin = tex.find(r"\begin{document}")
    body = re.sub(r"[^\n]", " ", tex[:begin]) + tex[begin:] if begin >= 0 else tex
    body = re.sub(r"(?<!\\)%[^\n]*", _blank, body)
    for environment in SKIPPED_ENVIRONMENTS:
        name = re.escape(environment)
        body = re.sub(rf"\\begin\{{{name}\}}.*?\\end\{{{name}\}}", _blank, body, flags=re.DOTALL)
    body = re.sub(r"\\\[.*?\\\]|\\\(.*?\\\)", _blank, body, flags=re.DOTALL)
    body = re.sub(r"(?<!\\)\$[^$]*(?<!\\)\$", _blank, body, flags=re.DOTALL)
    commands = "|".join(sorted(KEY_COMMANDS, key=len, reverse=True))
    body = re.sub(rf"\\(?:{commands})\*?{_ARGUMENTS}", _blank, body)
    body = re.sub(r"\\[vh]skip\s*-?[\d.]+\s*[a-z]{2}", _blank, body)
    for name in sorted(set(names), key=len, reverse=True):
        if any(character.isdigit() for character in name):
            body = body.replace(name, " " * len(name))
    return body


def typed_numbers(tex: str, names: list[str]) -> list[TypedNumber]:
    """Return each line of prose that still contains a digit."""
    findings = []
    for number, line in enumerate(prose_text(tex, names).splitlines(), start=1):
        if re.search(r"\d", line):
            findings.append(TypedNumber(number, line.strip()))
    return findings
