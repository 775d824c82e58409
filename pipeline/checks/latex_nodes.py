"""The rendered paper as a pylatexenc node tree, for the writing rules where structure matters.

pylatexenc's default context knows the standard macros. The project adds
its own (``\\result``, ``\\captiondetail``, cleveref's ``\\cref``) so that their
arguments are parsed as arguments, not as the text that follows them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pylatexenc.latexwalker import (
    LatexCharsNode,
    LatexEnvironmentNode,
    LatexGroupNode,
    LatexMacroNode,
    LatexMathNode,
    LatexWalker,
    get_default_latex_context_db,
)
from pylatexenc.macrospec import MacroSpec

MATH_ENVIRONMENTS = frozenset(
    {"equation", "equation*", "align", "align*", "gather", "gather*", "multline", "multline*", "displaymath", "math"}
)
# Commands whose arguments hold keys or upright text, never notation.
OPAQUE_MACROS = frozenset(
    {"result", "resultdef", "label", "ref", "cref", "Cref", "eqref", "pageref", "cite", "citep", "citet", "citealp",
     "text", "textrm", "textit", "textbf", "texttt", "mathrm", "operatorname", "mbox", "includegraphics", "url",
     "href", "begin", "end", "hyphenation"}
)
FLOATS = frozenset({"figure", "figure*", "table", "table*", "algorithm"})
REFERENCE_MACROS = frozenset({"ref", "cref", "Cref", "eqref", "autoref"})
PROJECT_MACROS = (
    MacroSpec("result", "{"),
    MacroSpec("resultdef", "{{"),
    MacroSpec("captiondetail", "{"),
    MacroSpec("cref", "*{"),
    MacroSpec("Cref", "*{"),
    MacroSpec("citep", "[[{"),
    MacroSpec("citet", "[[{"),
    MacroSpec("citealp", "[[{"),
    MacroSpec("operatorname", "*{"),
    MacroSpec("mathbf", "{"),
    MacroSpec("caption", "[{"),
    MacroSpec("newcommand", "*{[[{"),
    MacroSpec("renewcommand", "*{[[{"),
)


@dataclass(frozen=True)
class Visit:
    """One node met in document order, and whether it sits in math."""

    node: object
    math: bool


def parse(tex: str) -> tuple[LatexWalker, list]:
    """Parse ``tex`` tolerantly and return the walker and its top-level nodes."""
    context = get_default_latex_context_db()
    context.add_context_category("circuitkv-paper", macros=PROJECT_MACROS, prepend=True)
    walker = LatexWalker(tex, latex_context=context, tolerant_parsing=True)
    nodes, _, _ = walker.get_latex_nodes(pos=0)
    return walker, nodes


def arguments(node: LatexMacroNode) -> list:
    """Return the parsed arguments of a macro; an absent optional argument is None."""
    if node.nodeargd is None or node.nodeargd.argnlist is None:
        return []
    return list(node.nodeargd.argnlist)


def walk(nodes: list | None, math: bool = False, opaque: frozenset[str] = OPAQUE_MACROS) -> Iterator[Visit]:
    """Yield every node under ``nodes`` in document order; the arguments of ``opaque`` macros are not entered."""
    for node in nodes or []:
        if node is None:
            continue
        yield Visit(node, math)
        if isinstance(node, LatexMathNode):
            yield from walk(node.nodelist, True, opaque)
        elif isinstance(node, LatexEnvironmentNode):
            inner = math or node.environmentname in MATH_ENVIRONMENTS
            if node.environmentname not in ("tikzpicture",):
                yield from walk(node.nodelist, inner, opaque)
        elif isinstance(node, LatexGroupNode):
            yield from walk(node.nodelist, math, opaque)
        elif isinstance(node, LatexMacroNode) and node.macroname not in opaque:
            yield from walk(arguments(node), math, opaque)


@dataclass(frozen=True)
class Reference:
    """One key of a reference command: where the command starts, the key, and the command's name."""

    offset: int
    key: str
    macro: str


def references(nodes: list) -> list[Reference]:
    """Return every key of every reference command under ``nodes``, in document order."""
    found = []
    for visit in walk(nodes):
        node = visit.node
        if isinstance(node, LatexMacroNode) and node.macroname in REFERENCE_MACROS and arguments(node):
            found += [Reference(node.pos, key.strip(), node.macroname)
                      for key in text_of(arguments(node)[-1]).split(",")]
    return found


def labels(nodes: list) -> dict[str, int]:
    """Return the offset of the first ``\\label`` of each key under ``nodes``."""
    found: dict[str, int] = {}
    for visit in walk(nodes):
        node = visit.node
        if isinstance(node, LatexMacroNode) and node.macroname == "label" and arguments(node):
            found.setdefault(text_of(arguments(node)[-1]).strip(), node.pos)
    return found


def text_of(node) -> str:
    """Return the LaTeX source of ``node`` (a group without its braces)."""
    if isinstance(node, LatexGroupNode):
        return "".join(child.latex_verbatim() for child in node.nodelist or [] if child is not None)
    return node.latex_verbatim() if node is not None else ""


def document_start(tex: str) -> int:
    """Return the offset just after ``\\begin{document}``, or 0 when the file has none."""
    start = tex.find("\\begin{document}")
    return start + len("\\begin{document}") if start >= 0 else 0


def line_of(tex: str, offset: int) -> int:
    return tex.count("\n", 0, offset) + 1


__all__ = ["FLOATS", "REFERENCE_MACROS", "LatexCharsNode", "LatexEnvironmentNode", "LatexGroupNode", "LatexMacroNode",
           "LatexMathNode", "Reference", "Visit", "arguments", "document_start", "labels", "line_of", "parse",
           "references", "text_of", "walk"]
