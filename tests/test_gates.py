"""Build gates: planted faults fail with the right message, builds are byte-identical, figures are not redrawn."""

import json
import logging
import shutil
from pathlib import Path

import matplotlib
import pytest
from conftest import _cell, standard_scores

from pipeline.experiments.schema import cell_filename
from pipeline.render import build, gates, paper

pytestmark = pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (run `make tex`)")

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A fixture paper rendered once; tests copy it before planting a fault."""
    tmp_path = tmp_path_factory.mktemp("gates")
    results = tmp_path / "results"
    for (task, method, budget), score in standard_scores().items():
        path = results / "merged" / cell_filename(task, method, budget)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_cell(task, method, budget, score)))
    paper_dir = tmp_path / "paper"
    paper.render(results, paper_dir, tmp_path / "figures")
    return results, paper_dir


def planted(rendered, tmp_path, before: str, text: str) -> Path:
    """A copy of the rendered paper with ``text`` inserted on the line before the first ``before``."""
    paper_dir = tmp_path / "planted"
    shutil.copytree(rendered[1], paper_dir, ignore=shutil.ignore_patterns("build"))
    main = paper_dir / "main.tex"
    source = main.read_text()
    position = source.index(before)
    main.write_text(source[:position] + text + "\n" + source[position:])
    return paper_dir


def build_error(paper_dir) -> str:
    with pytest.raises(build.BuildError) as error:
        build.build(paper_dir)
    return str(error.value)


def test_default_fixture_paper_passes_every_gate(rendered, tmp_path):
    paper_dir = tmp_path / "clean"
    shutil.copytree(rendered[1], paper_dir)
    pdf = build.build(paper_dir)
    assert gates.format_findings(pdf, sorted((paper_dir / "figures").glob("*.pdf"))) == []


def test_undefined_cref_fails(rendered, tmp_path):
    message = build_error(planted(rendered, tmp_path, r"\section{Conclusion}", r"See \Cref{sec:nowhere}."))
    assert "reference 'sec:nowhere' is undefined" in message


def test_missing_citation_fails(rendered, tmp_path):
    message = build_error(planted(rendered, tmp_path, r"\section{Conclusion}", r"As shown~\citep{nobody2099}."))
    assert "citation 'nobody2099' is undefined" in message


def test_duplicate_label_fails(rendered, tmp_path):
    message = build_error(planted(rendered, tmp_path, r"\section{Conclusion}", r"\label{sec:intro}"))
    assert "label 'sec:intro' is defined more than once" in message


def test_nine_page_main_text_fails_with_lines_over(rendered, tmp_path):
    filler = "\n\n".join(["We pad the main text with this sentence to push it past the page limit. " * 12] * 60)
    message = build_error(planted(rendered, tmp_path, r"\section{Conclusion}", filler))
    assert "the main text ends on page" in message
    assert "over the 8-page limit by about" in message
    assert "floats in the main text, two-column ones first: fig:results (figure*)" in message


def test_latex_error_names_template_file_and_line(rendered, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(REPOSITORY / "templates", templates)
    impact = templates / "sections" / "impact.tex.j2"
    lines = impact.read_text().splitlines()
    lines.insert(3, r"\undefinedcommandhere")
    impact.write_text("\n".join(lines) + "\n")
    paper_dir = tmp_path / "paper"
    paper.render(rendered[0], paper_dir, tmp_path / "figures", templates=templates)

    message = build_error(paper_dir)
    assert "Undefined control sequence" in message
    assert f"written by the template {templates / 'sections' / 'impact.tex.j2'}:4:" in message
    assert r">     4 | \undefinedcommandhere" in message


def test_jinja_syntax_error_names_template_file_and_line(rendered, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(REPOSITORY / "templates", templates)
    impact = templates / "sections" / "impact.tex.j2"
    impact.write_text(impact.read_text() + "((* if *))\n")
    with pytest.raises(paper.PaperError, match=r"impact.tex.j2:\d+: template syntax error"):
        paper.render(rendered[0], tmp_path / "paper", tmp_path / "figures", templates=templates)


def test_type3_figure_fails_the_font_gate(tmp_path):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([0, 1], [0, 1])
    axes.set_title("Type 3 glyphs")
    with matplotlib.rc_context({"pdf.fonttype": 3}):
        figure.savefig(tmp_path / "type3.pdf")
    plt.close(figure)
    findings = gates.font_findings(tmp_path / "type3.pdf")
    assert findings
    assert all("is Type 3" in finding.message for finding in findings)


def test_two_builds_are_byte_identical(rendered, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(rendered[1], first, ignore=shutil.ignore_patterns("build"))
    shutil.copytree(rendered[1], second, ignore=shutil.ignore_patterns("build"))
    assert build.build(first).read_bytes() == build.build(second).read_bytes()


def test_template_change_does_not_redraw_figures(rendered, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(REPOSITORY / "templates", templates)
    figures = tmp_path / "figures"
    paper.render(rendered[0], tmp_path / "p1", figures, templates=templates)
    drawn = {path: path.stat().st_mtime_ns for path in figures.glob("*.pdf")}

    impact = templates / "sections" / "impact.tex.j2"
    impact.write_text(impact.read_text() + "We add one sentence.\n")
    paper.render(rendered[0], tmp_path / "p2", figures, templates=templates)
    assert drawn
    assert {path: path.stat().st_mtime_ns for path in figures.glob("*.pdf")} == drawn


def test_page_report_reads_the_part_labels():
    aux = "\n".join([
        r"\newlabel{page:main-end}{{5}{9}{Conclusion}{section.5}{}}",
        r"\mainendposition{40000000}{11.0pt}",
        r"\newlabel{page:impact}{{5}{9}{}{}{}}",
        r"\newlabel{page:references}{{5}{10}{}{}{}}",
        r"\newlabel{page:appendix}{{A}{12}{}{}{}}",
    ])
    report = gates.page_report(aux)
    assert (report.main_end, report.impact, report.references, report.appendix) == (9, 9, 10, 12)
    assert report.lines_over > 0
    findings = gates.page_findings(report)
    assert len(findings) == 1
    assert "ends on page 9" in findings[0].message


def test_fit_auto_applies_remedies_in_order_then_names_them(rendered, tmp_path, monkeypatch, caplog):
    from pipeline.render import fit

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(gates, "PAGE_LIMIT", 1)  # no version of the fixture paper fits one page
    with pytest.raises(build.PageLimitError, match="Every remedy is applied") as error:
        fit.fit_paper(rendered[0], tmp_path / "paper", tmp_path / "figures", auto=True)
    assert "short_captions, ablation_to_appendix, compact_related, vspace" in str(error.value)
    messages = [record.getMessage() for record in caplog.records]
    applied = [message.split()[-1] for message in messages if "applying the remedy" in message]
    assert applied == ["short_captions", "ablation_to_appendix", "compact_related", "vspace"]
    tex = (tmp_path / "paper" / "main.tex").read_text()
    assert r"\newcommand{\captiondetail}[1]{\unskip}" in tex
    assert "Examples are " in tex  # the compact Related Work
    assert tex.count(r"\vspace{-3pt}") == 2


def test_page_limit_without_fit_suggests_fit_auto(rendered, tmp_path, monkeypatch):
    from pipeline.render import fit

    monkeypatch.setattr(gates, "PAGE_LIMIT", 1)
    with pytest.raises(build.PageLimitError, match="make paper FIT=auto"):
        fit.fit_paper(rendered[0], tmp_path / "paper", tmp_path / "figures")
