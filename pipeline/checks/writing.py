"""The writing checklist as rules over the rendered LaTeX: ``python -m pipeline.checks.writing``.

Each finding reads ``file:line: rule: message [template:line]``;
``lint.json`` in the build folder contains the same. The rules:

- ``terminology``: "KV-cache" and "key-value cache" (after the first
  definition), and the exact spelling of the project's terms (CircuitKV,
  LongBench, RULER, and those of ``paper/content/lint.yaml``).
- ``filler``: "it is worth noting that", "interestingly", "note that", "it
  should be noted".
- ``vague-claim``: "significantly", "dramatically", "substantially" in a
  sentence with no number, result macro or statistical test.
- ``passive-voice``: a form of "to be" with a past participle (regular, or
  from a list of irregular ones) in the contribution bullets, and "is
  proposed", "are introduced", "is presented" anywhere.
- ``number``: a digit in prose outside result macros (``prose_numbers``).
- ``float-label``, ``float-caption``, ``table-caption-above``: every float
  has a label and a caption of at least two sentences, and a table's caption
  comes before its tabular.
- ``table-caption-bold`` and ``table-caption-metric``: a table's caption says
  what bold means (or that nothing is bold) and what its numbers are.
- ``float-reference``: a float the text never refers to; ``float-page``: a
  float printed on an earlier page than its first reference (``float_pages``).
- ``acronym``: an acronym (LLM, GQA, RoPE, NLL, ...) whose first use is not
  its definition, "long form (ACR)".
- ``definition-before-use``, ``forward-reference``, ``notation-symbol`` and
  ``notation-meaning``: notation macros introduced at their first use,
  equations defined before they are referred to, symbols typed only through
  their macros, and one symbol per meaning (``notation``).
- ``equation-reference``: an equation referred to with ``\\ref`` or
  ``\\eqref`` instead of ``\\Cref``.
- ``negative-vspace``: more negative ``\\vspace`` than the configured limit;
  each one is listed.

Floats, references and notation are read from pylatexenc's node tree
(``latex_nodes``). The sentence rules read the prose that
``prose_numbers.prose_text`` leaves: no preamble, comments, math, tables or
command arguments that hold keys.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from pipeline.atomic import write_text_atomically
from pipeline.checks.float_pages import check_float_pages
from pipeline.checks.latex_nodes import (
    FLOATS,
    LatexEnvironmentNode,
    LatexMacroNode,
    Reference,
    arguments,
    line_of,
    parse,
    references,
    text_of,
    walk,
)
from pipeline.checks.notation import NOTATION, check_notation
from pipeline.checks.prose_numbers import prose_text, typed_numbers
from pipeline.render.results import METHOD_LABELS
from pipeline.render.tasks import TASK_LABELS

REPOSITORY = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPOSITORY / "paper" / "content" / "lint.yaml"
TERMS = ("CircuitKV", "LongBench", "RULER", "KV cache")
FILLER = ("it is worth noting that", "interestingly", "note that", "it should be noted")
INTENSIFIERS = ("significantly", "dramatically", "substantially")
RULES = (
    "terminology", "filler", "vague-claim", "passive-voice", "number", "float-label", "float-caption",
    "table-caption-above", "table-caption-bold", "table-caption-metric", "float-reference", "float-page", "acronym",
    "definition-before-use", "forward-reference", "notation-symbol", "notation-meaning", "equation-reference",
    "negative-vspace",
)
ACRONYMS = ("LLM", "GQA", "RoPE", "NLL", "MHA", "MQA")
EVIDENCE = re.compile(r"\\result\{|\d|interval|bootstrap|p\s*<|confidence", re.IGNORECASE)


@dataclass(frozen=True)
class LintFinding:
    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class LintConfig:
    """Project settings: terms spelled exactly so, acronyms, notation macros and the negative ``\\vspace`` allowed."""

    terms: tuple[str, ...] = TERMS
    max_negative_vspace: int = 2
    acronyms: tuple[str, ...] = ACRONYMS
    notation: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(NOTATION))


def load_lint_config(path: Path = CONFIG_PATH) -> LintConfig:
    """Read ``lint.yaml``; a missing file gives the defaults, and each list or mapping extends them.

    Fields: ``terms`` (words spelled exactly so), ``acronyms`` (defined at
    first use), ``notation`` (macro name to the words that introduce it, e.g.
    ``temp: [temperature]``) and ``max_negative_vspace``.
    """
    if not path.is_file():
        return LintConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: invalid YAML{where} ({getattr(error, 'problem', None) or error}).") from None
    fields = {"terms", "acronyms", "notation", "max_negative_vspace"}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with the fields {', '.join(sorted(fields))}, "
                         f"not a {type(data).__name__}.")
    if set(data) - fields:
        raise ValueError(f"{path}: unknown field {', '.join(sorted(map(str, set(data) - fields)))}; "
                         f"expected only {', '.join(sorted(fields))}.")
    lists = {}
    for key in ("terms", "acronyms"):
        values = data.get(key) or []
        if not isinstance(values, list) or not all(isinstance(value, str) and value for value in values):
            raise ValueError(f"{path}: {key} must be a list of words spelled as the paper must spell them.")
        lists[key] = values
    notation = data.get("notation") or {}
    if not isinstance(notation, dict) or not all(
        isinstance(words, list) and words and all(isinstance(word, str) and word for word in words)
        for words in notation.values()
    ):
        raise ValueError(f"{path}: notation must map a macro name (without backslash) to a list of the words "
                         "that introduce it, e.g. `temp: [temperature]`.")
    limit = data.get("max_negative_vspace", 2)
    if not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{path}: max_negative_vspace must be a whole number, 0 or more.")
    return LintConfig(
        terms=tuple(dict.fromkeys([*TERMS, *lists["terms"]])),
        max_negative_vspace=limit,
        acronyms=tuple(dict.fromkeys([*ACRONYMS, *lists["acronyms"]])),
        notation={**NOTATION, **{str(name).lstrip("\\"): tuple(words) for name, words in notation.items()}},
    )


def _sentences(line: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.!?])\s+", line) if part.strip()]


def _terminology(name: str, lines: list[str], config: LintConfig) -> list[LintFinding]:
    findings = []
    defined = False
    for number, line in enumerate(lines, start=1):
        for match in re.finditer(r"\bKV-cache\b", line, re.IGNORECASE):
            findings.append(LintFinding(name, number, "terminology", f"write \"KV cache\", not \"{match.group()}\""))
        for match in re.finditer(r"\bkey-value \(KV\) cache|\bkey-value cache\b", line, re.IGNORECASE):
            if defined:
                findings.append(LintFinding(name, number, "terminology",
                                            f"\"{match.group()}\" after its definition; write \"KV cache\""))
            defined = True
        for term in config.terms:
            for match in re.finditer(rf"\b{re.escape(term)}\b", line, re.IGNORECASE):
                if match.group() != term and not (term == "KV cache" and match.group() == "KV Cache"):
                    findings.append(LintFinding(name, number, "terminology",
                                                f"spell \"{match.group()}\" as \"{term}\""))
    return findings


def _style(name: str, lines: list[str], source_lines: list[str]) -> list[LintFinding]:
    """Filler phrases and unsupported intensifiers; the evidence may sit in a macro, so it is read from the source."""
    findings = []
    for number, line in enumerate(lines, start=1):
        source = source_lines[number - 1] if number <= len(source_lines) else line
        lowered = line.lower()
        for phrase in FILLER:
            if re.search(rf"\b{phrase}\b", lowered):
                findings.append(LintFinding(name, number, "filler", f"drop the filler \"{phrase}\""))
        for sentence in _sentences(line):
            for word in INTENSIFIERS:
                supported = EVIDENCE.search(sentence) or (len(_sentences(line)) == 1 and EVIDENCE.search(source))
                if re.search(rf"\b{word}\b", sentence, re.IGNORECASE) and not supported:
                    findings.append(LintFinding(name, number, "vague-claim",
                                                f"\"{word}\" without a number or a test in the sentence"))
    return findings


METRIC_WORDS = re.compile(
    r"score|percent|accuracy|NLL|nats|likelihood|seconds|MiB|time|memory|version|hyperparameter|signal|policy",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Float:
    """A float environment: its kind, line, label, caption text and where its caption and tabular start."""

    kind: str
    line: int
    label: str | None
    caption: str | None
    caption_offset: int | None
    tabular_offset: int | None
    caption_line: int | None = None


def _float_environments(tex: str, nodes: list) -> list[Float]:
    found = []
    for visit in walk(nodes):
        node = visit.node
        if not (isinstance(node, LatexEnvironmentNode) and node.environmentname in FLOATS):
            continue
        label = caption = caption_offset = tabular_offset = None
        for inner in walk(node.nodelist):
            child = inner.node
            if isinstance(child, LatexMacroNode) and child.macroname == "label" and arguments(child) and label is None:
                label = text_of(arguments(child)[-1]).strip()
            elif isinstance(child, LatexMacroNode) and child.macroname == "caption" and arguments(child):
                caption, caption_offset = text_of(arguments(child)[-1]), child.pos
            elif isinstance(child, LatexEnvironmentNode) and child.environmentname.startswith("tabular"):
                tabular_offset = child.pos if tabular_offset is None else tabular_offset
        caption_line = None if caption_offset is None else line_of(tex, caption_offset)
        found.append(Float(node.environmentname.rstrip("*"), line_of(tex, node.pos), label, caption,
                           caption_offset, tabular_offset, caption_line))
    return found


def _floats(name: str, floats: list[Float]) -> list[LintFinding]:
    findings = []
    for item in floats:
        if item.label is None:
            findings.append(LintFinding(name, item.line, "float-label", f"this {item.kind} has no \\label"))
        if item.kind != "algorithm":
            if item.caption is None:
                findings.append(LintFinding(name, item.line, "float-caption", f"this {item.kind} has no caption"))
            elif len(re.findall(r"[.!?](?:\s|$)", item.caption + " ")) < 2:
                findings.append(LintFinding(name, item.caption_line, "float-caption",
                                            "the caption needs at least two sentences: what is shown, and "
                                            "what to notice"))
        if item.kind != "table" or item.caption is None:
            continue
        if not re.search(r"\bbold\b", item.caption, re.IGNORECASE):
            findings.append(LintFinding(name, item.line, "table-caption-bold",
                                        "say what bold means, or that no entry is bold"))
        if not METRIC_WORDS.search(item.caption):
            findings.append(LintFinding(name, item.line, "table-caption-metric",
                                        "say what the numbers are (the metric and its unit)"))
        if item.tabular_offset is not None and item.tabular_offset < item.caption_offset:
            findings.append(LintFinding(name, item.line, "table-caption-above", "put the table's caption above it"))
    return findings


def _vspace(name: str, tex: str, config: LintConfig) -> list[LintFinding]:
    negative = [(tex.count("\n", 0, match.start()) + 1, match.group())
                for match in re.finditer(r"\\vspace\*?\{\s*-[^}]*\}", tex)]
    if len(negative) <= config.max_negative_vspace:
        return []
    return [LintFinding(name, line, "negative-vspace",
                        f"{text} ({index} of {len(negative)} negative \\vspace, more than the "
                        f"{config.max_negative_vspace} allowed); fix the layout instead")
            for index, (line, text) in enumerate(negative, start=1)]


PASSIVE_CLAIM = re.compile(
    r"\b(?:is|are|was|were|be|been|being)\s+(?:\w+ly\s+)?(?:\w+ed|shown|kept|found|made|given|taken|done|"
    r"seen|known|built|run|chosen|drawn|written|proposed|introduced|presented)\b",
    re.IGNORECASE,
)
CLAIM_PHRASES = re.compile(r"\b(?:is|are) (?:proposed|introduced|presented)\b", re.IGNORECASE)


def _voice(name: str, tex: str, prose_lines: list[str]) -> list[LintFinding]:
    """Passive voice in contribution claims: the contribution bullets, and any "is proposed" sentence."""
    findings = []
    start = tex.find("\\paragraph{Contributions.}")
    end = tex.find("\\end{itemize}", start) if start >= 0 else -1
    first, last = (tex.count("\n", 0, start) + 1, tex.count("\n", 0, end) + 1) if end > 0 else (0, -1)
    for number, line in enumerate(prose_lines, start=1):
        match = PASSIVE_CLAIM.search(line) if first <= number <= last else CLAIM_PHRASES.search(line)
        if match:
            findings.append(LintFinding(name, number, "passive-voice",
                                        f"\"{match.group()}\" in a contribution claim; write \"we ...\""))
    return findings


def _references(name: str, tex: str, cited: list[Reference], floats: list[Float]) -> list[LintFinding]:
    """Equations are referred to with \\Cref or \\cref, and every float is referred to in the text."""
    findings = []
    for reference in cited:
        if reference.key.startswith("eq:") and reference.macro in ("ref", "eqref"):
            findings.append(LintFinding(name, line_of(tex, reference.offset), "equation-reference",
                                        f"refer to {reference.key} with \\Cref, not \\{reference.macro}"))
    referenced = {reference.key for reference in cited}
    for item in floats:
        if item.label and item.label not in referenced:
            findings.append(LintFinding(name, item.line, "float-reference",
                                        f"{item.label} is never referred to in the text"))
    return findings


def _acronyms(name: str, prose_lines: list[str], names: list[str], acronyms: tuple[str, ...]) -> list[LintFinding]:
    """An acronym's first use in the text must define it: "long form (ACR)" or "ACR (long form)"."""
    findings = []
    text = "\n".join(prose_lines)
    for acronym in acronyms:
        uses = [match for match in re.finditer(rf"(?<![\w-]){re.escape(acronym)}s?(?![\w-])", text)
                if not any(acronym in label and label in text[max(match.start() - 20, 0): match.end() + 20]
                           for label in names)]
        if not uses:
            continue
        first = uses[0]
        defined = text[first.start() - 1 : first.start()] == "(" or re.match(
            rf"{re.escape(acronym)}s?\s*\(", text[first.start():]
        )
        if not defined:
            findings.append(LintFinding(name, text.count("\n", 0, first.start()) + 1, "acronym",
                                        f"{acronym} is used before it is defined; write the long form with "
                                        f"\"({acronym})\" at its first use"))
    return findings


def lint(tex_path: Path, config: LintConfig | None = None, build_dir: Path | None = None) -> list[LintFinding]:
    """Run every rule on the rendered ``tex_path``; the float-page rule needs the ``build_dir`` of its build."""
    config = config or load_lint_config()
    tex = tex_path.read_text(encoding="utf-8")
    name = os.path.relpath(tex_path) if tex_path.resolve().is_relative_to(Path.cwd()) else str(tex_path)
    names = [*TASK_LABELS.values(), *METHOD_LABELS.values()]
    prose_lines = prose_text(tex, names).splitlines()
    _, nodes = parse(tex)
    floats = _float_environments(tex, nodes)

    findings = _terminology(name, prose_lines, config) + _style(name, prose_lines, tex.splitlines())
    findings += [LintFinding(name, item.line, "number", f"a digit in prose outside a result macro: {item.text[:60]}")
                 for item in typed_numbers(tex, names)]
    findings += _floats(name, floats) + _vspace(name, tex, config) + _voice(name, tex, prose_lines)
    cited = references(nodes)
    findings += _references(name, tex, cited, floats) + _acronyms(name, prose_lines, names, config.acronyms)
    findings += [LintFinding(name, line_of(tex, item.offset), item.rule, item.message)
                 for item in check_notation(tex, nodes, config.notation)]
    if build_dir is not None:
        first_reference: dict[str, int] = {}
        for reference in cited:
            first_reference.setdefault(reference.key, line_of(tex, reference.offset))
        labelled = {item.label: item.line for item in floats if item.label}
        findings += [LintFinding(name, item.line, "float-page", item.message)
                     for item in check_float_pages(tex_path, build_dir, labelled, first_reference)]
    return sorted(_with_template_lines(tex_path, findings), key=lambda finding: (finding.line, finding.rule))


def _with_template_lines(tex_path: Path, findings: list[LintFinding]) -> list[LintFinding]:
    """Name the template line behind each finding, from the source map that rendering writes next to the paper."""
    source_map = tex_path.with_suffix(".sourcemap.json")
    if not source_map.is_file():
        return findings
    try:
        data = json.loads(source_map.read_text(encoding="utf-8"))
        origins, folder = data["lines"], data["templates"]
    except (ValueError, KeyError, TypeError):
        return findings  # a damaged map only costs the hint, not the check
    return [
        replace(finding, message=f"{finding.message} [{folder}/{origins[finding.line - 1]}]")
        if 0 < finding.line <= len(origins) and origins[finding.line - 1] else finding
        for finding in findings
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.checks.writing", description=__doc__.splitlines()[0])
    parser.add_argument("--tex", type=Path, default=REPOSITORY / "paper" / "main.tex", help="rendered LaTeX")
    parser.add_argument("--build", type=Path, default=None,
                        help="the build folder of --tex, for the float-page rule (default: build/ next to --tex)")
    parser.add_argument("--json", type=Path, default=None, help="report file (default: lint.json in --build)")
    args = parser.parse_args(argv)
    if not args.tex.is_file():
        print(f"error: {args.tex} not found; run `make paper` first.", file=sys.stderr)
        return 2
    build_dir = args.build or args.tex.parent / "build"
    try:
        findings = lint(args.tex, build_dir=build_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    report = json.dumps([asdict(finding) for finding in findings], indent=1) + "\n"
    write_text_atomically(args.json or build_dir / "lint.json", report)
    print(f"writing check: {'clean' if not findings else f'{len(findings)} finding(s)'}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
