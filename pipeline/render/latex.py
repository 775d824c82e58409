"""A Jinja2 environment for LaTeX templates that escapes every inserted value.

Delimiters stay clear of LaTeX's braces and percent signs:

    ((( value )))      insert a value, escaped for LaTeX unless it is ``Latex``
    ((* if x *)) ... ((* endif *))    statements
    ((= comment =))    template comments

Undefined variables raise, and a float must be formatted with the ``num``
filter, so no unrounded or missing number reaches the paper.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from pylatexenc.latexencode import UnicodeToLatexEncoder

from pipeline.render.source_map import MarkingLoader

_ENCODER = UnicodeToLatexEncoder(non_ascii_only=False, replacement_latex_protection="braces-after-macro")


class Latex(str):
    """A string that is already LaTeX and is inserted as is."""


# A table entry without a result: "--" in a complete paper, a red mark in a draft (templates/main.tex.j2).
MISSING = Latex(r"\missingvalue")


def escape(text: str) -> Latex:
    """Escape ``text`` for LaTeX, including ``% & $ # _ { } ~ ^ \\`` and non-ASCII characters."""
    return Latex(_ENCODER.unicode_to_latex(text))


def _finalize(value):
    if isinstance(value, Latex):
        return value
    if isinstance(value, bool):
        raise TypeError(f"Refusing to insert the boolean {value!r} into LaTeX; decide the wording in Python.")
    if isinstance(value, float):
        raise TypeError(f"Unformatted float {value!r} in a template; format it with the num filter, e.g. x|num(1).")
    if isinstance(value, int):
        return str(value)
    return escape(str(value))


def format_number(value: float, digits: int = 1) -> Latex:
    """Format a number with ``digits`` decimals as LaTeX text."""
    return Latex(f"{value:.{digits}f}")


def signed_number(value: float, digits: int = 1) -> Latex:
    """Format a number that may be negative, with a math minus and without a negative zero ("-0.00")."""
    text = f"{value:.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return Latex(text.replace("-", "$-$", 1))


def join_words(items) -> str:
    """Join items as prose: "A", "A and B", "A, B and C"."""
    items = [str(item) for item in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def lower_first(text: str) -> str:
    """Lower-case the first letter only, keeping the type, so a sentence's subject can follow other words."""
    changed = text[:1].lower() + text[1:]
    return Latex(changed) if isinstance(text, Latex) else changed


def make_environment(template_dir: Path, source_map: bool = False) -> jinja2.Environment:
    """Build the environment that renders the paper's templates from ``template_dir``.

    With ``source_map``, templates carry line markers that
    ``pipeline.render.source_map.strip_markers`` turns into a map from output
    lines to template lines.
    """
    loader = MarkingLoader(str(template_dir)) if source_map else jinja2.FileSystemLoader(str(template_dir))
    environment = jinja2.Environment(
        loader=loader,
        block_start_string="((*",
        block_end_string="*))",
        variable_start_string="(((",
        variable_end_string=")))",
        comment_start_string="((=",
        comment_end_string="=))",
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["num"] = format_number
    environment.filters["latex"] = Latex
    environment.filters["join_words"] = join_words
    environment.filters["lower_first"] = lower_first
    return environment
