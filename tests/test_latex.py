"""LaTeX escaping and the template environment's guards."""

import jinja2
import pytest

from pipeline.render.latex import Latex, escape, make_environment

SPECIALS = {
    "%": r"\%",
    "&": r"\&",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


@pytest.mark.parametrize("character,expected", SPECIALS.items())
def test_special_character_escaped(character, expected):
    assert escape(f"a{character}b") == f"a{expected}b"


def test_escape_keeps_plain_text():
    assert escape("SnapKV at budget 128") == "SnapKV at budget 128"


@pytest.fixture
def environment(tmp_path):
    return make_environment(tmp_path), tmp_path


def render(environment, source: str, **values) -> str:
    env, folder = environment
    (folder / "t.tex.j2").write_text(source)
    return env.get_template("t.tex.j2").render(**values)


def test_inserted_strings_are_escaped(environment):
    assert render(environment, r"\textbf{((( name )))}", name="50% of R&D_x") == r"\textbf{50\% of R\&D\_x}"


def test_latex_values_pass_unescaped(environment):
    assert render(environment, "((( cell )))", cell=Latex(r"\textbf{1.0}")) == r"\textbf{1.0}"


def test_undefined_variable_raises(environment):
    with pytest.raises(jinja2.UndefinedError):
        render(environment, "((( missing )))")


def test_unformatted_float_raises(environment):
    with pytest.raises(TypeError, match="num filter"):
        render(environment, "((( value )))", value=0.1 + 0.2)


def test_num_filter_formats(environment):
    assert render(environment, "((( value|num(2) )))", value=12.3456) == "12.35"


def test_braces_and_percent_are_not_delimiters(environment):
    source = "{{ x }} {% raw %} % comment\n((* if flag *))yes((* endif *))"
    assert render(environment, source, flag=True) == "{{ x }} {% raw %} % comment\nyes"


def test_templates_avoid_ambiguous_parentheses():
    """'(((( x ))))' parses as the expression '( x )' and drops the outer parentheses from the output."""
    from pathlib import Path

    templates = Path(__file__).resolve().parents[1] / "templates"
    for path in templates.rglob("*.j2"):
        text = path.read_text()
        assert "((((" not in text, path
        assert "))))" not in text, path


def test_join_words():
    from pipeline.render.latex import join_words

    assert join_words([]) == ""
    assert join_words(["A"]) == "A"
    assert join_words(["A", "B"]) == "A and B"
    assert join_words(["A", "B", "C"]) == "A, B and C"
