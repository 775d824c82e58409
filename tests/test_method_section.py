"""Tests for templates/sections/method.tex.j2, rendered alone by pipeline.render.latex.make_environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.render.latex import make_environment

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

EQUATION_LABELS = ("eq:transition", "eq:visits", "eq:score", "eq:expected")
PARAM_KEYS = ("num_walkers", "max_steps", "temperature", "num_sinks", "window")

# Environments whose whole body is math or drawing code, so digits there are not prose.
NON_PROSE_ENVIRONMENTS = ("tikzpicture", "equation", "equation*", "align", "align*", "displaymath")
# Commands whose braced argument is a key, a label or a length, never prose.
KEY_COMMANDS = (
    "result", "label", "ref", "cref", "Cref", "eqref", "autoref", "cite", "citep", "citet",
    "vspace", "hspace", "setlength",
)
ALGORITHMIC_COMMANDS = ("REQUIRE", "FOR", "ENDFOR", "STATE", "RETURN")
# Commands that start one line of an algorithmic block.
ALGORITHM_LINE = re.compile(r"^\\(REQUIRE|ENSURE|FOR|ENDFOR|WHILE|ENDWHILE|IF|ELSE|ENDIF|STATE|RETURN)\b", re.MULTILINE)


def render_method(params: dict) -> str:
    """Render the Method section with ``setup.params`` set to ``params``."""
    template = make_environment(TEMPLATES).get_template("sections/method.tex.j2")
    return template.render(setup={"params": params}, analysis=None)


def strip_non_prose(tex: str) -> str:
    """Remove everything from ``tex`` that is not prose, in this order.

    1. Comments: ``%`` to the end of the line, unless escaped as ``\\%``.
    2. The environments in ``NON_PROSE_ENVIRONMENTS``, bodies included.
    3. Display math ``\\[...\\]`` and inline math ``$...$``.
    4. The commands in ``KEY_COMMANDS`` with all their braced arguments,
       which must not contain nested braces.
    Environment names such as ``\\begin{algorithm}[t]`` stay, because they hold no digits.
    """
    text = re.sub(r"(?<!\\)%.*", "", tex)
    for name in NON_PROSE_ENVIRONMENTS:
        escaped = re.escape(name)
        text = re.sub(rf"\\begin\{{{escaped}\}}.*?\\end\{{{escaped}\}}", " ", text, flags=re.DOTALL)
    text = re.sub(r"\\\[.*?\\\]", " ", text, flags=re.DOTALL)
    text = re.sub(r"(?<!\\)\$.*?(?<!\\)\$", " ", text, flags=re.DOTALL)
    commands = "|".join(KEY_COMMANDS)
    text = re.sub(rf"\\(?:{commands})\*?(?:\[[^\]]*\])*(?:\{{[^{{}}]*\}})+", " ", text)
    return text


def environment_body(tex: str, name: str) -> str:
    """Return the body of the single ``name`` environment in ``tex``."""
    bodies = re.findall(rf"\\begin\{{{name}\}}(.*?)\\end\{{{name}\}}", tex, flags=re.DOTALL)
    assert len(bodies) == 1, f"expected one {name} environment, found {len(bodies)}"
    return bodies[0]


@pytest.fixture(scope="module")
def with_circuitkv() -> str:
    return render_method({"circuitkv": {}})


@pytest.fixture(scope="module")
def without_circuitkv() -> str:
    return render_method({})


def test_section_heading_and_label(with_circuitkv):
    assert "\\section{Method}" in with_circuitkv
    assert "\\label{sec:method}" in with_circuitkv


@pytest.mark.parametrize("label", EQUATION_LABELS)
def test_equation_label_is_numbered(with_circuitkv, label):
    equations = re.findall(r"\\begin\{equation\}(.*?)\\end\{equation\}", with_circuitkv, flags=re.DOTALL)
    holders = [body for body in equations if f"\\label{{{label}}}" in body]
    assert len(holders) == 1, f"{label} must label exactly one numbered equation"


def test_every_equation_reference_is_defined(with_circuitkv):
    labels = set(re.findall(r"\\label\{([^}]*)\}", with_circuitkv))
    references = [
        target.strip()
        for group in re.findall(r"\\[cC]ref\{([^}]*)\}", with_circuitkv)
        for target in group.split(",")
    ]
    equation_references = [target for target in references if target.startswith("eq:")]
    assert equation_references, "the section never refers to its equations"
    undefined = sorted(set(equation_references) - labels)
    assert not undefined, f"references to labels this section does not define: {undefined}"


def test_every_equation_is_referenced(with_circuitkv):
    references = set(re.findall(r"\\Cref\{(eq:[^}]*)\}", with_circuitkv))
    missing = [label for label in EQUATION_LABELS if label not in references]
    assert not missing, f"equations never referenced with \\Cref: {missing}"


def test_no_plain_ref_commands(with_circuitkv):
    assert "\\ref{" not in with_circuitkv
    assert "\\eqref{" not in with_circuitkv


def test_overview_figure_is_one_column_tikz(with_circuitkv):
    body = environment_body(with_circuitkv, "figure")
    assert "\\begin{figure*}" not in with_circuitkv
    assert "\\begin{tikzpicture}" in body
    assert "\\columnwidth" in body
    assert "\\label{fig:overview}" in body
    assert "\\cref{fig:overview}" in with_circuitkv or "\\Cref{fig:overview}" in with_circuitkv


def test_overview_caption_has_two_sentences(with_circuitkv):
    body = environment_body(with_circuitkv, "figure")
    caption = re.search(r"\\caption\{(.*)\}\s*\\label\{fig:overview\}", body, flags=re.DOTALL)
    assert caption is not None, "the figure needs a caption right before its label"
    prose = strip_non_prose(caption.group(1))
    sentences = [part for part in re.split(r"\.\s+", prose.strip()) if part.strip()]
    assert len(sentences) >= 2, f"caption has {len(sentences)} sentence(s): {prose!r}"


def test_algorithm_uses_algorithmic(with_circuitkv):
    body = environment_body(with_circuitkv, "algorithm")
    assert "\\caption{" in body
    assert "\\label{alg:circuitkv}" in body
    steps = environment_body(body, "algorithmic")
    for command in ALGORITHMIC_COMMANDS:
        assert re.search(rf"\\{command}\b", steps), f"algorithm lacks \\{command}"


def test_algorithm_length(with_circuitkv):
    steps = environment_body(environment_body(with_circuitkv, "algorithm"), "algorithmic")
    lines = ALGORITHM_LINE.findall(steps)
    assert 12 <= len(lines) <= 15, f"algorithm has {len(lines)} lines"


@pytest.mark.parametrize("key", PARAM_KEYS)
def test_hyperparameter_macro_when_circuitkv_ran(with_circuitkv, key):
    assert with_circuitkv.count(f"\\result{{param/circuitkv/{key}}}") == 1


def test_no_hyperparameters_without_circuitkv(without_circuitkv):
    assert "param/circuitkv" not in without_circuitkv
    assert "We use" not in without_circuitkv


def test_unlimited_steps_print_no_macro():
    tex = render_method({"circuitkv": {"max_steps": None}})
    assert "param/circuitkv/max_steps" not in tex
    assert "no step limit" in tex
    assert "\\result{param/circuitkv/num_walkers}" in tex


@pytest.mark.parametrize("params", [{"circuitkv": {}}, {}], ids=["circuitkv", "no-circuitkv"])
def test_no_digit_in_prose(params):
    prose = strip_non_prose(render_method(params))
    offending = [line for line in prose.splitlines() if re.search(r"\d", line)]
    assert not offending, "digits in prose:\n" + "\n".join(offending)


def test_stripping_keeps_prose_digits():
    tex = (
        "We use 1024 walkers, $N = 4$ and \\result{param/x/y2}.\n"
        "% a comment with 7\n"
        "\\begin{equation} x^2 \\label{eq:a1} \\end{equation}\n"
        "See \\Cref{eq:a1} and \\citep{doyle1984random}.\n"
    )
    prose = strip_non_prose(tex)
    assert "1024" in prose
    assert re.findall(r"\d", prose) == ["1", "0", "2", "4"]
