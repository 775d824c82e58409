"""The paper's text follows the results: claims flip with the data, numbers come from macros, tables by category."""

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import _cell, standard_scores

from pipeline.checks.prose_numbers import typed_numbers
from pipeline.experiments.schema import cell_filename, read_cell
from pipeline.render import paper
from pipeline.render.categories import category_table, columns_of
from pipeline.render.config import ConfigError, load_config
from pipeline.render.numbers import percent_change, percent_of
from pipeline.render.results import METHOD_LABELS, results_frame
from pipeline.render.tasks import TASK_LABELS

REPOSITORY = Path(__file__).resolve().parents[1]


def render(results, tmp_path, name):
    return paper.render(results, tmp_path / name, tmp_path / f"{name}-figures").read_text()


def between(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def abstract(tex: str) -> str:
    return between(tex, r"\begin{abstract}", r"\end{abstract}")


def preview(tex: str) -> str:
    return between(tex, r"\paragraph{Results in brief.}", r"\section{Related Work}")


def conclusion(tex: str) -> str:
    return between(tex, r"\section{Conclusion}", r"\paragraph{Limitations.}")


def names_in(tex: str) -> list[str]:
    """Names that contain digits and may appear in prose; the model's name comes from its macro."""
    return [*TASK_LABELS.values(), *METHOD_LABELS.values()]


@pytest.fixture
def winning_and_losing(write_results, tmp_path):
    losing = render(write_results(standard_scores(40.0, 60.0), tmp_path / "lose"), tmp_path, "lose")
    winning = render(write_results(standard_scores(60.0, 40.0), tmp_path / "win"), tmp_path, "win")
    return winning, losing


def test_swapped_scores_flip_abstract_introduction_and_conclusion(winning_and_losing):
    winning, losing = winning_and_losing

    assert "so it improves on it" in abstract(winning)
    assert "so it falls behind it" in abstract(losing)
    assert "keeps more of what an answer needs" in abstract(winning)
    assert "do not beat local attention scores" in abstract(losing)

    assert "and improves on it" in preview(winning)
    assert "and falls behind it" in preview(losing)
    assert "keep what local scores drop" in preview(winning)
    assert "do not beat local ones" in preview(losing)

    assert "it improves on the strongest baseline" in conclusion(winning)
    assert "it falls behind the strongest baseline" in conclusion(losing)
    assert "are therefore a better guide" in conclusion(winning)
    assert "not a better guide" in conclusion(losing)


def test_losing_tasks_get_their_own_paragraph(winning_and_losing):
    winning, losing = winning_and_losing
    analysis_losing = between(losing, r"\subsection{Analysis}", r"\subsection{Ablations}")
    analysis_winning = between(winning, r"\subsection{Analysis}", r"\subsection{Ablations}")
    assert r"\paragraph{S-NIAH-1.}" in analysis_losing
    assert r"\paragraph{MK-NIAH-1.}" in analysis_losing
    assert "and falls behind it" in analysis_losing
    assert r"\paragraph{" not in analysis_winning


def test_tie_everywhere_says_no_difference_is_resolved(write_results, tmp_path):
    tex = render(write_results(standard_scores(40.0, 40.0)), tmp_path, "tie")
    assert "so it matches it within our confidence intervals" in abstract(tex)
    assert "no compressed method separates from the others" in abstract(tex)
    assert "does not yet decide" in conclusion(tex)


@pytest.mark.parametrize("scores", [(40.0, 60.0), (60.0, 40.0)])
def test_fixture_prose_has_no_typed_digit(write_results, tmp_path, scores):
    tex = render(write_results(standard_scores(*scores)), tmp_path, "scan")
    findings = typed_numbers(tex, names_in(tex))
    assert not findings, "\n".join(f"main.tex:{item.line}: {item.text}" for item in findings)


@pytest.mark.skipif(not (REPOSITORY / "data/results/cells").is_dir(), reason="no committed results")
def test_committed_paper_prose_has_no_typed_digit(tmp_path):
    tex = render(REPOSITORY / "data/results", tmp_path, "committed")
    findings = typed_numbers(tex, names_in(tex))
    assert not findings, "\n".join(f"main.tex:{item.line}: {item.text}" for item in findings)


def test_scanner_flags_typed_number_only():
    tex = "\n".join([
        r"\documentclass{article}",
        r"\resultdef{avg/x}{12.5}",
        r"\begin{document}",
        r"We keep \result{budget/b128} entries with $\temp = 1$ and \citep{vaswani2017attention} (\Cref{eq:score2}).",
        r"\begin{tabular}{lr} H2O & 12.5 \\ \end{tabular}",
        r"H2O scores 12.5 on MK-NIAH-1.",
        r"% a comment with 42",
        r"\end{document}",
    ])
    findings = typed_numbers(tex, ["H2O", "MK-NIAH-1"])
    assert [item.line for item in findings] == [6]
    assert "12.5" in findings[0].text


def test_every_number_macro_names_its_source(write_results, tmp_path):
    tex = render(write_results(standard_scores()), tmp_path, "sources")
    lines = tex.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(r"\resultdef{"):
            assert lines[index - 1].startswith("% "), line
            assert len(lines[index - 1]) > 4, line


def test_percent_change_and_share():
    assert percent_change(75.0, 100.0) == pytest.approx(-25.0)
    assert percent_change(150.0, 100.0) == pytest.approx(50.0)
    assert percent_of(5898240, 188743680) == pytest.approx(3.125)
    with pytest.raises(ValueError, match="positive"):
        percent_change(1.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        percent_of(1.0, -2.0)


def test_title_comes_from_the_config(write_results, tmp_path):
    config = tmp_path / "paper.yaml"
    text = (REPOSITORY / "paper/content/paper.yaml").read_text().replace("title: walkers", "title: paths")
    config.write_text(text)
    tex = paper.render(write_results(standard_scores()), tmp_path / "p", tmp_path / "f", config_path=config).read_text()
    assert r"\icmltitle{Keep the Paths, Not the Peaks" in tex


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("title: walkers", "title: missing"), "title 'missing' is not a key of titles"),
        (("cpu: 128", "cpu: many"), "main_budget.cpu"),
        (("  rows:", "  rowz:"), "ablation.rowz"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path, edit, message):
    config = tmp_path / "paper.yaml"
    config.write_text((REPOSITORY / "paper/content/paper.yaml").read_text().replace(*edit))
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_config(config)
    assert str(config) in str(error.value)


def test_unrun_main_budget_is_named(write_results, tmp_path):
    config = tmp_path / "paper.yaml"
    config.write_text((REPOSITORY / "paper/content/paper.yaml").read_text().replace("cpu: 128", "cpu: 256"))
    with pytest.raises(ConfigError, match=r"main_budget.cpu is 256, but the results hold budgets 128, 512"):
        paper.render(write_results(standard_scores()), tmp_path / "p", tmp_path / "f", config_path=config)


def _cells(directory):
    return [(path, read_cell(path)) for path in sorted((directory / "merged").rglob("*.json"))]


def test_single_category_shows_tasks_and_marks_decided_columns(write_results):
    cells = _cells(write_results(standard_scores(40.0, 60.0)))
    frame = results_frame(cells)
    by_category, columns = columns_of(frame)
    assert not by_category
    assert [column.label for column in columns] == ["MK-NIAH-1", "S-NIAH-1", "Avg."]

    table = category_table(frame, cells, 128)
    assert [row.method for row in table.rows] == ["full", "streamingllm", "snapkv", "circuitkv"]
    ours = table.rows[-1].cells
    assert all(cell.endswith("$^{-}$") for cell in ours)
    assert table.rows[2].cells[0] == r"\textbf{60.0}"
    assert table.marked_below == ["MK-NIAH-1", "S-NIAH-1", "Avg."]


def test_several_categories_become_columns(tmp_path):
    directory = tmp_path / "results"
    scores = {("niah_single_1", "full", None): 90.0, ("vt", "full", None): 50.0}
    for budget in (128, 512):
        for task, value in (("niah_single_1", 30.0), ("vt", 10.0)):
            scores[(task, "snapkv", budget)] = value
            scores[(task, "circuitkv", budget)] = value
    for (task, method, budget), score in scores.items():
        path = directory / "merged" / cell_filename(task, method, budget)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_cell(task, method, budget, score)))
    cells = _cells(directory)
    table = category_table(results_frame(cells), cells, 128)
    assert table.by_category
    assert [column.label for column in table.columns] == ["Retrieval", "Tracing", "Avg."]
    # Every compressed method ties, so nothing is bold and nothing is marked.
    assert not any("textbf" in cell or "^" in cell for row in table.rows for cell in row.cells)


def _write_variant(directory, task, method, budget, score, nll):
    data = _cell(task, "circuitkv", budget, score)
    data["config"]["method"] = method
    for sample in data["samples"]:
        sample["answer_nll"] = nll
    path = directory / "merged" / cell_filename(task, method, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_ablation_table_and_wording_follow_the_variants(write_results, tmp_path):
    directory = write_results(standard_scores())
    for task in ("niah_single_1", "niah_multikey_1"):
        _write_variant(directory, task, "circuitkv", 128, 40.0, 2.0)  # the full method, with NLL
        _write_variant(directory, task, "circuitkv-exact", 128, 40.0, 1.0)
        _write_variant(directory, task, "circuitkv+normalize=false", 128, 20.0, 3.0)
    config = tmp_path / "paper.yaml"
    config.write_text("\n".join([
        "title: a", "titles: {a: A title}", "main_budget: {cpu: 128}", "ablation:", "  rows:",
        "    - {label: full, phrase: The full method, method: circuitkv}",
        "    - {label: 'exact, $\\temp = {temperature}$', phrase: The exact expectation, method: circuitkv-exact}",
        "    - {label: no norm, phrase: Dropping the normalization, method: circuitkv+normalize=false}",
    ]))
    tex = paper.render(directory, tmp_path / "p", tmp_path / "f", config_path=config).read_text()
    assert r"exact, $\temp = \result{abl/1/param/temperature}$ & 40.0" in tex
    temperature = read_cell(next((directory / "merged").rglob("*circuitkv-exact*.json"))).config.method_params["temperature"]
    assert rf"\resultdef{{abl/1/param/temperature}}{{{temperature:g}}}" in tex
    section = between(tex, r"\subsection{Ablations}", r"\subsection{Efficiency}")
    assert r"The exact expectation lowers the answer NLL (\result{abl/1/nll} nats" in section
    assert r"Dropping the normalization raises the answer NLL" in section
    assert r"lowers the score to \result{abl/2/score}" in section
    assert r"no norm & 20.0 & 20.0 & 20.0 & 3.00$^{+}$ \\" in section
    assert r"\resultdef{abl/1/nlldiff/mean}{$-$1.00}" in tex
    assert r"\resultdef{abl/0/nll}{2.00}" in tex
    main_text = between(tex, r"\section{Introduction}", r"\subsection{Ablations}")
    assert "circuitkv-exact" not in main_text  # a variant is never a baseline


def test_ablation_label_field_must_be_a_parameter(write_results, tmp_path):
    directory = write_results(standard_scores())
    for task in ("niah_single_1", "niah_multikey_1"):
        _write_variant(directory, task, "circuitkv", 128, 40.0, 2.0)
        _write_variant(directory, task, "circuitkv-exact", 128, 40.0, 1.0)
    config = tmp_path / "paper.yaml"
    config.write_text("\n".join([
        "title: a", "titles: {a: A title}", "main_budget: {cpu: 128}", "ablation:", "  rows:",
        "    - {label: 'full, {walkers}', phrase: The full method, method: circuitkv}",
        "    - {label: exact, phrase: The exact expectation, method: circuitkv-exact}",
    ]))
    with pytest.raises(ValueError, match=r"ablation row circuitkv: \{walkers\} is not a parameter of its cells"):
        paper.render(directory, tmp_path / "p", tmp_path / "f", config_path=config)


def test_incomplete_ablation_is_said_not_hidden(write_results, tmp_path):
    tex = render(write_results(standard_scores()), tmp_path, "no-ablation")
    assert r"We did not run the ablation at the main budget of \result{budget/main} entries" in tex
    assert r"\label{tab:ablation}" not in tex


@pytest.mark.skipif(not (REPOSITORY / "data/results/cells").is_dir(), reason="no committed results")
def test_citations_match_bibliography(tmp_path):
    from pipeline.render.related import read_bibliography

    tex = render(REPOSITORY / "data/results", tmp_path, "citations")
    cited = {key.strip() for group in re.findall(r"\\cite[pt]?\{([^}]*)\}", tex) for key in group.split(",")}
    entries = set(read_bibliography(REPOSITORY / "templates/references.bib"))
    assert cited - entries == set(), "cited but not in references.bib"
    assert entries - cited == set(), "in references.bib but never cited"


def _efficiency_file(directory, results):
    path = directory / "efficiency" / "efficiency.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"device": "cpu", "device_name": "test-cpu", "results": results}))
    return directory


def _length(tokens, prefill):
    return {
        "tokens": tokens, "prefill_s": prefill,
        "scoring_s": {"CircuitKV-MC": prefill / 2, "SnapKV": prefill / 100},
        "peak_bytes": {"CircuitKV-MC": 2 * 2**20, "SnapKV": 2**20},
        "decode_s_per_token": {"full": 0.1, "B=128": 0.075},
        "kv_bytes": {"full": 4096, "B=128": 128},
    }


def test_efficiency_macros_quote_the_experiment_length(tmp_path):
    from pipeline.render.efficiency import efficiency_macros

    directory = _efficiency_file(tmp_path, [_length(1024, 2.0), _length(4096, 10.0)])
    facts, macros = efficiency_macros(directory, [4096])
    values = {key: str(value) for key, value, _ in macros}
    assert values["eff/tokens"] == "4096"
    assert values["eff/scoring/circuitkv"] == "50"
    assert values["eff/kv/b128"] == "3.1"
    assert values["eff/decode/b128"] == "$-$25"
    assert facts["table"]["lengths"] == [1024, 4096]
    assert [row["label"] for row in facts["table"]["rows"]] == ["CircuitKV-MC", "SnapKV"]


def test_efficiency_file_without_a_field_is_named(tmp_path):
    from pipeline.render.efficiency import efficiency_macros

    broken = _length(4096, 10.0)
    del broken["kv_bytes"]
    directory = _efficiency_file(tmp_path, [broken])
    with pytest.raises(ValueError, match=r"efficiency.json: results\[tokens=4096\] lacks a field"):
        efficiency_macros(directory, [4096])


def test_acknowledgements_only_in_accepted_mode(write_results, tmp_path):
    results = write_results(standard_scores())
    accepted_dir = tmp_path / "accepted"
    accepted_dir.mkdir()
    shutil.copyfile(REPOSITORY / "paper/authors.example.yaml", accepted_dir / "authors.yaml")
    accepted = paper.render(results, accepted_dir, tmp_path / "f1", mode="accepted").read_text()
    review = render(results, tmp_path, "review")
    assert r"\section*{Acknowledgements}" in accepted
    assert "Example Foundation" in accepted
    assert r"\section*{Acknowledgements}" not in review
    assert accepted.index("Acknowledgements") < accepted.index("Impact Statement")
