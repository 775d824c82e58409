"""Notation rules of the writing check, on the pylatexenc tree of the rendered paper.

- ``notation-symbol``: in math, a bare symbol that a notation macro stands
  for (``T`` for ``\\temp``, ``\\mathbf{q}`` for ``\\query``).
- ``notation-meaning``: a notation macro defined twice, or two macros that
  print the same symbol.
- ``definition-before-use``: the first use of a notation macro sits in a
  sentence that does not name its meaning ("with temperature $\\temp$").
- ``forward-reference``: a reference to an equation before the equation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.checks.latex_nodes import (
    MATH_ENVIRONMENTS,
    OPAQUE_MACROS,
    LatexCharsNode,
    LatexEnvironmentNode,
    LatexMacroNode,
    LatexMathNode,
    arguments,
    labels,
    line_of,
    references,
    text_of,
    walk,
)

# Each notation macro of templates/main.tex.j2 and the words that introduce it; lint.yaml may add more.
NOTATION = {
    "attn": ("attention",),
    "query": ("query", "queries"),
    "key": ("key",),
    "val": ("value",),
    "score": ("score",),
    "visit": ("visit",),
    "temp": ("temperature",),
    "nwalkers": ("walker",),
    "nsteps": ("step", "move"),
    "nsinks": ("sink",),
    "budget": ("budget",),
    "window": ("window",),
}
# A styled letter is one symbol: \mathbf{q} is the query, not the letter q.
STYLED = frozenset({"mathbf", "boldsymbol", "bm", "mathcal", "mathbb", "mathsf"})


@dataclass(frozen=True)
class NotationFinding:
    offset: int
    rule: str
    message: str


def _definitions(nodes: list) -> list[tuple[int, str, str]]:
    """Return (offset, macro name, expansion) for every \\newcommand and \\renewcommand."""
    found = []
    for visit in walk(nodes):
        node = visit.node
        if isinstance(node, LatexMacroNode) and node.macroname in ("newcommand", "renewcommand"):
            parsed = arguments(node)
            if len(parsed) >= 5 and parsed[1] is not None and parsed[4] is not None:
                name = text_of(parsed[1]).strip().lstrip("\\")
                found.append((node.pos, name, re.sub(r"\s+", "", text_of(parsed[4]))))
    return found


def _math_symbols(nodes: list) -> list[tuple[int, str]]:
    """Return (offset, symbol) for each symbol typed in math: letters, styled letters and symbol commands."""
    symbols = []
    for visit in walk(nodes, opaque=OPAQUE_MACROS | STYLED):
        node = visit.node
        if not visit.math:
            continue
        if isinstance(node, LatexCharsNode):
            symbols += [(node.pos + match.start(), match.group()) for match in re.finditer(r"[A-Za-z]", node.chars)]
        elif isinstance(node, LatexMacroNode) and node.macroname in STYLED:
            symbols.append((node.pos, re.sub(r"\s+", "", node.latex_verbatim())))
        elif isinstance(node, LatexMacroNode) and not arguments(node):
            symbols.append((node.pos, "\\" + node.macroname))
    return symbols


def _math_spans(nodes: list) -> list[tuple[int, int]]:
    spans = []
    for visit in walk(nodes):
        node = visit.node
        if visit.math:
            continue
        if isinstance(node, LatexMathNode) or (
            isinstance(node, LatexEnvironmentNode) and node.environmentname in MATH_ENVIRONMENTS
        ):
            spans.append((node.pos, node.pos + node.len))
    return spans


def _sentence(tex: str, offset: int, spans: list[tuple[int, int]]) -> str:
    """Return the sentence around ``offset``: from the last full stop outside math to the next, in one paragraph."""
    start = max(tex.rfind("\n\n", 0, offset), 0)
    end = tex.find("\n\n", offset)
    end = len(tex) if end < 0 else end

    def in_math(position: int) -> bool:
        return any(low <= position < high for low, high in spans)

    stops = [match.start() for match in re.finditer(r"[.!?](?=\s)", tex[start:end])
             if not in_math(start + match.start())]
    before = [start + stop + 1 for stop in stops if start + stop < offset]
    after = [start + stop + 1 for stop in stops if start + stop >= offset]
    if before:
        start = before[-1]
    if after:
        end = after[0]
    return tex[start:end]


def check_notation(tex: str, nodes: list, notation: dict[str, tuple[str, ...]] | None = None) -> list[NotationFinding]:
    """Run the notation rules on the rendered paper ``tex``, parsed into ``nodes`` (``latex_nodes.parse``)."""
    notation = notation or NOTATION
    findings = []

    definitions = _definitions(nodes)
    by_name: dict[str, list[tuple[int, str]]] = {}
    for offset, name, expansion in definitions:
        by_name.setdefault(name, []).append((offset, expansion))
    symbols = {}
    for name, entries in by_name.items():
        if name in notation and len(entries) > 1:
            findings.append(NotationFinding(entries[1][0], "notation-meaning",
                                            f"\\{name} is defined {len(entries)} times; give it one definition"))
        if name not in notation:
            continue
        expansion = entries[0][1]
        if expansion in symbols:
            findings.append(NotationFinding(entries[0][0], "notation-meaning",
                                            f"\\{name} and \\{symbols[expansion]} both print {expansion}; "
                                            "give each meaning its own symbol"))
        symbols.setdefault(expansion, name)

    body_start = tex.find("\\begin{document}")
    for offset, symbol in _math_symbols(nodes):
        if offset > body_start >= 0 and symbol in symbols:
            name = symbols[symbol]
            findings.append(NotationFinding(offset, "notation-symbol",
                                            f"write \\{name} ({notation[name][0]}), not the bare symbol {symbol}"))

    spans = _math_spans(nodes)
    seen: set[str] = set()
    for visit in walk(nodes):
        node = visit.node
        if not isinstance(node, LatexMacroNode) or node.pos < body_start:
            continue
        if node.macroname in notation and node.macroname in by_name and node.macroname not in seen:
            seen.add(node.macroname)
            # The macros themselves are dropped, so that \key does not count as the word "key".
            sentence = re.sub(r"\\[A-Za-z]+", " ", _sentence(tex, node.pos, spans))
            words = notation[node.macroname]
            if not any(re.search(rf"\b{re.escape(word)}", sentence, re.IGNORECASE) for word in words):
                macro = "\\" + node.macroname
                findings.append(NotationFinding(node.pos, "definition-before-use",
                                                f"the first use of {macro} does not introduce it; name it in that "
                                                f"sentence (\"the {words[0]} ${macro}$\")"))

    defined = labels(nodes)
    for reference in references(nodes):
        key = reference.key
        if key.startswith("eq:") and key in defined and reference.offset < defined[key]:
            findings.append(NotationFinding(reference.offset, "forward-reference",
                                            f"{key} is referred to before it is defined (line "
                                            f"{line_of(tex, defined[key])}); define the term first"))
    return findings
