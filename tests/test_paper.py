"""Render and build the paper from fixture results; check its table, claims, build errors and anonymity."""

import json
import re
import shutil
import subprocess

import pytest
from conftest import add_method_seed, standard_scores

from pipeline.checks.anonymity import check_anonymity
from pipeline.render import build, claims, paper

pytestmark = pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (run `make tex`)")


def full_text(pdf) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def pdf_text(pdf) -> str:
    """Text of the left columns, then of the right columns, each with its layout kept."""
    columns = []
    for x in (0, 306):
        command = ["pdftotext", "-layout", "-x", str(x), "-y", "0", "-W", "306", "-H", "792", str(pdf), "-"]
        columns.append(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return "\n".join(columns)


def render_and_build(results, tmp_path, name="paper"):
    paper_dir = tmp_path / name
    paper.render(results, paper_dir, tmp_path / f"{name}-figures")
    return paper_dir, build.build(paper_dir)


def table_row(text: str, label: str, budget: str) -> list[str]:
    for line in text.splitlines():
        words = line.split()
        if words and words[0].isdigit():  # the review mode's line number
            words = words[1:]
        if words and " ".join(words).startswith(label) and budget in words:
            return words
    raise AssertionError(f"row {label} {budget} not found in:\n{text}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One fixture paper built once for the module."""
    from conftest import _cell

    tmp_path = tmp_path_factory.mktemp("built")
    results = tmp_path / "results"
    for (task, method, budget), score in standard_scores().items():
        from pipeline.experiments.schema import cell_filename

        path = results / "merged" / cell_filename(task, method, budget)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_cell(task, method, budget, score)))
    paper_dir, pdf = render_and_build(results, tmp_path)
    return results, paper_dir, pdf


def test_pdf_is_letter_and_anonymous(built):
    _, _, pdf = built
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "612 x 792 pts" in info
    assert "Anonymous Authors" in info
    text = full_text(pdf)
    assert "Anonymous Authors" in text
    assert "??" not in text


def main_table_row(text: str, label: str) -> list[str]:
    """The row of Table 1 (main budget, no budget column) that starts with ``label``."""
    start = text.index("Table 1. Main results")
    for line in text[start:].splitlines()[:40]:  # the caption, then the rows
        if line.strip().startswith(label):
            return line.split()
    raise AssertionError(f"Table 1 row {label} not found in:\n{text[start:start + 2000]}")


def test_table_shows_fixture_scores(built):
    assert main_table_row(pdf_text(built[2]), "SnapKV")[-3:] == ["60.0", "60.0", "60.0"]
    appendix = full_text(built[2])
    assert table_row(appendix, "SnapKV", "128")[-3:] == ["60.0", "60.0", "60.0"]
    assert table_row(appendix, "CircuitKV", "512")[-3:] == ["60.0", "60.0", "60.0"]


def test_best_compressed_score_is_bold(built):
    tex = (built[1] / "main.tex").read_text()
    assert r"SnapKV & 128 & \textbf{60.0}" in tex
    assert r"Full cache & all & 90.0" in tex


def test_result_macros_name_their_source(built):
    tex = (built[1] / "main.tex").read_text()
    assert "prompt-circuitkv-b128.json: mean_score\n\\resultdef{niah_single_1/circuitkv/b128}{40.0}" in tex


def test_edited_result_changes_table_cell(built, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(built[0], results)
    path = results / "merged" / "niah_multikey_1" / "prompt-circuitkv-b128.json"
    data = json.loads(path.read_text())
    data["mean_score"] = 77.7
    for sample in data["samples"]:
        sample["score"] = 77.7
    path.write_text(json.dumps(data))

    _, pdf = render_and_build(results, tmp_path, "edited")
    row = " ".join(main_table_row(pdf_text(pdf), "CircuitKV (Ours)"))
    assert "77.7" in row
    assert "58.9" in row  # the average (77.7 + 40.0) / 2 = 58.85 follows


def test_claims_follow_the_results(write_results, tmp_path):
    losing = paper.render(write_results(standard_scores(40.0, 60.0), tmp_path / "lose"), tmp_path / "p1", tmp_path / "f1")
    winning = paper.render(write_results(standard_scores(60.0, 40.0), tmp_path / "win"), tmp_path / "p2", tmp_path / "f2")

    def abstract(path):
        text = path.read_text()
        return text[text.index(r"\begin{abstract}") : text.index(r"\end{abstract}")]

    assert "so it falls behind it" in abstract(losing)
    assert "so it improves on it" in abstract(winning)
    assert "it falls behind the strongest baseline" in losing.read_text()
    assert "it improves on the strongest baseline" in winning.read_text()


def test_latex_error_reports_file_and_line(built, tmp_path):
    paper_dir = tmp_path / "broken"
    shutil.copytree(built[1], paper_dir, ignore=shutil.ignore_patterns("build"))
    main = paper_dir / "main.tex"
    lines = main.read_text().splitlines()
    position = lines.index(r"\section{Introduction}") + 1
    lines.insert(position, r"\undefinedcommandhere")
    main.write_text("\n".join(lines) + "\n")

    with pytest.raises(build.BuildError) as error:
        build.build(paper_dir)
    message = str(error.value)
    assert f"main.tex:{position + 1}: Undefined control sequence" in message
    assert r"\undefinedcommandhere" in message


def test_anonymity_clean_then_planted_name_found(built, tmp_path):
    authors = tmp_path / "authors.yaml"
    authors.write_text("authors:\n  - name: Grace Placeholder\n    email: grace@example.org\n")
    _, paper_dir, pdf = built
    assert check_anonymity(paper_dir, pdf, authors).clean

    planted = tmp_path / "planted"
    shutil.copytree(paper_dir, planted)
    main = planted / "main.tex"
    main.write_text(main.read_text().replace("We propose CircuitKV", "Grace Placeholder proposes CircuitKV"))
    report = check_anonymity(planted, planted / "build" / "main.pdf", authors)
    assert not report.clean
    assert any("main.tex" in finding.location for finding in report.findings)


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no merged result files found; run `make results`"):
        paper.render(tmp_path / "nothing", tmp_path / "p", tmp_path / "f")


def test_holes_need_a_draft_and_show_in_red(write_results, tmp_path):
    scores = standard_scores()
    hole = next(key for key in scores if key[1] == "snapkv")
    del scores[hole]
    directory = write_results(scores)
    task, method, budget = hole
    (directory / "merged" / "missing.json").write_text(json.dumps([{
        "task": task, "context_tokens": None, "protocol": "prompt", "method": method, "budget": budget,
        "budget_ratio": None, "method_seed": None, "missing_shards": ["0-1"],
    }]))
    with pytest.raises(paper.PaperError, match=r"missing.json: the merged results have 1 missing cells.*DRAFT=1"):
        paper.render(directory, tmp_path / "p", tmp_path / "f")

    tex = paper.render(directory, tmp_path / "p", tmp_path / "f", draft=True).read_text()
    assert r"\newcommand{\missingvalue}{\textcolor{red}{\rule{0.8em}{0.8em}}}" in tex
    assert r"\resultdef{draft/holes}{1}" in tex
    assert "Draft with missing results (cells missing: \\result{draft/holes})" in tex
    assert r"\@ifundefined{result@#1}{\missingvalue}" in tex  # a value the holes would give prints red, too
    snapkv_row = next(line for line in tex.splitlines() if line.startswith("SnapKV &"))
    assert r"\missingvalue" in snapkv_row


def test_task_the_model_fails_is_flagged(write_results, tmp_path):
    scores = standard_scores()
    scores[("niah_multikey_1", "full", None)] = 15.0
    tex = paper.render(write_results(scores), tmp_path / "p", tmp_path / "f").read_text()
    assert r"On MK-NIAH-1 the full cache itself scores only \result{niah_multikey_1/full/all}" in tex
    assert "On S-NIAH-1 the full cache itself" not in tex


def test_rouge_task_is_never_called_failed(write_results, tmp_path):
    scores = standard_scores()
    scores[("multi_news", "full", None)] = 13.0
    for method in ("streamingllm", "snapkv", "circuitkv"):
        for budget in (128, 512):
            scores[("multi_news", method, budget)] = 12.0
    tex = paper.render(write_results(scores), tmp_path / "p", tmp_path / "f").read_text()
    assert "On MultiNews the full cache itself" not in tex


def test_method_seeds_are_averaged_in_tables(write_results, tmp_path):
    from pipeline.experiments.schema import read_cell
    from pipeline.render.results import result_macros, results_frame

    directory = write_results(standard_scores())
    add_method_seed(directory, "niah_single_1/prompt-circuitkv-b128.json", seed=1, score=60.0)

    paths = sorted((directory / "merged").rglob("*.json"))
    frame = results_frame([(path, read_cell(path)) for path in paths])
    row = frame[(frame.task == "niah_single_1") & (frame.method == "circuitkv") & (frame.budget == 128)].iloc[0]
    assert row.score == 50.0
    assert row.num_seeds == 2
    assert row.score_std == pytest.approx(14.142, abs=1e-3)
    sources = {key: str(source) for key, _, source in result_macros(frame)}
    assert sources["niah_single_1/circuitkv/b128"].startswith("mean over 2 method seeds")
    values = {key: str(value) for key, value, _ in result_macros(frame)}
    assert values["seedstd/circuitkv/max"] == "14.1"

    tex = paper.render(directory, tmp_path / "p", tmp_path / "f").read_text()
    assert r"so it ran with \result{seeds/circuitkv} seeds" in tex
    assert "\\resultdef{seeds/circuitkv}{2}" in tex
    assert r"at most \result{seedstd/circuitkv/max} points" in tex


def test_sweep_heatmap_in_appendix_only(write_results, tmp_path):
    from test_summary import write_sweep

    directory = write_results(standard_scores())
    tex = paper.render(directory, tmp_path / "plain", tmp_path / "f0").read_text()
    assert "needle_sweep.pdf" not in tex

    for method, budget in (("full", None), ("snapkv", 128), ("circuitkv", 128)):
        write_sweep(directory, method, budget, {(1024, 0): 100.0, (1024, 100): 0.0, (2048, 0): 50.0})
    tex = paper.render(directory, tmp_path / "p", tmp_path / "f").read_text()
    assert r"\includegraphics[width=\textwidth]{figures/needle_sweep.pdf}" in tex
    assert tex.index("needle_sweep.pdf") > tex.index(r"\appendix")
    assert (tmp_path / "p" / "figures" / "needle_sweep.pdf").is_file()
    tables = re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, flags=re.DOTALL)
    assert tables and not any("NIAH sweep" in table for table in tables)


def test_tied_baselines_are_named_together(write_results, tmp_path):
    scores = standard_scores()
    for task in ("niah_single_1", "niah_multikey_1"):
        scores[(task, "snapkv", 128)] = scores[(task, "streamingllm", 128)]
    tex = paper.render(write_results(scores), tmp_path / "p", tmp_path / "f").read_text()
    assert "the strongest baseline on average, tied with SnapKV, at" in tex


def test_full_cache_score_between_weak_and_informative(write_results, tmp_path):
    scores = standard_scores()
    scores[("niah_multikey_1", "full", None)] = 45.0
    tex = paper.render(write_results(scores), tmp_path / "p", tmp_path / "f").read_text()
    assert "the full cache itself scores only" not in tex


def test_main_table_ties_not_bold(write_results, tmp_path):
    from pipeline.experiments.schema import read_cell
    from pipeline.render.results import main_table, results_frame

    scores = standard_scores()
    for method in ("streamingllm", "snapkv", "circuitkv"):
        scores[("niah_single_1", method, 128)] = 0.0
    directory = write_results(scores)
    frame = results_frame([(path, read_cell(path)) for path in sorted((directory / "merged").rglob("*.json"))])
    labels, rows = main_table(frame)
    column = labels.index("S-NIAH-1")
    at_128 = [row.cells[column] for row in rows if row.budget == "128"]
    assert at_128 == ["0.0", "0.0", "0.0"]
    at_512 = [row.cells[column] for row in rows if row.budget == "512"]
    assert sum("textbf" in cell for cell in at_512) == 1


def test_abstract_adds_the_first_decided_budget_when_the_main_one_ties(write_results, tmp_path):
    scores = standard_scores()
    for task in ("niah_single_1", "niah_multikey_1"):
        for method in ("streamingllm", "snapkv", "circuitkv"):
            scores[(task, method, 128)] = 0.0
    tex = paper.render(write_results(scores), tmp_path / "p", tmp_path / "f").read_text()
    abstract = tex[tex.index(r"\begin{abstract}") : tex.index(r"\end{abstract}")]
    assert r"with \result{budget/b128} KV entries per layer and head" in abstract
    assert "so it matches them within our confidence intervals" in abstract
    assert "StreamingLLM and SnapKV, which tie as the strongest baselines" in abstract
    assert r"At \result{budget/b512} entries, it falls behind SnapKV" in abstract


def test_answer_likelihood_paragraph_follows_the_nll(write_results, tmp_path):
    directory = write_results(standard_scores())
    for path in (directory / "merged").rglob("*.json"):
        data = json.loads(path.read_text())
        method, budget = data["config"]["method"], data["config"]["budget"]
        # CircuitKV has the lowest NLL at 128 and the highest at 512.
        nll = {"full": 0.5, "circuitkv": 1.0 if budget == 128 else 3.0}.get(method, 2.0)
        for sample in data["samples"]:
            sample["answer_nll"] = nll
        path.write_text(json.dumps(data))

    tex = paper.render(directory, tmp_path / "p", tmp_path / "f").read_text()
    assert r"with the full cache it averages \result{nll/full/all} nats" in tex
    assert r"At a budget of \result{budget/b128}, CircuitKV averages \result{nll/circuitkv/b128} nats" in tex
    assert "Its paired difference to every baseline has an interval below zero on MK-NIAH-1 and S-NIAH-1" in tex
    assert "above zero on MK-NIAH-1 and S-NIAH-1" in tex
    table = tex[tex.index(r"\label{tab:main}") : tex.index(r"\end{tabular}", tex.index(r"\label{tab:main}"))]
    assert r"CircuitKV (Ours) & 40.0$^{-}$ & 40.0$^{-}$ & 40.0$^{-}$ & \textbf{1.00}$^{-}$ \\" in table
    assert r"Full cache & 90.0 & 90.0 & 90.0 & 0.50 \\" in table
    _, macros = claims.likelihoods(*_frame_and_cells(directory))
    values = {key: str(value) for key, value, _ in macros}
    assert values["nll/circuitkv/b128"] == "1.00"
    assert values["nll/full/all"] == "0.50"


def _frame_and_cells(directory):
    from pipeline.experiments.schema import read_cell
    from pipeline.render.results import results_frame

    cells = [(path, read_cell(path)) for path in sorted((directory / "merged").rglob("*.json"))]
    return results_frame(cells), cells
