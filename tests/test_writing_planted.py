"""One violation per writing rule, planted in a copy of the built default paper: the check must name it.

Each plant edits lines in place and adds none, so the copied build's map
from lines to pages still holds, except for the float-page plant, which
moves a reference and so rebuilds its copy.
"""

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.checks import writing
from pipeline.render import build



@dataclass(frozen=True)
class Plant:
    """Replace the first ``old`` (or, with ``whole_line``, the line that contains it) by ``new``.

    The finding must name the planted line, or with ``anchor`` the nearest
    line before it that contains the anchor (the float's begin).
    """

    rule: str
    old: str
    new: str
    anchor: str | None = None
    whole_line: bool = False


PLANTS = [
    Plant("terminology", "The KV cache stores", "The KV-cache stores"),
    Plant("filler", "A walk stops after", "Interestingly, a walk stops after"),
    Plant("vague-claim", "A walk stops after", "A walk stops dramatically after"),
    Plant("passive-voice", "\\item We compute the walks", "\\item The walks are computed"),
    Plant("number", "The sinks, which are always kept", "The 4 sinks, which are always kept"),
    Plant("float-label", "\\label{fig:overview}", "", anchor="\\begin{figure}"),
    Plant("float-caption", "\\caption{Attention edges of one layer", "\\caption{One sentence.}", whole_line=True),
    Plant("table-caption-above", "\\caption{Ablation of CircuitKV",
          "\\begin{tabular}{l}x\\end{tabular}\\caption{Ablation of CircuitKV", anchor="\\begin{table}"),
    Plant("table-caption-bold", "no entry is bold", "no entry is marked", anchor="\\begin{table}"),
    Plant("table-caption-metric", "\\caption{Ablation of CircuitKV", "\\caption{Variants. No entry is bold.}",
          anchor="\\begin{table}", whole_line=True),
    Plant("float-reference", "\\label{fig:overview}", "\\label{fig:unused}", anchor="\\begin{figure}"),
    Plant("acronym", "the negative log-likelihood (NLL)", "the NLL"),
    Plant("definition-before-use", "with temperature $\\temp$.", "with $\\temp$.",
          anchor="P_{ij} = \\attn_{ij}^{1/\\temp}"),
    Plant("forward-reference", "\\item We define CircuitKV, a token score",
          "\\item We define CircuitKV, a token score (\\Cref{eq:score})"),
    Plant("notation-symbol", "with temperature $\\temp$.", "with temperature $T$."),
    Plant("notation-meaning", "\\newcommand{\\window}{w}", "\\newcommand{\\window}{s}"),
    Plant("equation-reference", "\\Cref{eq:transition}", "Equation~\\ref{eq:transition}"),
    Plant("negative-vspace", "\\paragraph{Preliminaries.}",
          "\\vspace{-1pt}\\vspace{-1pt}\\vspace{-1pt}\\paragraph{Preliminaries.}"),
]


def plant(source: Path, folder: Path, change: Plant) -> tuple[Path, int]:
    """Copy the built paper to ``folder``, make the change, and return main.tex and the edited line."""
    shutil.copytree(source.parent, folder)
    tex_path = folder / source.name / "main.tex"
    tex = tex_path.read_text(encoding="utf-8")
    start = tex.index(change.old)
    end = start + len(change.old)
    if change.whole_line:
        start, end = tex.rindex("\n", 0, start) + 1, tex.index("\n", start)
    tex_path.write_text(tex[:start] + change.new + tex[end:], encoding="utf-8")
    return tex_path, tex.count("\n", 0, start) + 1


def line_before(tex_path: Path, line: int, anchor: str | None) -> int:
    """Return ``line``, or with ``anchor`` the nearest line at or before it that contains the anchor."""
    if anchor is None:
        return line
    lines = tex_path.read_text(encoding="utf-8").splitlines()
    return max(number for number, text in enumerate(lines[:line], start=1) if anchor in text)


def run_check(tex_path: Path, capsys) -> tuple[int, str]:
    status = writing.main(["--tex", str(tex_path)])
    return status, capsys.readouterr().out


def test_every_rule_has_a_plant():
    assert {change.rule for change in PLANTS} | {"float-page"} == set(writing.RULES)


@pytest.mark.parametrize("change", PLANTS, ids=[change.rule for change in PLANTS])
def test_planted_violation_is_named(default_paper, tmp_path, capsys, change):
    tex_path, planted = plant(default_paper, tmp_path / "copy", change)
    # The plant moved no line, so the build's line-to-page map still describes the copy: mark it current.
    digest = hashlib.sha256(tex_path.read_bytes()).hexdigest()
    (tex_path.parent / "build" / "main.tex.sha256").write_text(digest + "\n")

    status, output = run_check(tex_path, capsys)

    assert status == 1, output
    assert f"{tex_path}:{line_before(tex_path, planted, change.anchor)}: {change.rule}:" in output, output


def test_planted_float_page_violation_is_named(default_paper, tmp_path, capsys):
    """Figure 1 stays on page 2, but its only reference moves to the conclusion, pages later."""
    moved = Plant("float-page", " (\\cref{fig:overview})", "")
    tex_path, _ = plant(default_paper, tmp_path / "copy", moved)
    text = tex_path.read_text(encoding="utf-8")
    late = text.index("We introduced CircuitKV, which")
    tex_path.write_text(text[:late] + "As \\Cref{fig:overview} shows, we" + text[late + len("We"):], encoding="utf-8")
    build.build(tex_path.parent)

    status, output = run_check(tex_path, capsys)

    label = text[: text.index("\\label{fig:overview}")].count("\n") + 1
    figure = line_before(tex_path, label, "\\begin{figure}")
    assert status == 1, output
    assert f"{tex_path}:{figure}: float-page: fig:overview is printed on page 2" in output, output
