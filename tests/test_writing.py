"""The writing checklist: one passing and one failing example per rule, and the default paper passes."""

from pathlib import Path

import pytest

from pipeline.checks.writing import LintConfig, lint, load_lint_config

PREAMBLE = "\\documentclass{article}\n\\begin{document}\n"
END = "\n\\end{document}\n"


def rules(tmp_path: Path, body: str, config: LintConfig | None = None) -> list[tuple[int, str]]:
    path = tmp_path / "main.tex"
    path.write_text(PREAMBLE + body + END)
    return [(finding.line, finding.rule) for finding in lint(path, config or LintConfig())]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("The KV-cache grows.", "terminology"),
        ("The key-value (KV) cache grows. Later the key-value cache shrinks.", "terminology"),
        ("We run Longbench.", "terminology"),
        ("Interestingly, it works.", "filler"),
        ("Note that it works.", "filler"),
        ("It improves significantly.", "vague-claim"),
        ("It scores 12 points.", "number"),
        ("\\begin{figure}\\caption{One sentence. Two sentences.}\\end{figure}", "float-label"),
        ("\\begin{figure}\\caption{Only one sentence.}\\label{fig:a}\\end{figure}", "float-caption"),
        ("\\begin{table}\\begin{tabular}{l}x\\end{tabular}\\caption{Scores. Bold is best.}\\label{tab:a}"
         "\\end{table}", "table-caption-above"),
        ("\\vspace{-2pt}A\\vspace{-2pt}B\\vspace{-2pt}C", "negative-vspace"),
    ],
)
def test_rule_flags_its_violation(tmp_path, body, rule):
    assert (3, rule) in rules(tmp_path, body)


@pytest.mark.parametrize(
    "body",
    [
        "The key-value (KV) cache grows, and the KV cache of CircuitKV on LongBench and RULER too.",
        "It improves significantly, by \\result{diff/x} points.",
        "It scores \\result{avg/x} points with $\\temp = 1$ (\\Cref{eq:score}).",
        "\\Cref{tab:a}. \\begin{table}\\caption{Scores. Bold is best.}\\label{tab:a}"
        "\\begin{tabular}{l}12\\end{tabular}\\end{table}",
        "\\Cref{fig:a}. \\begin{figure}\\caption{What is shown. What to notice.}\\label{fig:a}\\end{figure}",
        "\\vspace{-2pt}A\\vspace{-2pt}B",
    ],
)
def test_clean_text_passes(tmp_path, body):
    assert rules(tmp_path, body) == []


def test_project_terms_extend_the_list(tmp_path):
    config_path = tmp_path / "lint.yaml"
    config_path.write_text("terms: [SmolLM2]\nmax_negative_vspace: 0\n")
    config = load_lint_config(config_path)
    assert (3, "terminology") in rules(tmp_path, "We use smollm2.", config)
    assert (3, "negative-vspace") in rules(tmp_path, "\\vspace{-1pt}A", config)


def test_bad_config_is_named(tmp_path):
    config_path = tmp_path / "lint.yaml"
    config_path.write_text("terms: SmolLM2\n")
    with pytest.raises(ValueError, match="lint.yaml: terms must be a list"):
        load_lint_config(config_path)


def test_default_paper_passes(default_paper):
    assert [str(finding) for finding in lint(default_paper / "main.tex")] == []


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("\\paragraph{Contributions.}\n\\begin{itemize}\n\\item The walks are computed once.\n\\end{itemize}",
         "passive-voice"),
        ("\\paragraph{Contributions.}\n\\begin{itemize}\n\\item The score is shown to work.\n\\end{itemize}",
         "passive-voice"),
        ("A new method is proposed here.", "passive-voice"),
        ("As Equation~\\ref{eq:score} shows.\n\\begin{equation}x\\label{eq:score}\\end{equation}",
         "equation-reference"),
        ("\\begin{figure}\\caption{One. Two.}\\label{fig:alone}\\end{figure}", "float-reference"),
    ],
)
def test_voice_and_reference_rules_flag_violations(tmp_path, body, rule):
    assert rule in [found for _, found in rules(tmp_path, body)]


@pytest.mark.parametrize(
    "body",
    [
        "\\paragraph{Contributions.}\n\\begin{itemize}\n\\item We compute the walks once; the method is efficient."
        "\n\\end{itemize}",
        "\\begin{equation}x\\label{eq:score}\\end{equation}\nAs \\Cref{eq:score} shows.",
        "\\Cref{fig:a} shows it.\n\\begin{figure}\\caption{One. Two.}\\label{fig:a}\\end{figure}",
    ],
)
def test_voice_and_reference_rules_pass_clean_text(tmp_path, body):
    assert rules(tmp_path, body) == []


def test_acronym_must_be_defined_at_first_use(tmp_path):
    assert (3, "acronym") in rules(tmp_path, "The NLL falls. Later, the negative log-likelihood (NLL) rises.")
    assert rules(tmp_path, "The negative log-likelihood (NLL) falls, and the NLL rises.") == []


def test_table_caption_states_metric_and_bold(tmp_path):
    table = ("\\Cref{tab:a}. \\begin{table}\\caption{CAPTION}\\label{tab:a}"
             "\\begin{tabular}{l}1\\end{tabular}\\end{table}")
    found = [rule for _, rule in rules(tmp_path, table.replace("CAPTION", "Results here. They are good."))]
    assert "table-caption-bold" in found
    assert "table-caption-metric" in found
    assert rules(tmp_path, table.replace("CAPTION", "Mean score in percent. Bold is best.")) == []


NOTATION_PREAMBLE = "\\documentclass{article}\n\\newcommand{\\temp}{T}\n\\newcommand{\\score}{s}\n\\begin{document}\n"


def notation_rules(tmp_path: Path, body: str, preamble: str = NOTATION_PREAMBLE) -> list[tuple[int, str]]:
    path = tmp_path / "main.tex"
    path.write_text(preamble + body + END)
    return [(finding.line, finding.rule) for finding in lint(path, LintConfig())]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Walks run with temperature $\\temp$, and $T = 2$ flattens them.", (5, "notation-symbol")),
        ("We set $\\temp$ once.\nLater, the temperature $\\temp$ matters.", (5, "definition-before-use")),
        ("As \\Cref{eq:a} shows.\n\\begin{equation}x\\label{eq:a}\\end{equation}", (5, "forward-reference")),
    ],
)
def test_notation_rules_flag_violations(tmp_path, body, expected):
    assert expected in notation_rules(tmp_path, body)


def test_notation_rules_pass_clean_text(tmp_path):
    body = ("A walk runs with temperature $\\temp$ and gives each token the score $\\score_j$.\n"
            "\\begin{equation}\\score_j = \\mathbf{1}[x_t = j]\\label{eq:a}\\end{equation}\n"
            "\\Cref{eq:a} uses $\\temp$ and the words $\\mathrm{Temp}$.")
    assert notation_rules(tmp_path, body) == []


def test_each_macro_has_one_meaning(tmp_path):
    clash = NOTATION_PREAMBLE.replace("\\newcommand{\\score}{s}", "\\newcommand{\\score}{T}")
    assert (3, "notation-meaning") in notation_rules(tmp_path, "The temperature $\\temp$.", clash)
    twice = NOTATION_PREAMBLE + "\\renewcommand{\\temp}{\\tau}\n"
    assert (5, "notation-meaning") in notation_rules(tmp_path, "The temperature $\\temp$.", twice)


def test_notation_is_configurable(tmp_path):
    config_path = tmp_path / "lint.yaml"
    config_path.write_text("notation:\n  score: [rank]\nacronyms: [SSM]\n")
    config = load_lint_config(config_path)
    path = tmp_path / "main.tex"
    path.write_text(NOTATION_PREAMBLE + "The score $\\score$ and an SSM." + END)
    found = {(finding.line, finding.rule) for finding in lint(path, config)}
    assert found == {(5, "definition-before-use"), (5, "acronym")}


def write_build(folder: Path, figure_page: int, line_pages: dict[int, int]) -> Path:
    """Write the files the float-page rule reads: a label's page in main.aux, lines' pages in synctex, the digest."""
    import gzip
    import hashlib

    build = folder / "build"
    build.mkdir(exist_ok=True)
    (build / "main.aux").write_text(f"\\newlabel{{fig:a}}{{{{1}}{{{figure_page}}}{{A}}{{figure.1}}{{}}}}\n")
    records = ["SyncTeX Version:1", f"Input:1:{folder / 'main.tex'}", "Content:"]
    for page in sorted(set(line_pages.values())):
        records += [f"{{{page}", *[f"h1,{line}:0,0:1,1,0" for line, on in line_pages.items() if on == page],
                    f"}}{page}"]
    with gzip.open(build / "main.synctex.gz", "wt") as stream:
        stream.write("\n".join(records) + "\n")
    digest = hashlib.sha256((folder / "main.tex").read_bytes()).hexdigest()
    (build / "main.tex.sha256").write_text(digest + "\n")
    return build


@pytest.mark.parametrize(("reference_page", "flagged"), [(1, False), (2, True)])
def test_float_is_referred_to_before_or_on_its_page(tmp_path, reference_page, flagged):
    path = tmp_path / "main.tex"
    path.write_text(PREAMBLE + "\\begin{figure}\\caption{One. Two.}\\label{fig:a}\\end{figure}\nText.\n"
                    "\\Cref{fig:a} shows it." + END)
    build = write_build(tmp_path, 1, {3: 1, 4: 1, 5: reference_page})
    found = [(finding.line, finding.rule) for finding in lint(path, LintConfig(), build_dir=build)]
    assert ((3, "float-page") in found) is flagged


def test_float_page_rule_needs_a_current_build(tmp_path):
    path = tmp_path / "main.tex"
    path.write_text(PREAMBLE + "Text." + END)
    with pytest.raises(ValueError, match="main.aux not found; run `make paper`"):
        lint(path, LintConfig(), build_dir=tmp_path / "build")
    build = write_build(tmp_path, 1, {3: 1})
    path.write_text(PREAMBLE + "Other text." + END)
    with pytest.raises(ValueError, match="was built from another version of .*main.tex; run `make paper`"):
        lint(path, LintConfig(), build_dir=build)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("acronyms: [SSM\n", "lint.yaml: invalid YAML at line 2"),
        ("- terms\n", "lint.yaml: expected a mapping with the fields"),
        ("colour: red\n", "lint.yaml: unknown field colour"),
    ],
)
def test_malformed_config_is_named(tmp_path, content, message):
    config_path = tmp_path / "lint.yaml"
    config_path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_lint_config(config_path)
