"""Tests for pipeline.checks.anonymity on real TeX sources and PDFs built with pdflatex."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.checks import anonymity
from pipeline.checks.anonymity import AuthorsFileError, check_anonymity, load_identity_terms, main

REPO_ROOT = Path(__file__).resolve().parents[1]

needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None, reason="pdflatex is not installed, so no test PDF can be built"
)
needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed"
)

AUTHORS_YAML = """\
authors:
  - name: Ada Example
    email: ada@example.org
    affiliation: Example University
    usernames: [adaexample]
  - name: Zoë Müller-Placeholder
    email: [zoe@lab.example.net]
    affiliation: [Placeholder Research Lab]
project_urls:
  - https://github.com/adaexample/kv-cache
extra_terms:
  - EXAMPLE-GRANT-0042
"""

# The clean paper names a common surname alone ("Example") and text that
# contains the letters of a name across words ("Nevada Examples"). Neither is
# a finding.
CLEAN_MAIN_TEX = r"""\documentclass{article}
\usepackage{hyperref}
\hypersetup{pdfauthor={Anonymous Authors}, pdftitle={Compressing the KV Cache}}
\begin{document}
\title{Compressing the KV Cache}
\author{Anonymous Authors \\ Anonymous Institution \\ \texttt{anon.email@domain.com}}
\date{}
\maketitle
\input{sections/intro}
\newpage
\section{Results}
Eviction keeps 90\% of the accuracy (Example et al., 2024).
\end{document}
"""

CLEAN_INTRO_TEX = r"""\section{Introduction}
We compress the key-value cache of a transformer.
Nevada Examples of eviction policies follow.
"""

CLEAN_BIB = r"""@article{example2024,
  author = {Example, Bob and Other, Carol},
  title = {Evicting Keys},
  year = {2024},
}
"""


@dataclass(frozen=True)
class Paper:
    sources: Path
    pdf: Path


def build_pdf(directory: Path, main_tex: str, files: dict[str, str] | None = None) -> Path:
    """Write ``main_tex`` (and ``files``) into ``directory`` and build build/main.pdf with pdflatex."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tex").write_text(main_tex, encoding="utf-8")
    for name, content in (files or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content, encoding="utf-8")
    build = directory / "build"
    build.mkdir(exist_ok=True)
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-output-directory", "build", "main.tex"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"pdflatex failed:\n{result.stdout[-3000:]}"
    return build / "main.pdf"


def document(body: str, pdfauthor: str = "Anonymous Authors", preamble: str = "") -> str:
    return (
        f"\\documentclass{{article}}\n{preamble}\\usepackage{{hyperref}}\n"
        f"\\hypersetup{{pdfauthor={{{pdfauthor}}}}}\n"
        f"\\begin{{document}}\n{body}\n\\end{{document}}\n"
    )


@pytest.fixture(scope="module")
def clean_paper(tmp_path_factory: pytest.TempPathFactory) -> Paper:
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed, so no test PDF can be built")
    sources = tmp_path_factory.mktemp("clean") / "paper"
    pdf = build_pdf(
        sources,
        CLEAN_MAIN_TEX,
        {"sections/intro.tex": CLEAN_INTRO_TEX, "references.bib": CLEAN_BIB},
    )
    # The build folder is skipped, so a name in a file there is no finding.
    (sources / "build" / "stale.tex").write_text("Ada Example\n", encoding="utf-8")
    return Paper(sources, pdf)


@pytest.fixture
def authors(tmp_path: Path) -> Path:
    path = tmp_path / "authors.yaml"
    path.write_text(AUTHORS_YAML, encoding="utf-8")
    return path


@pytest.fixture
def paper_copy(clean_paper: Paper, tmp_path: Path) -> Paper:
    """Return a writable copy of the clean sources, with the clean PDF."""
    sources = tmp_path / "paper"
    shutil.copytree(clean_paper.sources, sources)
    return Paper(sources, sources / "build" / "main.pdf")


def cli_arguments(authors: Path, sources: Path, pdf: Path, *extra: str) -> list[str]:
    return ["--authors", str(authors), "--sources", str(sources), "--pdf", str(pdf), *extra]


# The checks these tests plant leaks for; the source- and PDF-object checks have their own test files.
NAME_CHECKS = {"identity", "email", "pdf-author", "style-option"}


def locations(report: anonymity.AnonymityReport) -> list[str]:
    return [finding.location for finding in report.findings if finding.check in NAME_CHECKS]


def messages_at(report: anonymity.AnonymityReport, location: str) -> list[str]:
    return [finding.message for finding in report.findings if finding.location == location]


# --- Clean paper -------------------------------------------------------------


@needs_pdftotext
def test_clean_paper_passes(clean_paper: Paper, authors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = check_anonymity(sources=clean_paper.sources, pdf=clean_paper.pdf, authors=authors)

    assert report.findings == []
    assert report.warnings == []
    assert report.pdf_pages == 2
    assert report.identity_terms == 9
    assert sorted(path.name for path in report.source_files) == ["intro.tex", "main.tex", "references.bib"]

    status = main(cli_arguments(authors, clean_paper.sources, clean_paper.pdf))
    assert status == 0
    assert "anonymity check: clean" in capsys.readouterr().out


@needs_pdftotext
def test_missing_authors_file_warns_but_passes(
    clean_paper: Paper, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "authors.yaml"

    report = check_anonymity(sources=clean_paper.sources, pdf=clean_paper.pdf, authors=missing)
    assert report.clean
    assert report.identity_terms == 0
    assert len(report.warnings) == 1
    assert str(missing) in report.warnings[0]
    assert "authors.example.yaml" in report.warnings[0]

    status = main(cli_arguments(missing, clean_paper.sources, clean_paper.pdf))
    output = capsys.readouterr().out
    assert status == 0
    assert "warning:" in output
    assert "authors.example.yaml" in output


# --- Sources -------------------------------------------------------------------


@needs_pdftotext
def test_name_in_source_reports_line(paper_copy: Paper, authors: Path) -> None:
    intro = paper_copy.sources / "sections" / "intro.tex"
    intro.write_text(CLEAN_INTRO_TEX + "\n% thanks to Ada Example for the idea\n", encoding="utf-8")

    report = check_anonymity(sources=paper_copy.sources, pdf=paper_copy.pdf, authors=authors)

    assert locations(report) == [f"{intro}:5"]
    assert report.findings[0].check == "identity"
    assert report.findings[0].message == 'author name "Ada Example"'
    assert "third person" in report.findings[0].fix


@needs_pdftotext
def test_name_split_across_lines_found(paper_copy: Paper, authors: Path) -> None:
    intro = paper_copy.sources / "sections" / "intro.tex"
    intro.write_text(CLEAN_INTRO_TEX + "We thank Ada\n  Example and\n", encoding="utf-8")

    report = check_anonymity(sources=paper_copy.sources, pdf=paper_copy.pdf, authors=authors)

    assert locations(report) == [f"{intro}:4"]
    assert "Ada Example" in report.findings[0].message


@needs_pdftotext
def test_hyphenated_name_found(paper_copy: Paper, authors: Path) -> None:
    intro = paper_copy.sources / "sections" / "intro.tex"
    intro.write_text(
        CLEAN_INTRO_TEX + "Work done at Exam-\nple University and by Ada Exam\\-ple.\n", encoding="utf-8"
    )

    report = check_anonymity(sources=paper_copy.sources, pdf=paper_copy.pdf, authors=authors)

    assert locations(report) == [f"{intro}:4", f"{intro}:5"]
    assert report.findings[0].message == 'affiliation "Example University" (as "Exam- ple University")'
    assert report.findings[1].message == 'author name "Ada Example" (as "Ada Exam\\-ple")'


@needs_pdftotext
def test_accented_name_matches_other_spellings(paper_copy: Paper, authors: Path) -> None:
    intro = paper_copy.sources / "sections" / "intro.tex"
    intro.write_text(
        CLEAN_INTRO_TEX
        + "Zoe Muller-Placeholder\n"  # accents dropped
        + 'Zo\\"{e} M\\"uller-Placeholder\n'  # LaTeX accents
        + "{Z}o{\\\"e} {M}{\\\"u}ller-Placeholder\n"  # BibTeX-style braces
        + "ZOE MUELLER-PLACEHOLDER\n",  # German transliteration
        encoding="utf-8",
    )

    report = check_anonymity(sources=paper_copy.sources, pdf=paper_copy.pdf, authors=authors)

    assert locations(report) == [f"{intro}:{line}" for line in (4, 5, 6, 7)]
    for finding in report.findings:
        assert finding.message.startswith('author name "Zoë Müller-Placeholder"')


@needs_pdftotext
def test_surname_alone_not_reported(paper_copy: Paper, authors: Path) -> None:
    intro = paper_copy.sources / "sections" / "intro.tex"
    intro.write_text(
        CLEAN_INTRO_TEX + "Example (2024) and M\\\"uller (2023) and Ada Examples and Ada Lovelace.\n",
        encoding="utf-8",
    )

    report = check_anonymity(sources=paper_copy.sources, pdf=paper_copy.pdf, authors=authors)

    assert report.findings == []


@needs_pdftotext
def test_source_emails_except_placeholder_reported(paper_copy: Paper, tmp_path: Path) -> None:
    intro = paper_copy.sources / "sections" / "intro.tex"
    intro.write_text(
        CLEAN_INTRO_TEX
        + "Write to anon.email@domain.com or to someone@university.example.\n"
        + "\\makeatletter\\@ifundefined{x}{}{}\\makeatother\n"
        + "\\texttt{\\{ada,bob\\}@lab.example.net}\n",
        encoding="utf-8",
    )

    # No authors file: the e-mail rule does not need one.
    report = check_anonymity(sources=paper_copy.sources, pdf=paper_copy.pdf, authors=tmp_path / "none.yaml")

    assert locations(report) == [f"{intro}:4", f"{intro}:6"]
    assert {finding.check for finding in report.findings} == {"email"}
    assert report.findings[0].message == "e-mail address someone@university.example"
    assert report.findings[1].message == "e-mail address \\{ada,bob\\}@lab.example.net"


@needs_pdftotext
def test_accepted_style_option_reported(paper_copy: Paper, authors: Path) -> None:
    main_tex = paper_copy.sources / "main.tex"
    main_tex.write_text(
        CLEAN_MAIN_TEX.replace(
            "\\usepackage{hyperref}", "\\usepackage[accepted]{icml2026}\n\\usepackage{hyperref}"
        )
        + "% \\usepackage[preprint]{icml2026}\n",
        encoding="utf-8",
    )

    report = check_anonymity(sources=paper_copy.sources, pdf=paper_copy.pdf, authors=authors)

    assert locations(report) == [f"{main_tex}:2"]
    assert report.findings[0].check == "style-option"
    assert "'accepted'" in report.findings[0].message


# --- PDF text and metadata -----------------------------------------------------


@needs_pdflatex
@needs_pdftotext
def test_email_in_pdf_text_reports_page(clean_paper: Paper, authors: Path, tmp_path: Path) -> None:
    pdf = build_pdf(
        tmp_path / "emails",
        document("First page.\n\\newpage\nContact ada@example.org or \\texttt{someone@university.example}."),
    )

    report = check_anonymity(sources=clean_paper.sources, pdf=pdf, authors=authors)

    assert messages_at(report, f"{pdf} page 2") == [
        'author e-mail "ada@example.org"',
        "e-mail address someone@university.example",
    ]
    assert len(report.findings) == 2


@needs_pdflatex
@needs_pdftotext
def test_accented_name_in_pdf_found(clean_paper: Paper, authors: Path, tmp_path: Path) -> None:
    # The default OT1 encoding makes pdftotext return a base letter plus a combining accent.
    pdf = build_pdf(tmp_path / "accents", document('Thanks to Zo\\"e M\\"uller-Placeholder.'))

    report = check_anonymity(sources=clean_paper.sources, pdf=pdf, authors=authors)

    assert locations(report) == [f"{pdf} page 1"]
    assert report.findings[0].message.startswith('author name "Zoë Müller-Placeholder"')


@needs_pdflatex
@needs_pdftotext
def test_name_wrapped_in_column_found(clean_paper: Paper, authors: Path, tmp_path: Path) -> None:
    filler = "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod. " * 4
    body = "\n\n".join([filler] * 3 + ["We thank Ada\\newline Example for comments."] + [filler] * 14)
    two_columns = "\\documentclass[twocolumn]{article}\n" + document(body).split("\n", 1)[1]
    pdf = build_pdf(tmp_path / "columns", two_columns)

    # With -layout, right-column text sits between "Ada" and "Example".
    terms = load_identity_terms(authors)
    assert anonymity.check_pdf_text(pdf, [anonymity.extract_pdf_text(pdf, layout=True)], terms) == []

    report = check_anonymity(sources=clean_paper.sources, pdf=pdf, authors=authors)

    assert locations(report) == [f"{pdf} page 1"]
    assert report.findings[0].message.startswith('author name "Ada Example"')


@needs_pdflatex
@needs_pdftotext
def test_name_in_pdf_author_metadata_found(clean_paper: Paper, authors: Path, tmp_path: Path) -> None:
    pdf = build_pdf(tmp_path / "metadata", document("Nothing to see.", pdfauthor="Ada Example"))

    report = check_anonymity(sources=clean_paper.sources, pdf=pdf, authors=authors)

    assert {finding.check for finding in report.findings} == {"identity", "pdf-author"}
    assert set(locations(report)) == {f"{pdf} metadata Author"}
    assert 'author name "Ada Example"' in messages_at(report, f"{pdf} metadata Author")


@needs_pdflatex
@needs_pdftotext
def test_pdf_author_rule_without_authors_file(clean_paper: Paper, tmp_path: Path) -> None:
    pdf = build_pdf(tmp_path / "metadata", document("Nothing to see.", pdfauthor="Somebody Else"))

    report = check_anonymity(sources=clean_paper.sources, pdf=pdf, authors=tmp_path / "none.yaml")

    assert locations(report) == [f"{pdf} metadata Author"]
    assert report.findings[0].check == "pdf-author"
    assert '"Somebody Else"' in report.findings[0].message


@needs_pdflatex
@needs_pdftotext
def test_xmp_links_and_figure_metadata_found(clean_paper: Paper, authors: Path, tmp_path: Path) -> None:
    if not subprocess.run(["kpsewhich", "hyperxmp.sty"], capture_output=True, check=False).stdout.strip():
        pytest.skip("hyperxmp.sty is not installed, so no XMP packet can be written")
    figure = build_pdf(tmp_path / "figure", document("plot", pdfauthor="Ada Example"))
    pdf = build_pdf(
        tmp_path / "links",
        document(
            f"\\includegraphics[width=3cm]{{{figure}}}\n"
            "\\href{https://github.com/adaexample/kv-cache}{code}",
            pdfauthor="Ada Example",
            preamble="\\usepackage{graphicx}\n\\usepackage{hyperxmp}\n",
        ),
    )

    report = check_anonymity(sources=clean_paper.sources, pdf=pdf, authors=authors)

    found = {(finding.location, finding.message) for finding in report.findings}
    assert (f"{pdf} XMP metadata", 'author name "Ada Example"') in found
    assert any(location == f"{pdf} XMP metadata dc:creator" for location, _ in found)
    link = f"{pdf} page 1 link https://github.com/adaexample/kv-cache"
    assert (link, 'project URL "https://github.com/adaexample/kv-cache"') in found
    figure_author = f"{pdf} page 1 figure {figure} metadata Author"
    assert (figure_author, 'author name "Ada Example"') in found


# --- Authors file --------------------------------------------------------------


def test_example_authors_file_loads() -> None:
    terms = load_identity_terms(REPO_ROOT / "paper" / "authors.example.yaml")

    kinds = [term.kind for term in terms]
    assert kinds.count("name") == 2
    assert kinds.count("email") == 3
    assert kinds.count("affiliation") == 2  # "Example University" is listed twice
    assert {"username", "url", "project_url", "extra_term"} <= set(kinds)


def test_url_term_matches_without_scheme(tmp_path: Path) -> None:
    path = tmp_path / "authors.yaml"
    path.write_text(
        "authors:\n  - name: Ada Example\n    email: ada@example.org\n"
        "    urls: [https://www.ada.example.org/]\n",
        encoding="utf-8",
    )
    terms = load_identity_terms(path)

    folded = anonymity.fold_text("see \\url{ada.example.org/papers} and \\url{nada.example.org}", latex=True)
    matches = anonymity.find_terms(folded, terms)

    # The e-mail has the same letters, but the URL is written exactly as in the text.
    assert [(match.term.kind, match.matched) for match in matches] == [("url", "ada.example.org")]


# --- Errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("authors: [name: Ada\n", "invalid YAML"),
        (
            "authors:\n  - name: Ada Example\n  - email: bob@example.org\n",
            "authors entry 2: missing required field 'name'",
        ),
        ("authors: []\n", "non-empty list"),
        ("authors:\n  - name: Ada Example\n    emails: ada@example.org\n", "unknown field(s) ['emails'] (allowed:"),
        ("authors:\n  - name: Ada Example\n    usernames: [ab]\n", "fewer than 3 letters or digits"),
    ],
)
def test_malformed_authors_file_rejected(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "authors.yaml"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(AuthorsFileError) as error:
        load_identity_terms(path)

    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_malformed_authors_file_exits_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "authors.yaml"
    path.write_text("authors:\n  - affiliation: Example University\n", encoding="utf-8")

    with caplog.at_level(logging.ERROR):
        status = main(cli_arguments(path, tmp_path, tmp_path / "main.pdf"))

    assert status == 2
    assert f"{path}: authors entry 1: missing required field 'name'" in caplog.text


@needs_pdftotext
def test_missing_pdf_exits_2(
    clean_paper: Paper, authors: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "build" / "main.pdf"
    report_path = tmp_path / "anonymity.json"
    report_path.write_text('{"status": "clean"}', encoding="utf-8")  # a stale report

    with caplog.at_level(logging.ERROR):
        status = main(cli_arguments(authors, clean_paper.sources, missing, "--json", str(report_path)))

    assert status == 2
    assert f"PDF {missing} not found. Run `make paper` first" in caplog.text
    assert json.loads(report_path.read_text(encoding="utf-8"))["status"] == "error"


def test_missing_sources_exits_2(authors: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        status = main(cli_arguments(authors, tmp_path / "paper", tmp_path / "x.pdf"))

    assert status == 2
    assert "sources folder" in caplog.text
    assert "make paper" in caplog.text


def test_missing_pdftotext_exits_2(
    clean_paper: Paper,
    authors: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without pdftotext

    with caplog.at_level(logging.ERROR):
        status = main(cli_arguments(authors, clean_paper.sources, clean_paper.pdf))

    assert status == 2
    assert "pdftotext not found" in caplog.text
    assert "poppler-utils" in caplog.text


# --- Command line --------------------------------------------------------------


@needs_pdftotext
def test_cli_reports_findings_and_writes_json(paper_copy: Paper, authors: Path, tmp_path: Path) -> None:
    intro = paper_copy.sources / "sections" / "intro.tex"
    intro.write_text(CLEAN_INTRO_TEX + "Funded by grant EXAMPLE-GRANT-0042.\n", encoding="utf-8")
    report_path = paper_copy.sources / "build" / "anonymity.json"
    command = [
        sys.executable,
        "-m",
        "pipeline.checks.anonymity",
        *cli_arguments(authors, paper_copy.sources, paper_copy.pdf, "--json", str(report_path)),
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    result = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=False
    )

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f'{intro}:4: identifying term "EXAMPLE-GRANT-0042" — remove it for the review version'
    )
    # The funding sentence is also an acknowledgement in review mode.
    assert lines[-1].startswith("anonymity check: 2 findings (")
    data = json.loads(report_path.read_text(encoding="utf-8"))
    assert data["status"] == "findings"
    assert data["findings"][0]["location"] == f"{intro}:4"
    assert [path.name for path in report_path.parent.iterdir() if path.name.endswith(".tmp")] == []

    intro.write_text(CLEAN_INTRO_TEX, encoding="utf-8")
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(report_path.read_text(encoding="utf-8"))["status"] == "clean"


def test_allowlist_entry_needs_reason(tmp_path):
    from pipeline.checks.anonymity import (
        AnonymityCheckError,
        AnonymityReport,
        Finding,
        apply_allowlist,
        load_allowlist,
    )

    finding = Finding("identity", "paper/main.tex:12", "names 'Lovelace'", "remove it")
    other = Finding("email", "paper/main.tex:30", "e-mail ada@example.org", "remove it")
    allowlist = tmp_path / "allow.yaml"
    allowlist.write_text("- check: identity\n  location: paper/main.tex\n  text: Lovelace\n"
                         "  reason: the Lovelace number is a graph measure, not the author\n")
    report = AnonymityReport(findings=[finding, other])
    apply_allowlist(report, load_allowlist(allowlist))
    assert report.findings == [other]
    assert report.allowed == [(finding, "the Lovelace number is a graph measure, not the author")]
    assert "allowed: paper/main.tex:12" in report.format_text()

    allowlist.write_text("- check: identity\n  text: Lovelace\n")
    with pytest.raises(AnonymityCheckError, match="every entry needs a check and a reason"):
        load_allowlist(allowlist)
