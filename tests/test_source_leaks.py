"""Tests for pipeline.checks.source_leaks on small TeX and .bib files written per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.checks.anonymity import AnonymityCheckError, list_source_files, load_identity_terms
from pipeline.checks.source_leaks import (
    check_bibliography,
    check_source_leaks,
    classify_url,
    parse_bib_entries,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def located(findings, check: str) -> list[str]:
    """Return the locations of the findings of one check, in report order."""
    return [finding.location for finding in findings if finding.check == check]


# --- Acknowledgements ------------------------------------------------------------


@pytest.mark.parametrize(
    "heading",
    [
        r"\section*{Acknowledgements}",
        r"\section{Acknowledgments}",
        r"\subsection*{ACKNOWLEDGEMENT}",
        r"\begin{acknowledgements}",
    ],
)
def test_acknowledgements_heading(tmp_path, heading):
    tex = write(tmp_path, "main.tex", f"\\begin{{document}}\nText.\n{heading}\nNone.\n")

    findings = check_source_leaks([tex])

    assert located(findings, "acknowledgements") == [f"{tex}:3"]


def test_funding_phrase_across_line_break(tmp_path):
    tex = write(tmp_path, "main.tex", "Intro.\nThis work was supported\nby the Example Fund.\n")

    findings = check_source_leaks([tex])

    assert located(findings, "acknowledgements") == [f"{tex}:2"]
    assert "supported by" in findings[0].message


@pytest.mark.parametrize(
    "sentence",
    ["We~thank the reviewers.", "Funded by grant No. 42.", "We gratefully acknowledge help."],
)
def test_funding_phrases(tmp_path, sentence):
    tex = write(tmp_path, "main.tex", f"Intro.\n\n{sentence}\n")

    assert located(check_source_leaks([tex]), "acknowledgements")[0] == f"{tex}:3"


def test_acknowledgements_not_in_submission_mode(tmp_path):
    tex = write(tmp_path, "main.tex", "\\section*{Acknowledgements}\nWe thank Ada.\n")

    assert located(check_source_leaks([tex], review=False), "acknowledgements") == []


def test_acknowledgements_skip_comments_and_styles(tmp_path):
    tex = write(tmp_path, "main.tex", "Text.\n% We thank Ada.\n\\section{Method}\n")
    sty = write(tmp_path, "style.sty", "\\newcommand{\\ack}{This work was supported by}\n")

    findings = check_source_leaks([tex, sty])

    assert located(findings, "acknowledgements") == []
    # The comment is still reported, by the hidden-text check.
    assert located(findings, "hidden-text") == [f"{tex}:2"]


# --- URLs --------------------------------------------------------------------------


def test_url_github_user(tmp_path):
    tex = write(tmp_path, "main.tex", "Code.\nSee \\url{https://github.com/adaexample/kv}.\n")

    findings = check_source_leaks([tex])

    assert located(findings, "url") == [f"{tex}:2"]
    assert "github.com" in findings[0].message


def test_url_personal_page_in_href(tmp_path):
    tex = write(tmp_path, "main.tex", "A\nB \\href{https://cs.example.edu/~ada/data}{data}.\n")

    findings = check_source_leaks([tex])

    assert located(findings, "url") == [f"{tex}:2"]
    assert "personal page" in findings[0].message


def test_url_bare_unknown_host(tmp_path):
    tex = write(tmp_path, "main.tex", "A\nB\nData at https://ada-lab.net/kv.\n")

    assert located(check_source_leaks([tex]), "url") == [f"{tex}:3"]


def test_url_scheme_less_code_host(tmp_path):
    tex = write(tmp_path, "main.tex", "Weights: huggingface.co/adaexample/model.\n")

    assert located(check_source_leaks([tex]), "url") == [f"{tex}:1"]


def test_url_neutral_hosts_not_reported(tmp_path):
    tex = write(
        tmp_path,
        "main.tex",
        "See \\url{https://arxiv.org/abs/2309.17453} and https://doi.org/10.1000/182,\n"
        "\\href{https://openreview.net/forum?id=abc}{forum},\n"
        "\\url{https://anonymous.4open.science/r/kv-1234}.\n",
    )

    assert check_source_leaks([tex]) == []


def test_url_openreview_profile(tmp_path):
    tex = write(tmp_path, "main.tex", "\\url{https://openreview.net/profile?id=~Ada_Example1}\n")

    assert located(check_source_leaks([tex]), "url") == [f"{tex}:1"]


def test_url_in_bib_fields(tmp_path):
    bib = write(
        tmp_path,
        "refs.bib",
        "@misc{kv,\n"
        "  title = {KV},\n"
        "  doi = {https://www.example-publisher.com/10.1/kv},\n"
        "  howpublished = {\\url{https://ada-lab.net/kv}},\n"
        "  url = {https://arxiv.org/abs/1234.5678},\n"
        "}\n",
    )

    assert located(check_source_leaks([bib]), "url") == [f"{bib}:4"]


def test_classify_url_cases():
    assert classify_url("https://github.com/") is None
    assert classify_url("https://proceedings.mlr.press/v202/x.html") is None
    assert classify_url("export.arxiv.org/abs/1") is None
    assert classify_url("https://www.example.edu/people/ada") == "link to a personal page"
    assert "gitlab.com" in classify_url("https://gitlab.com/ada/kv")
    assert classify_url("mailto:anon.email@domain.com") is None
    assert "without a web host" in classify_url("file:///home/ada/paper/fig.pdf")


# --- ORCID ---------------------------------------------------------------------------


def test_orcid_bare_and_as_url(tmp_path):
    tex = write(
        tmp_path,
        "main.tex",
        "A\nORCID 0000-0002-1825-0097.\n\\url{https://orcid.org/0000-0001-5109-3700}\n",
    )

    findings = check_source_leaks([tex])

    assert located(findings, "orcid") == [f"{tex}:2", f"{tex}:3"]
    # The ORCID link is reported once, as an ORCID iD and not also as a URL.
    assert located(findings, "url") == []


def test_orcid_ignores_longer_numbers(tmp_path):
    tex = write(tmp_path, "main.tex", "Serial 10000-0002-1825-0097 and 0000-0002-1825-00971.\n")

    assert located(check_source_leaks([tex]), "orcid") == []


# --- Self-citation -------------------------------------------------------------------


def test_self_citation_across_line_break(tmp_path):
    tex = write(
        tmp_path,
        "main.tex",
        "Intro.\nAs shown in our\nprevious work~\\citep{ada2023kv}, walks help.\n",
    )

    findings = check_source_leaks([tex])

    assert located(findings, "self-citation") == [f"{tex}:2"]
    assert "our previous work" in findings[0].message


@pytest.mark.parametrize(
    "sentence",
    [
        r"We previously showed this \cite{a}.",
        r"\citet{a} is OUR EARLIER PAPER on caches.",
        r"As we showed in \citet[Sec.~2]{a}, it works.",
        r"We have shown in \cite{a} that it works.",
    ],
)
def test_self_citation_phrases(tmp_path, sentence):
    tex = write(tmp_path, "main.tex", f"First.\n{sentence}\n")

    assert located(check_source_leaks([tex]), "self-citation") == [f"{tex}:2"]


def test_self_citation_needs_cite_in_same_sentence(tmp_path):
    tex = write(
        tmp_path,
        "main.tex",
        "Our previous work used walks. Others, e.g. \\citet{b}, did not.\n\n"
        "In our prior work we tried it.\n\\cite{c} tried it too.\n",
    )

    assert located(check_source_leaks([tex]), "self-citation") == []


def test_self_citation_in_third_person_not_reported(tmp_path):
    tex = write(tmp_path, "main.tex", "\\citet{ada2023kv} showed in previous work that walks help.\n")

    assert check_source_leaks([tex]) == []


# --- Hidden text ---------------------------------------------------------------------


def test_iffalse_block_with_nested_conditional(tmp_path):
    tex = write(
        tmp_path,
        "main.tex",
        "Text.\n\\iffalse\nOld text.\n\\ifx\\a\\b x\\fi\n\\fi\n\\iffalse draft \\fi\n",
    )

    findings = check_source_leaks([tex])

    assert located(findings, "hidden-text") == [f"{tex}:2", f"{tex}:6"]


def test_iff_symbol_is_not_a_conditional(tmp_path):
    tex = write(tmp_path, "main.tex", "\\iffalse\n$a \\iff b$\n\\fi\nafter\n\\iffalse x\\fi\n")

    assert located(check_source_leaks([tex]), "hidden-text") == [f"{tex}:1", f"{tex}:5"]


def test_comment_environment(tmp_path):
    tex = write(tmp_path, "main.tex", "A\n\\begin{comment}\nOld.\n\\end{comment}\n")

    assert located(check_source_leaks([tex]), "hidden-text") == [f"{tex}:2"]


def test_commented_out_block_reported_once(tmp_path):
    tex = write(
        tmp_path,
        "main.tex",
        "Text.\n% An older version of this paragraph,\n%   written for the workshop.\n"
        "%\\section{Extra}\n\nMore text.\n",
    )

    findings = check_source_leaks([tex])

    assert located(findings, "hidden-text") == [f"{tex}:2"]
    assert "3 lines" in findings[0].message
    assert "stripped" in findings[0].fix


def test_commented_out_command_above_code(tmp_path):
    tex = write(tmp_path, "main.tex", "% \\author{Ada Example}\n\\begin{document}\n")

    assert located(check_source_leaks([tex]), "hidden-text") == [f"{tex}:1"]


def test_trailing_comment_with_text(tmp_path):
    tex = write(tmp_path, "main.tex", "A sentence. % TODO ask Ada about this\n\\end{document}\n")

    assert located(check_source_leaks([tex]), "hidden-text") == [f"{tex}:1"]


def test_notes_and_escaped_percent_not_reported(tmp_path):
    tex = write(
        tmp_path,
        "main.tex",
        "% data/results/cells/a.json: mean_score\n"
        "\\resultdef{a/b}{0.5}\n"
        "% Notation, declared once.\n"
        "\\newcommand{\\attn}{A}\n"
        "It keeps 50\\% of the cache.\\\\\n"
        "\\hbox{a}%\n"
        "%%%%%%%%%%\n"
        "% ------\n",
    )

    assert check_source_leaks([tex]) == []


def test_note_above_code_with_leak_text_reported(tmp_path):
    tex = write(tmp_path, "main.tex", "Text.\n% We thank Ada for the code.\n\\section{Method}\n")

    assert located(check_source_leaks([tex]), "hidden-text") == [f"{tex}:2"]


def test_comment_after_escaped_backslash(tmp_path):
    # "\\" ends a line, so the "%" after it starts a comment.
    tex = write(tmp_path, "main.tex", "a\\\\% hidden remark here\nb\n")

    assert located(check_source_leaks([tex]), "hidden-text") == [f"{tex}:1"]


def test_style_file_comments_ignored(tmp_path):
    sty = write(tmp_path, "icml.sty", "% This style prints the author block.\n%\\def\\x{y}\n\n")

    assert check_source_leaks([sty]) == []


# --- Inputs --------------------------------------------------------------------------


def test_missing_file_raises(tmp_path):
    with pytest.raises(AnonymityCheckError, match="cannot read"):
        check_source_leaks([tmp_path / "absent.tex"])


def test_other_suffixes_skipped(tmp_path):
    log = write(tmp_path, "main.log", "see https://ada.example.org\n")

    assert check_source_leaks([log]) == []


def test_default_paper_is_clean(default_paper):
    sources = default_paper
    files = list_source_files(sources)
    bbl = sources / "build" / "main.bbl"
    if bbl.is_file():
        files.append(bbl)

    findings = check_source_leaks(files, review=True)

    assert [finding.format() for finding in findings] == []


# --- Bibliography ---------------------------------------------------------------------

AUTHORS_YAML = """\
authors:
  - name: Ada Example
  - name: Zoë Müller-Placeholder
"""

BIB = """\
@inproceedings{ada2023kv,
  author = {Example, Ada and Smith, Bob},
  title = {Random Walks over {KV} Caches},
  year = {2023},
}

@article{mueller2022,
  author = "M{\\"u}ller-Placeholder, Zo{\\"e}",
  title = {Sinks},
}

@misc{other2024,
  author = {Other, Olga},
  title = {Our Previous Work Revisited},
}
"""


@pytest.fixture
def terms(tmp_path):
    return load_identity_terms(write(tmp_path, "authors.yaml", AUTHORS_YAML))


def test_parse_bib_entries(tmp_path):
    entries = parse_bib_entries(BIB)

    assert [(entry.key, entry.line) for entry in entries] == [
        ("ada2023kv", 1),
        ("mueller2022", 7),
        ("other2024", 12),
    ]
    assert entries[1].authors == 'M{\\"u}ller-Placeholder, Zo{\\"e}'


def test_bibliography_self_cited_work(tmp_path, terms):
    bib = write(tmp_path, "refs.bib", BIB)
    tex = write(
        tmp_path,
        "main.tex",
        "Intro.\n"
        "In our previous work \\citep{other2024, ada2023kv} we used walks.\n"
        "\\citet{mueller2022} studied sinks.\n"
        "As we showed in\n\\citet{mueller2022}, sinks matter.\n"
        "Our earlier paper \\citep{other2024} did not.\n",
    )

    findings = check_bibliography(bib, [tex], terms)

    assert [(f.check, f.location) for f in findings] == [
        ("self-cited-work", f"{tex}:2"),
        ("self-cited-work", f"{tex}:4"),
    ]
    assert "ada2023kv" in findings[0].message
    assert f"{bib}:1" in findings[0].message
    assert "mueller2022" in findings[1].message
    assert "third person" in findings[0].fix


def test_bibliography_without_terms(tmp_path):
    bib = write(tmp_path, "refs.bib", BIB)
    tex = write(tmp_path, "main.tex", "In our previous work \\citep{ada2023kv} we used walks.\n")

    assert check_bibliography(bib, [tex], []) == []


def test_bibliography_missing_file(tmp_path, terms):
    with pytest.raises(AnonymityCheckError, match="not found"):
        check_bibliography(tmp_path / "absent.bib", [], terms)
