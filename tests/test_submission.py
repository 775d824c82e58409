"""Tests for the submission archive: file selection, comment removal, determinism and the rebuild."""

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from pipeline.checks import submission  # noqa: E402
from pipeline.checks.anonymity import extract_pdf_text  # noqa: E402

needs_latexmk = pytest.mark.skipif(
    shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
    reason="latexmk and pdftotext are needed to build and read the test paper",
)

MAIN_TEX = r"""\documentclass{article}
\pdfsuppressptexinfo=-1\relax
% Secret Author wrote this preamble comment.
\usepackage{graphicx}
\usepackage{url}
\begin{document}
Half price: 50\% off. % secret-token in a trailing comment
Joined%
word and a line break \\% comment after a forced break
    % an indented comment line
\begin{verbatim}
literal 100% kept % in verbatim
\end{verbatim}
See \url{https://example.org/a%20b} and \verb|5%|.

\includegraphics[width=2in]{figures/plot.pdf}

As shown by \cite{doe2020}.
\bibliographystyle{plain}
\bibliography{refs}
\end{document}
"""

REFS_BIB = r"""% Bibliography kept by Secret Author.
@article{doe2020,
  author = {Doe, Jane},
  title = {A Study},
  journal = {Journal of Tests},
  year = {2020},
  note = {50% of it},
}
"""

AUTHORS_YAML = """authors:
  - name: Secret Author
    email: secret.author@example.org
extra_terms:
  - secret-token
"""

EXPECTED_MEMBERS = ["figures/plot.pdf", "main.bbl", "main.tex", "refs.bib"]


def _build(paper: Path) -> None:
    environment = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", FORCE_SOURCE_DATE="1")
    subprocess.run(
        ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-outdir=build", "main.tex"],
        cwd=paper, env=environment, capture_output=True, check=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def built_paper(tmp_path_factory) -> Path:
    """A small paper folder built with latexmk, with files that must never be shipped."""
    if shutil.which("latexmk") is None:
        pytest.skip("latexmk not found")
    paper = tmp_path_factory.mktemp("paper")
    (paper / "main.tex").write_text(MAIN_TEX, encoding="utf-8")
    (paper / "refs.bib").write_text(REFS_BIB, encoding="utf-8")
    (paper / "authors.yaml").write_text(AUTHORS_YAML, encoding="utf-8")
    (paper / "main.sourcemap.json").write_text("{}\n", encoding="utf-8")
    (paper / ".variant").write_text("review off\n", encoding="utf-8")
    (paper / "unused.tex").write_text("Never read by the build.\n", encoding="utf-8")
    (paper / "figures").mkdir()
    figure, axes = plt.subplots(figsize=(2, 1.5))
    axes.plot([0, 1, 2], [1, 0, 1])
    figure.savefig(paper / "figures" / "plot.pdf")
    plt.close(figure)
    _build(paper)
    assert (paper / "build" / "main.fls").is_file()
    assert (paper / "build" / "main.bbl").is_file()
    return paper


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {member.name: member for member in tar.getmembers()}


def _read_member(archive: Path, name: str) -> str:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.extractfile(name).read().decode("utf-8")


# --- Comment removal on hand-made text ------------------------------------------


def test_strip_keeps_escaped_percent():
    assert submission.strip_tex_comments("50\\% off % gone\n") == "50\\% off %\n"


def test_strip_drops_comment_only_lines():
    text = "a\n% whole line\n   % indented\nb\n"
    assert submission.strip_tex_comments(text) == "a\nb\n"


def test_strip_keeps_trailing_percent():
    assert submission.strip_tex_comments("Joined%\nword\n") == "Joined%\nword\n"
    assert submission.strip_tex_comments("code% note\n") == "code%\n"


def test_strip_comment_after_forced_break():
    assert submission.strip_tex_comments("a \\\\% note\n") == "a \\\\%\n"


def test_strip_keeps_verbatim_environments():
    for environment in ("verbatim", "verbatim*", "Verbatim", "lstlisting"):
        text = f"\\begin{{{environment}}}\n50% kept\n% kept too\n\\end{{{environment}}}\n% gone\n"
        expected = f"\\begin{{{environment}}}\n50% kept\n% kept too\n\\end{{{environment}}}\n"
        assert submission.strip_tex_comments(text) == expected, environment


def test_strip_keeps_url_arguments():
    text = "\\url{https://example.org/a%20b} % gone\n\\href{https://x.org/%7E{y}}{50% text}\n"
    expected = "\\url{https://example.org/a%20b} %\n\\href{https://x.org/%7E{y}}{50%\n"
    assert submission.strip_tex_comments(text) == expected


def test_strip_keeps_inline_verb():
    assert submission.strip_tex_comments("\\verb|5%| and % gone\n") == "\\verb|5%| and %\n"


def test_strip_unclosed_verb_protects_one_line():
    assert submission.strip_tex_comments("\\verb|50% open\nb % gone\n") == "\\verb|50% open\nb %\n"


def test_strip_comment_at_end_without_newline():
    assert submission.strip_tex_comments("a\n% last") == "a\n"
    assert submission.strip_tex_comments("a % last") == "a %"


def test_strip_ignores_commented_verbatim_begin():
    text = "% \\begin{verbatim}\nx % gone\n"
    assert submission.strip_tex_comments(text) == "x %\n"


def test_bib_drops_comment_lines_outside_entries():
    text = "% top\n@article{k,\n  note = {50% of it},\n% inside stays\n}\n  % after\n"
    expected = "@article{k,\n  note = {50% of it},\n% inside stays\n}\n"
    assert submission.strip_bib_comments(text) == expected


# --- Archive of a built paper --------------------------------------------------------


@needs_latexmk
def test_archive_lists_expected_files(built_paper, tmp_path):
    archive = tmp_path / "submission.tar.gz"
    names = submission.write_archive(built_paper, archive)
    assert names == EXPECTED_MEMBERS
    assert sorted(_members(archive)) == EXPECTED_MEMBERS


@needs_latexmk
def test_archive_member_metadata(built_paper, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    archive = tmp_path / "submission.tar.gz"
    submission.write_archive(built_paper, archive)
    for name, member in _members(archive).items():
        assert member.isfile(), name
        assert member.mtime == 1234567890, name
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", ""), name
        assert member.mode == 0o644, name
        assert not name.startswith("/"), name
        assert ".." not in Path(name).parts, name


@needs_latexmk
def test_archive_comments_removed(built_paper, tmp_path):
    archive = tmp_path / "submission.tar.gz"
    submission.write_archive(built_paper, archive)
    main_tex = _read_member(archive, "main.tex")
    assert "Secret Author" not in main_tex
    assert "secret-token" not in main_tex
    assert "an indented comment line" not in main_tex
    assert "comment after a forced break" not in main_tex
    assert "Half price: 50\\% off. %\n" in main_tex
    assert "Joined%\nword" in main_tex
    assert "literal 100% kept % in verbatim\n" in main_tex
    assert "\\url{https://example.org/a%20b}" in main_tex
    assert "\\verb|5%|" in main_tex

    refs = _read_member(archive, "refs.bib")
    assert "Secret Author" not in refs
    assert "note = {50% of it}" in refs


@needs_latexmk
def test_archive_has_no_absolute_paths(built_paper, tmp_path):
    archive = tmp_path / "submission.tar.gz"
    submission.write_archive(built_paper, archive)
    for name in ("main.tex", "main.bbl", "refs.bib"):
        text = _read_member(archive, name)
        assert str(built_paper) not in text, name
        assert "/tmp/" not in text, name
        assert "/usr/" not in text, name
        assert "/home/" not in text, name


@needs_latexmk
def test_archive_is_byte_identical(built_paper, tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first, second = tmp_path / "first.tar.gz", tmp_path / "second.tar.gz"
    submission.write_archive(built_paper, first)
    os.utime(built_paper / "main.tex")  # a newer file time must not change the archive
    submission.write_archive(built_paper, second)
    assert first.read_bytes() == second.read_bytes()
    assert all(member.mtime == 0 for member in _members(first).values())


@needs_latexmk
def test_archive_written_atomically(built_paper, tmp_path):
    archive = tmp_path / "out" / "submission.tar.gz"
    submission.write_archive(built_paper, archive)
    assert [path.name for path in archive.parent.iterdir()] == ["submission.tar.gz"]


@needs_latexmk
def test_archive_rebuilds_same_text(built_paper, tmp_path):
    archive = tmp_path / "submission.tar.gz"
    report = submission.check_submission(built_paper, archive)
    assert report.findings == []
    assert report.anonymity is not None
    assert report.anonymity.identity_terms == 3
    assert report.anonymity.findings == []
    assert report.clean

    extracted = tmp_path / "extracted"
    submission.extract_archive(archive, extracted)
    rebuilt = submission.rebuild(extracted)
    original_text = extract_pdf_text(built_paper / "build" / "main.pdf", layout=False)
    assert extract_pdf_text(rebuilt, layout=False) == original_text
    assert "Doe" in original_text  # the bibliography came from main.bbl


@needs_latexmk
def test_changed_source_reported(built_paper, tmp_path):
    paper = tmp_path / "paper"
    shutil.copytree(built_paper, paper)
    main_tex = paper / "main.tex"
    main_tex.write_text(main_tex.read_text().replace("Half price", "Full price"), encoding="utf-8")
    report = submission.check_submission(paper, tmp_path / "submission.tar.gz")
    assert [finding.check for finding in report.findings] == ["submission-rebuild"]
    assert "page 1" in report.findings[0].location
    assert not report.clean


@needs_latexmk
def test_figure_metadata_reported(built_paper, tmp_path):
    paper = tmp_path / "paper"
    shutil.copytree(built_paper, paper)
    figure, axes = plt.subplots(figsize=(2, 1.5))
    axes.plot([0, 1, 2], [1, 0, 1])
    figure.savefig(paper / "figures" / "plot.pdf", metadata={"Author": "Secret Author"})
    plt.close(figure)
    report = submission.check_submission(paper, tmp_path / "submission.tar.gz")
    checks = {finding.check for finding in report.findings}
    assert "identity" in checks
    assert "pdf-author" in checks
    assert all("figures/plot.pdf" in finding.location for finding in report.findings)


@needs_latexmk
def test_cli_exit_codes(built_paper, tmp_path, capsys):
    archive = tmp_path / "submission.tar.gz"
    assert submission.main(["--paper", str(built_paper), "--output", str(archive)]) == 0
    assert "clean" in capsys.readouterr().out

    missing = tmp_path / "missing"
    assert submission.main(["--paper", str(missing), "--output", str(archive)]) == 2


@needs_latexmk
def test_log_fallback_without_recorder(built_paper, tmp_path):
    paper = tmp_path / "paper"
    shutil.copytree(built_paper, paper)
    (paper / "build" / "main.fls").unlink()
    assert sorted(submission.collect_files(paper)) == EXPECTED_MEMBERS


def test_collect_rejects_missing_build(tmp_path):
    (tmp_path / "main.tex").write_text("\\relax\n", encoding="utf-8")
    with pytest.raises(submission.SubmissionError, match="make paper"):
        submission.collect_files(tmp_path)


# --- The real paper --------------------------------------------------------------


@needs_latexmk
def test_default_paper_archive(tmp_path, default_paper):
    paper = default_paper
    archive = tmp_path / "submission.tar.gz"
    report = submission.check_submission(paper, archive)
    assert report.findings == []
    names = list(_members(archive))
    assert "main.tex" in names
    assert "main.bbl" in names
    assert not any(name.startswith(("build/", ".")) for name in names)
    assert "authors.yaml" not in names
    assert "main.sourcemap.json" not in names
    with tarfile.open(archive, "r:gz") as tar:
        main_tex = io.TextIOWrapper(tar.extractfile("main.tex"), encoding="utf-8").read()
    assert not any(line.lstrip().startswith("%") for line in main_tex.splitlines())
