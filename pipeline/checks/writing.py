"""The writing checklist as rules over the rendered LaTeX: ``python -m pipeline.checks.writing``.

Each finding reads ``file:line: rule: message``; ``paper/build/lint.json``
contains the same. The rules so far:

- ``terminology``: "KV-cache" and "key-value cache" (after the first
  definition), and the exact spelling of the project's terms (CircuitKV,
  LongBench, RULER, and those of ``paper/content/lint.yaml``).
- ``filler``: "it is worth noting that", "interestingly", "note that", "it
  should be noted".
- ``vague-claim``: "significantly", "dramatically", "substantially" in a
  sentence with no number, result macro or statistical test.
- ``number``: a digit in prose outside result macros (``prose_numbers``).
- ``float-label``, ``float-caption``, ``table-caption-above``: every float
  has a label and a caption of at least two sentences, and a table's caption
  comes before its tabular.
- ``table-caption-bold`` and ``table-caption-metric``: a table's caption says
  what bold means (or that nothing is bold) and what its numbers are.
- ``negative-vspace``: more negative ``\\vspace`` than the configured limit;
  each one is listed.
- ``passive-voice``: a form of "to be" with a past participle (regular, or
  from a list of irregular ones) in the contribution bullets, and "is
  proposed", "are introduced", "is presented" anywhere.
- ``acronym``: an acronym (LLM, GQA, RoPE, NLL, ...) whose first use is not
  its definition, "long form (ACR)".
- ``equation-reference``: an equation referred to with ``\\ref`` or
  ``\\eqref`` instead of ``\\Cref``; ``float-reference``: a float the text
  never refers to.

Prose is what ``prose_numbers.prose_text`` leaves: no preamble, comments,
math, tables or command arguments that hold keys.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from pipeline.atomic import write_text_atomically
from pipeline.checks.prose_numbers import prose_text, typed_numbers
from pipeline.render.results import METHOD_LABELS
from pipeline.render.tasks import TASK_LABELS

REPOSITORY = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPOSITORY / "paper" / "content" / "lint.yaml"
TERMS = ("CircuitKV", "LongBench", "RULER", "KV cache")
FILLER = ("it is worth noting that", "interestingly", "note that", "it should be noted")
INTENSIFIERS = ("significantly", "dramatically", "substantially")
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
    """Project settings: further terms spelled exactly so, and the number of negative ``\\vspace`` allowed."""

    terms: tuple[str, ...] = TERMS
    max_negative_vspace: int = 2


def load_lint_config(path: Path = CONFIG_PATH) -> LintConfig:
    """Read ``lint.yaml`` (``terms:``, ``max_negative_vspace:``); a missing file gives the defaults."""
    if not path.is_file():
        return LintConfig()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or set(data) - {"terms", "max_negative_vspace"}:
        raise ValueError(f"{path}: expected the fields terms (a list) and max_negative_vspace (a number).")
    terms = data.get("terms") or []
    if not isinstance(terms, list) or not all(isinstance(term, str) and term for term in terms):
        raise ValueError(f"{path}: terms must be a list of words spelled as the paper must spell them.")
    limit = data.get("max_negative_vspace", 2)
    if not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{path}: max_negative_vspace must be a whole number, 0 or more.")
    return LintConfig(terms=tuple(dict.fromkeys([*TERMS, *terms])), max_negative_vspace=limit)


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
_FLOAT = re.compile(r"\\begin\{(figure|table|algorithm)(\*?)\}(.*?)\\end\{\1\2\}", re.DOTALL)


def _floats(name: str, tex: str) -> list[LintFinding]:
    findings = []
    for match in _FLOAT.finditer(tex):
        line = tex.count("\n", 0, match.start()) + 1
        body = match.group(3)
        kind = match.group(1)
        if "\\label{" not in body:
            findings.append(LintFinding(name, line, "float-label", f"this {kind} has no \\label"))
        caption = re.search(r"\\caption\{", body)
        if kind != "algorithm":
            if caption is None:
                findings.append(LintFinding(name, line, "float-caption", f"this {kind} has no caption"))
            else:
                text = body[caption.end():]
                depth, end = 1, 0
                for end, character in enumerate(text):
                    depth += {"{": 1, "}": -1}.get(character, 0)
                    if depth == 0:
                        break
                sentences = re.findall(r"[.!?](?:\s|$)", text[:end] + " ")
                if len(sentences) < 2:
                    findings.append(LintFinding(name, line, "float-caption",
                                                "the caption needs at least two sentences: what is shown, and "
                                                "what to notice"))
        if kind == "table" and caption is not None:
            caption_text = body[caption.end():]
            if not re.search(r"\bbold\b", caption_text, re.IGNORECASE):
                findings.append(LintFinding(name, line, "table-caption-bold",
                                            "say what bold means, or that no entry is bold"))
            if not METRIC_WORDS.search(caption_text):
                findings.append(LintFinding(name, line, "table-caption-metric",
                                            "say what the numbers are (the metric and its unit)"))
        tabular = body.find("\\begin{tabular")
        if kind == "table" and caption is not None and 0 <= tabular < caption.start():
            findings.append(LintFinding(name, line, "table-caption-above", "put the table's caption above it"))
    return findings


def _vspace(name: str, tex: str, config: LintConfig) -> list[LintFinding]:
    negative = [(tex.count("\n", 0, match.start()) + 1, match.group())
                for match in re.finditer(r"\\vspace\*?\{\s*-[^}]*\}", tex)]
    if len(negative) <= config.max_negative_vspace:
        return []
    return [LintFinding(name, line, "negative-vspace",
                        f"{text}: {len(negative)} negative \\vspace, more than the {config.max_negative_vspace} "
                        "allowed; fix the layout instead")
            for line, text in negative]


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


def _references(name: str, tex: str) -> list[LintFinding]:
    """Equations are referred to with \\Cref or \\cref, and every float is referred to in the text."""
    findings = []
    for match in re.finditer(r"\\(?:eqref|ref)\{(eq:[^}]*)\}", tex):
        findings.append(LintFinding(name, tex.count("\n", 0, match.start()) + 1, "equation-reference",
                                    f"refer to {match.group(1)} with \\Cref, not {match.group().split('{')[0]}"))
    referenced = {key.strip() for group in re.findall(r"\\[cC]?ref\{([^}]*)\}", tex) for key in group.split(",")}
    for match in _FLOAT.finditer(tex):
        label = re.search(r"\\label\{([^}]*)\}", match.group(3))
        if label and label.group(1) not in referenced:
            findings.append(LintFinding(name, tex.count("\n", 0, match.start()) + 1, "float-reference",
                                        f"{label.group(1)} is never referred to in the text"))
    return findings


ACRONYMS = ("LLM", "GQA", "RoPE", "NLL", "MHA", "MQA")


def _acronyms(name: str, prose_lines: list[str], names: list[str]) -> list[LintFinding]:
    """An acronym's first use in the text must define it: "long form (ACR)" or "ACR (long form)"."""
    findings = []
    text = "\n".join(prose_lines)
    for acronym in ACRONYMS:
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


def lint(tex_path: Path, config: LintConfig | None = None) -> list[LintFinding]:
    """Run every rule on the rendered ``tex_path``."""
    config = config or load_lint_config()
    tex = tex_path.read_text(encoding="utf-8")
    name = str(tex_path)
    names = [*TASK_LABELS.values(), *METHOD_LABELS.values()]
    prose_lines = prose_text(tex, names).splitlines()
    findings = _terminology(name, prose_lines, config) + _style(name, prose_lines, tex.splitlines())
    findings += [LintFinding(name, item.line, "number", f"a digit in prose outside a result macro: {item.text[:60]}")
                 for item in typed_numbers(tex, names)]
    findings += _floats(name, tex) + _vspace(name, tex, config) + _voice(name, tex, prose_lines)
    findings += _references(name, tex) + _acronyms(name, prose_lines, names)
    return sorted(findings, key=lambda finding: (finding.line, finding.rule))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.checks.writing", description=__doc__.splitlines()[0])
    parser.add_argument("--tex", type=Path, default=REPOSITORY / "paper" / "main.tex", help="rendered LaTeX")
    parser.add_argument("--json", type=Path, default=REPOSITORY / "paper" / "build" / "lint.json")
    args = parser.parse_args(argv)
    if not args.tex.is_file():
        print(f"error: {args.tex} not found; run `make paper` first.", file=sys.stderr)
        return 2
    try:
        findings = lint(args.tex)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    write_text_atomically(args.json, json.dumps([asdict(finding) for finding in findings], indent=1) + "\n")
    print(f"writing check: {'clean' if not findings else f'{len(findings)} finding(s)'}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
