"""Tests for templates/icml2026compat.sty, our replica of the ICML 2026 layout.

Each test builds a small two-column paper with latexmk and pdflatex in a
temporary folder and inspects the PDF with poppler (pdfinfo, pdftotext,
pdffonts) and the lengths that the paper writes to its log with \\typeout.
The expected lengths are the measured values of the official ICML 2026 style.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STYLE_PATH = REPO_ROOT / "templates" / "icml2026compat.sty"

REQUIRED_TOOLS = ("latexmk", "pdflatex", "bibtex", "pdfinfo", "pdftotext", "pdffonts")
MISSING_TOOLS = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING_TOOLS),
    reason=f"not installed: {', '.join(MISSING_TOOLS)}. The LaTeX style tests need "
    "TeX Live with latexmk and bibtex, and poppler-utils",
)

BUILD_TIMEOUT_S = 180

# TeX points per inch.
PT_PER_IN = 72.27
# PDF (big) points per inch, the unit of pdfinfo and pdftotext -bbox.
BP_PER_IN = 72.0

AUTHOR_NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper")
AFFILIATION_TEXTS = (
    "Department of Computing, University of Examples, Exampletown, Exampleland",
    "Research Laboratory of Samples, Sampleville, Sampleland",
)
CORRESPONDENCE_EMAIL = "ada.lovelace@examples.edu"

REVIEW_NOTICE = (
    "Preliminary work. Under review by the International Conference on Machine "
    "Learning (ICML). Do not distribute."
)
PROCEEDINGS_NOTICE = (
    "Proceedings of the 43rd International Conference on Machine Learning, Seoul, "
    "South Korea. PMLR 306, 2026. Copyright 2026 by the author(s)."
)
ANONYMOUS_AFFILIATION = (
    "Anonymous Institution, Anonymous City, Anonymous Region, Anonymous Country"
)
ANONYMOUS_CORRESPONDENCE = "Correspondence to: Anonymous Author <anon.email@domain.com>"
SUPPRESSED_TITLE = "Title Suppressed Due to Excessive Size"

PAPER_TITLE = "Pruning the Key-Value Cache with Attention Statistics"
RUNNING_TITLE = "Pruning the Key-Value Cache"

BIBLIOGRAPHY = r"""
@book{knuth1984,
  author    = {Donald E. Knuth},
  title     = {The {\TeX}book},
  publisher = {Addison-Wesley},
  year      = {1984},
}
@book{lamport1994,
  author    = {Leslie Lamport},
  title     = {{\LaTeX}: A Document Preparation System},
  publisher = {Addison-Wesley},
  edition   = {2nd},
  year      = {1994},
}
"""

# Lengths the paper writes to its log after the title block, as name: TeX
# expression.
LOGGED_LENGTHS = {
    "paperwidth": r"\the\paperwidth",
    "paperheight": r"\the\paperheight",
    "textwidth": r"\the\textwidth",
    "textheight": r"\the\textheight",
    "columnsep": r"\the\columnsep",
    "columnwidth": r"\the\columnwidth",
    "oddsidemargin": r"\the\oddsidemargin",
    "evensidemargin": r"\the\evensidemargin",
    "topmargin": r"\the\topmargin",
    "headheight": r"\the\headheight",
    "headsep": r"\the\headsep",
    "footskip": r"\the\footskip",
    "parindent": r"\the\parindent",
    "parskip": r"\the\parskip",
    "abovedisplayskip": r"\the\abovedisplayskip",
    "belowdisplayskip": r"\the\belowdisplayskip",
    "abovedisplayshortskip": r"\the\abovedisplayshortskip",
    "belowdisplayshortskip": r"\the\belowdisplayshortskip",
}
# Logged inside a first-level itemize, where the list code has set them.
LOGGED_LIST_LENGTHS = {
    "topsep": r"\the\topsep",
    "itemsep": r"\the\itemsep",
    "parsep": r"\the\parsep",
    "leftmargin": r"\the\leftmargin",
}
SIZE_COMMANDS = ("normalsize", "small", "footnotesize", "scriptsize", "tiny", "large", "Large", "LARGE")


def inches(value: float) -> float:
    """Convert inches to TeX points."""
    return value * PT_PER_IN


# Measured values of the official ICML 2026 layout, in TeX points.  Glue is
# (natural, stretch, shrink).
EXPECTED_LENGTHS = {
    "paperwidth": (inches(8.5), 0.0, 0.0),
    "paperheight": (inches(11), 0.0, 0.0),
    "textwidth": (487.8225, 0.0, 0.0),
    "textheight": (650.43, 0.0, 0.0),
    "columnsep": (18.06749, 0.0, 0.0),
    "columnwidth": ((487.8225 - 18.06749) / 2, 0.0, 0.0),
    "oddsidemargin": (-16.62178, 0.0, 0.0),
    "evensidemargin": (-16.62178, 0.0, 0.0),
    "topmargin": (-24.95781, 0.0, 0.0),
    "headheight": (10.0, 0.0, 0.0),
    "headsep": (10.0, 0.0, 0.0),
    "footskip": (25.0, 0.0, 0.0),
    "parindent": (0.0, 0.0, 0.0),
    "parskip": (6.0, 0.0, 0.0),
    "topsep": (4.0, 1.0, 2.0),
    "itemsep": (2.0, 1.0, 0.5),
    "parsep": (2.0, 1.0, 0.5),
    # 2em of 10pt Times.
    "leftmargin": (20.0, 0.0, 0.0),
    "abovedisplayskip": (7.0, 2.0, 5.0),
    "belowdisplayskip": (7.0, 2.0, 5.0),
    "abovedisplayshortskip": (0.0, 3.0, 0.0),
    "belowdisplayshortskip": (4.0, 3.0, 3.0),
}
# Font size and baseline skip, in points.
EXPECTED_SIZES = {
    "normalsize": (10.0, 11.0),
    "small": (9.0, 10.0),
    "footnotesize": (9.0, 10.0),
    "scriptsize": (7.0, 8.0),
    "tiny": (6.0, 7.0),
    "large": (12.0, 14.0),
    "Large": (14.4, 16.0),
    "LARGE": (17.28, 20.0),
}
TOLERANCE_PT = 0.01
# TeX wraps log lines at this many characters (max_print_line).
TEX_LOG_LINE_LENGTH = 79

FILLER_SENTENCES = (
    "Each decoding step reads the keys and values of every earlier token, so the "
    "cache grows linearly with the context length.",
    "Compression methods keep a subset of the cached entries and drop the rest, "
    "trading a small loss in accuracy for memory.",
    "We score every cached token by the attention it receives from a window of "
    "recent queries and keep the highest scores per head.",
    "The budget is given as a number of tokens per head rather than a ratio, which "
    "keeps short prompts from losing their whole cache.",
    "Retrieval tasks suffer first, because the answer often sits in a single "
    "passage that received little attention during the prefill.",
    "Summarization degrades more gracefully, since many tokens carry overlapping "
    "information about the document.",
    "All runs use the same prompts, the same greedy decoding and the same maximum "
    "number of generated tokens.",
    "We report the mean score over all samples of a task together with a "
    "bootstrap confidence interval.",
)


def filler_paragraph(index: int, sentence_count: int = 9) -> str:
    """Return a paragraph of filler sentences, starting at a varying sentence."""
    sentences = [
        FILLER_SENTENCES[(index + offset) % len(FILLER_SENTENCES)]
        for offset in range(sentence_count)
    ]
    return " ".join(sentences)


def filler_paragraphs(start: int, count: int) -> str:
    return "\n\n".join(filler_paragraph(start + index) for index in range(count))


def typeout_lines(lengths: dict[str, str]) -> list[str]:
    return [rf"\typeout{{ICMLTEST {name}={expression}}}" for name, expression in lengths.items()]


def logging_commands() -> str:
    """Return LaTeX that writes each length as a line `ICMLTEST name=value` to the log."""
    lines = [r"\makeatletter"]
    lines += typeout_lines(LOGGED_LENGTHS)
    for size in SIZE_COMMANDS:
        lines.append(
            rf"{{\{size}\typeout{{ICMLTEST size-{size}=\f@size pt/\the\baselineskip}}}}"
        )
    lines.append(r"\makeatother")
    return "\n".join(lines)


def paper_source(
    style_options: str = "",
    running_title: str = RUNNING_TITLE,
    hyperref: str = "before",
    preamble_after_style: str = "",
    third_author_keys: str = "uni, lab",
) -> str:
    """Return a paper that uses the full macro interface of the style.

    `hyperref` is where the paper loads hyperref: "before" the style (as the
    official example paper does), "after" it, or "none".
    """
    if hyperref not in ("before", "after", "none"):
        raise ValueError(f"hyperref must be 'before', 'after' or 'none', not {hyperref!r}")
    hyperref_before = r"\usepackage{hyperref}" if hyperref == "before" else ""
    hyperref_after = r"\usepackage{hyperref}" if hyperref == "after" else ""
    options = f"[{style_options}]" if style_options else ""
    affiliation_uni, affiliation_lab = AFFILIATION_TEXTS
    name_1, name_2, name_3 = AUTHOR_NAMES
    return rf"""\documentclass{{article}}
\usepackage{{microtype}}
\usepackage{{graphicx}}
\usepackage{{amsmath}}
\usepackage{{booktabs}}
{hyperref_before}
\usepackage{options}{{icml2026compat}}
{hyperref_after}
{preamble_after_style}
\icmltitlerunning{{{running_title}}}

\begin{{document}}
\twocolumn[
\icmltitle{{{PAPER_TITLE}}}
\icmlsetsymbol{{equal}}{{*}}
\begin{{icmlauthorlist}}
\icmlauthor{{{name_1}}}{{equal,uni}}
\icmlauthor{{{name_2}}}{{equal,lab}}
\icmlauthor{{{name_3}}}{{{third_author_keys}}}
\end{{icmlauthorlist}}
\icmlaffiliation{{uni}}{{{affiliation_uni}}}
\icmlaffiliation{{lab}}{{{affiliation_lab}}}
\icmlcorrespondingauthor{{{name_1}}}{{{CORRESPONDENCE_EMAIL}}}
\icmlkeywords{{Machine Learning, KV cache, ICML}}
\vskip 0.3in
]
\printAffiliationsAndNotice{{\icmlEqualContribution}}
{logging_commands()}

\begin{{abstract}}
{filler_paragraph(0, sentence_count=5)}
\end{{abstract}}

\section{{Introduction}}
{filler_paragraphs(1, 3)}
Our method follows earlier work on typesetting \citep{{knuth1984,lamport1994}},
as described by \citet{{knuth1984}} and cited again as \cite{{knuth1984}}.

\begin{{figure}}[t]
\centering
\fbox{{\parbox{{0.8\columnwidth}}{{\centering FIGUREBOX\\[1in]}}}}
\caption{{Accuracy of each method as the cache budget shrinks.}}
\label{{fig:accuracy}}
\end{{figure}}

\section{{Method}}
\subsection{{Scoring}}
{filler_paragraphs(2, 3)}
\begin{{equation}}
  s_i = \frac{{1}}{{|W|}} \sum_{{q \in W}} \operatorname{{softmax}}(q K^\top)_i
\end{{equation}}
\subsubsection{{Budget}}
{filler_paragraphs(3, 2)}
\begin{{itemize}}
\item The budget counts tokens per head.
{" ".join(typeout_lines(LOGGED_LIST_LENGTHS))}
\item The window holds the last 32 queries.
\end{{itemize}}
\paragraph{{Eviction.}} {filler_paragraph(4)}

\begin{{table}}[t]
\caption{{Mean score per task. Higher is better.}}
\label{{tab:scores}}
\centering
\begin{{tabular}}{{lrr}}
\toprule
Method & TABLECELL & Summary \\
\midrule
Full cache & 71.2 & 25.3 \\
Ours & 70.8 & 25.1 \\
\bottomrule
\end{{tabular}}
\end{{table}}

\section{{Experiments}}
{filler_paragraphs(5, 8)}

\section{{Conclusion}}
{filler_paragraphs(6, 6)}

\bibliographystyle{{plainnat}}
\bibliography{{references}}
\end{{document}}
"""


@dataclass
class BuiltPaper:
    directory: Path
    pdf: Path
    log: str

    def text(self, first_page: int | None = None, last_page: int | None = None) -> str:
        """Return the PDF's text from pdftotext, in reading order."""
        command = ["pdftotext"]
        if first_page is not None:
            command += ["-f", str(first_page)]
        if last_page is not None:
            command += ["-l", str(last_page)]
        command += [str(self.pdf), "-"]
        return run_tool(command)

    def flat_text(self, first_page: int | None = None, last_page: int | None = None) -> str:
        """Return the text with hyphenated line breaks joined and all whitespace single spaces."""
        text = self.text(first_page, last_page)
        text = re.sub(r"-\n(?=[a-z])", "", text)
        return " ".join(text.split())

    def info(self) -> dict[str, str]:
        """Return pdfinfo's fields, e.g. {"Author": ..., "Page size": ...}."""
        fields = {}
        for line in run_tool(["pdfinfo", str(self.pdf)]).splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        return fields

    def words(self, page: int) -> list[tuple[str, float, float, float, float]]:
        """Return (word, xMin, yMin, xMax, yMax) for each word on a page, in PDF points from the top left."""
        html = run_tool(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(self.pdf), "-"])
        pattern = re.compile(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
        )
        return [
            (word, float(x_min), float(y_min), float(x_max), float(y_max))
            for x_min, y_min, x_max, y_max, word in pattern.findall(html)
        ]

    def unwrapped_log(self) -> str:
        """Return the log with TeX's 79-character line wrapping and warning prefixes undone."""
        lines = self.log.splitlines()
        text = "".join(line if len(line) == TEX_LOG_LINE_LENGTH else line + "\n" for line in lines)
        return re.sub(r"\n\(icml2026compat\) +", " ", text)

    def logged_values(self) -> dict[str, str]:
        """Return the `ICMLTEST name=value` lines of the log as a dict."""
        return dict(
            re.findall(r"^ICMLTEST ([\w-]+)=(.*)$", self.unwrapped_log(), flags=re.MULTILINE)
        )


def run_tool(command: list[str]) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return completed.stdout


def build_paper(directory: Path, source: str) -> BuiltPaper:
    """Write the paper, the bibliography and the style into `directory` and build it with latexmk."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tex").write_text(source, encoding="utf-8")
    (directory / "references.bib").write_text(BIBLIOGRAPHY, encoding="utf-8")
    shutil.copy(STYLE_PATH, directory / STYLE_PATH.name)

    command = [
        "latexmk",
        "-norc",
        "-pdf",
        "-interaction=nonstopmode",
        "-halt-on-error",
        "-pdflatex=pdflatex -no-shell-escape %O %S",
        "main.tex",
    ]
    completed = subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    log_path = directory / "main.log"
    log = log_path.read_text(encoding="latin-1") if log_path.exists() else ""
    if completed.returncode != 0:
        pytest.fail(
            f"latexmk failed with exit status {completed.returncode} in {directory}.\n"
            f"Last lines of main.log:\n{log[-3000:]}\nlatexmk output:\n{completed.stdout[-2000:]}"
        )
    return BuiltPaper(directory=directory, pdf=directory / "main.pdf", log=log)


def parse_glue(value: str) -> tuple[float, float, float]:
    """Parse TeX's `\\the` of a length or glue, e.g. `4.0pt plus 1.0pt minus 2.0pt`."""
    match = re.fullmatch(
        r"(-?[\d.]+)pt(?: plus (-?[\d.]+)pt)?(?: minus (-?[\d.]+)pt)?", value.strip()
    )
    assert match is not None, f"not a TeX length or glue in points: {value!r}"
    natural, stretch, shrink = match.groups()
    return float(natural), float(stretch or 0.0), float(shrink or 0.0)


def words_on_page_with(paper: BuiltPaper, marker: str) -> dict[str, tuple]:
    """Return the words of the first page that contains `marker`, keyed by their text."""
    page_count = int(paper.info()["Pages"])
    for page in range(1, page_count + 1):
        words = {word[0]: word for word in paper.words(page)}
        if marker in words:
            return words
    raise AssertionError(f"no page of {paper.pdf} contains {marker!r}")


def pt_to_bp(value_pt: float) -> float:
    return value_pt / PT_PER_IN * BP_PER_IN


@pytest.fixture(scope="module")
def papers(tmp_path_factory) -> dict[str, BuiltPaper]:
    """Build the paper once per mode: review (the default), accepted and preprint."""
    root = tmp_path_factory.mktemp("icml_style")
    return {
        mode: build_paper(root / mode, paper_source(style_options=option))
        for mode, option in (("review", ""), ("accepted", "accepted"), ("preprint", "preprint"))
    }


MODES = ("review", "accepted", "preprint")


# --- Page size, page count and fonts ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_page_size_us_letter(papers, mode):
    assert papers[mode].info()["Page size"].startswith("612 x 792 pts")


@pytest.mark.parametrize("mode", MODES)
def test_paper_reaches_three_pages(papers, mode):
    assert int(papers[mode].info()["Pages"]) >= 3


@pytest.mark.parametrize("mode", MODES)
def test_fonts_type1_and_embedded(papers, mode):
    # pdffonts prints two header lines, then one row per font with the columns
    # name, type, encoding, emb, sub, uni, object number and generation.
    rows = run_tool(["pdffonts", str(papers[mode].pdf)]).splitlines()[2:]
    assert rows, "pdffonts listed no fonts"
    for row in rows:
        assert "Type 3" not in row, f"Type 3 font: {row}"
        assert re.search(r"Type 1|TrueType", row), f"font neither Type 1 nor TrueType: {row}"
        embedded = row.split()[-5]
        assert embedded == "yes", f"font not embedded: {row}"


# --- Measured lengths ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_LENGTHS))
def test_layout_length(papers, name):
    logged = papers["review"].logged_values()
    assert name in logged, f"the paper did not log {name}"
    actual = parse_glue(logged[name])
    expected = EXPECTED_LENGTHS[name]
    assert actual == pytest.approx(expected, abs=TOLERANCE_PT), f"{name}: {logged[name]}"


@pytest.mark.parametrize("size", SIZE_COMMANDS)
def test_font_size_and_leading(papers, size):
    logged = papers["review"].logged_values()
    key = f"size-{size}"
    assert key in logged, f"the paper did not log {key}"
    font_size, baseline_skip = (parse_glue(part)[0] for part in logged[key].split("/"))
    expected_size, expected_skip = EXPECTED_SIZES[size]
    assert font_size == pytest.approx(expected_size, abs=TOLERANCE_PT)
    assert baseline_skip == pytest.approx(expected_skip, abs=TOLERANCE_PT)


@pytest.mark.parametrize("mode", MODES)
def test_layout_lengths_same_in_every_mode(papers, mode):
    assert papers[mode].logged_values() == papers["review"].logged_values()


def test_two_columns_at_measured_positions(papers):
    """Check that text on page 2 starts at the two column edges that the lengths imply."""
    left_edge_pt = inches(1) + EXPECTED_LENGTHS["oddsidemargin"][0]
    column_width_pt = EXPECTED_LENGTHS["columnwidth"][0]
    right_edge_pt = left_edge_pt + column_width_pt + EXPECTED_LENGTHS["columnsep"][0]

    # The ruler numbers sit in the margin, so use the accepted paper.
    words = papers["accepted"].words(page=2)
    line_starts = [x_min for _, x_min, _, _, _ in words]
    assert min(line_starts) == pytest.approx(pt_to_bp(left_edge_pt), abs=1.0)
    near_right_edge = [x for x in line_starts if abs(x - pt_to_bp(right_edge_pt)) < 1.0]
    assert len(near_right_edge) >= 20, "fewer than 20 words start at the right column's edge"
    # microtype lets punctuation protrude up to about 2pt into the margin.
    right_limit_bp = pt_to_bp(left_edge_pt + inches(6.75)) + 3.0
    beyond_text_block = [word for word, _, _, x_max, _ in words if x_max > right_limit_bp]
    assert beyond_text_block == []


# --- Review mode --------------------------------------------------------------


def test_review_shows_anonymous_author(papers):
    text = papers["review"].flat_text()
    assert "Anonymous Authors" in text
    assert ANONYMOUS_AFFILIATION in text
    assert ANONYMOUS_CORRESPONDENCE in text
    assert REVIEW_NOTICE in text


@pytest.mark.parametrize("hidden", AUTHOR_NAMES + AFFILIATION_TEXTS + (CORRESPONDENCE_EMAIL,))
def test_review_hides_identity(papers, hidden):
    assert hidden not in papers["review"].flat_text()
    assert hidden not in run_tool(["pdfinfo", str(papers["review"].pdf)])


def test_review_pdf_author_anonymous(papers):
    assert papers["review"].info()["Author"] == "Anonymous Authors"


def test_review_omits_proceedings_notice(papers):
    assert "Proceedings of the 43rd" not in papers["review"].flat_text()


def test_review_draws_line_number_ruler(papers):
    # 59 baselines fit the 9in text block: (650.43pt - 10pt topskip) / 11pt + 1.
    page_1 = papers["review"].text(1, 1).split()
    page_2 = papers["review"].text(2, 2).split()
    assert "000" in page_1
    assert "058" in page_1
    assert "059" in page_2
    assert "117" in page_2


def test_ruler_left_of_text_block(papers):
    left_edge_bp = pt_to_bp(inches(1) + EXPECTED_LENGTHS["oddsidemargin"][0])
    ruler_words = [word for word in papers["review"].words(page=2) if word[0] == "059"]
    assert len(ruler_words) == 1
    _, _, _, x_max, _ = ruler_words[0]
    assert x_max < left_edge_bp


# --- Accepted and preprint modes ----------------------------------------------


@pytest.mark.parametrize("mode", ("accepted", "preprint"))
def test_real_authors_shown(papers, mode):
    text = papers[mode].flat_text()
    for name in AUTHOR_NAMES:
        assert name in text
    for affiliation in AFFILIATION_TEXTS:
        assert affiliation in text
    assert f"Correspondence to: {AUTHOR_NAMES[0]} <{CORRESPONDENCE_EMAIL}>" in text
    assert "Equal contribution" in text
    assert "Anonymous" not in text


@pytest.mark.parametrize("mode", ("accepted", "preprint"))
def test_pdf_author_lists_authors(papers, mode):
    assert papers[mode].info()["Author"] == ", ".join(AUTHOR_NAMES)


@pytest.mark.parametrize("mode", MODES)
def test_pdf_title_and_keywords(papers, mode):
    info = papers[mode].info()
    assert info["Title"] == PAPER_TITLE
    assert info["Keywords"] == "Machine Learning, KV cache, ICML"


@pytest.mark.parametrize("mode", ("accepted", "preprint"))
def test_no_review_notice_or_ruler(papers, mode):
    text = papers[mode].flat_text()
    assert "Under review" not in text
    assert "000" not in text.split()


def test_accepted_shows_proceedings_notice(papers):
    assert PROCEEDINGS_NOTICE in papers["accepted"].flat_text()


def test_preprint_shows_notice_and_date(papers):
    text = papers["preprint"].flat_text()
    assert re.search(r"Preprint\. [A-Z][a-z]+ \d{1,2}, \d{4}\.", text), text[:2000]
    assert "Proceedings of the 43rd" not in text


@pytest.mark.parametrize(
    ("surname", "marks"),
    [
        # Keys: equal,uni.  "uni" is the first affiliation used, so it is 1.
        ("Lovelace", "*,1"),
        # Keys: equal,lab.
        ("Turing", "*,2"),
        # Keys: "uni, lab", with a space after the comma.
        ("Hopper", "1,2"),
    ],
)
def test_author_marks_numbered_by_first_use(papers, surname, marks):
    words = [word for word, *_ in papers["accepted"].words(page=1)]
    assert surname in words
    # The superscript is a separate word in pdftotext's output.
    assert words[words.index(surname) + 1] == marks


# --- Running title, captions and citations ------------------------------------


def test_running_title_from_page_two(papers):
    page_1_lines = papers["accepted"].text(1, 1).splitlines()
    page_2_lines = papers["accepted"].text(2, 2).splitlines()
    assert page_2_lines[0].strip() == RUNNING_TITLE
    assert page_1_lines[0].strip() != RUNNING_TITLE


def test_page_numbers_centred(papers):
    """Check that the page number sits centred under the text block."""
    centre_bp = pt_to_bp(inches(1) + EXPECTED_LENGTHS["oddsidemargin"][0] + inches(6.75) / 2)
    for page in (1, 2):
        numbers = [word for word in papers["accepted"].words(page) if word[0] == str(page)]
        assert numbers, f"page number {page} not found"
        _, x_min, _, x_max, _ = max(numbers, key=lambda word: word[2])
        assert (x_min + x_max) / 2 == pytest.approx(centre_bp, abs=1.0)


def test_captions_label_and_position(papers):
    text = papers["accepted"].flat_text()
    assert "Figure 1. Accuracy of each method" in text
    assert "Table 1. Mean score per task." in text

    # yMin of the float's content and of its caption's first word, on the page
    # that holds the float.
    figure_words = words_on_page_with(papers["accepted"], "FIGUREBOX")
    figure_caption_top = figure_words["Accuracy"][2]
    assert figure_caption_top > figure_words["FIGUREBOX"][2], "figure caption not below the figure"
    table_words = words_on_page_with(papers["accepted"], "TABLECELL")
    table_caption_top = table_words["Mean"][2]
    assert table_caption_top < table_words["TABLECELL"][2], "table caption not above the table"


def test_citations_author_year_round(papers):
    text = papers["accepted"].flat_text()
    assert "(Knuth, 1984; Lamport, 1994)" in text
    assert "described by Knuth (1984)" in text
    # \cite behaves like \citep.
    assert "cited again as (Knuth, 1984)" in text


# --- Warnings -----------------------------------------------------------------


def test_too_wide_running_title_suppressed(tmp_path):
    long_title = " ".join(["A very long running title that will not fit"] * 4)
    paper = build_paper(tmp_path, paper_source(style_options="accepted", running_title=long_title))
    assert paper.text(2, 2).splitlines()[0].strip() == SUPPRESSED_TITLE
    assert "Package icml2026compat Warning: The running title is" in paper.unwrapped_log()


@pytest.mark.parametrize(
    "package", [r"\usepackage{fullpage}", r"\usepackage[margin=1in]{geometry}"]
)
def test_changed_layout_warns(tmp_path, package):
    paper = build_paper(tmp_path, paper_source(preamble_after_style=package))
    log = paper.unwrapped_log()
    assert "Package icml2026compat Warning: The page layout was changed" in log
    assert r"\textwidth=" in log
    assert "(expected 487.8225pt)" in log
    assert "WARNING: the page layout was changed" in paper.flat_text(1, 1)


def test_unchanged_layout_does_not_warn(papers):
    assert "icml2026compat Warning" not in papers["review"].unwrapped_log()


def test_undefined_affiliation_warns(tmp_path):
    source = paper_source(style_options="accepted", third_author_keys="uni,nowhere")
    paper = build_paper(tmp_path, source)
    assert "Affiliation key `nowhere' is used by \\icmlauthor" in paper.unwrapped_log()


def test_missing_notice_warns(tmp_path):
    source = paper_source().replace(r"\printAffiliationsAndNotice{\icmlEqualContribution}", "")
    paper = build_paper(tmp_path, source)
    assert "\\printAffiliationsAndNotice was not used" in paper.unwrapped_log()


# --- hyperref loaded elsewhere or not at all ----------------------------------


@pytest.mark.parametrize("hyperref", ("after", "none"))
def test_review_metadata_anonymous(tmp_path, hyperref):
    paper = build_paper(tmp_path, paper_source(hyperref=hyperref))
    info = paper.info()
    assert info["Author"] == "Anonymous Authors"
    assert info["Title"] == PAPER_TITLE
    assert info["Page size"].startswith("612 x 792 pts")
    for name in AUTHOR_NAMES:
        assert name not in paper.flat_text()


@pytest.mark.parametrize("hyperref", ("after", "none"))
def test_accepted_metadata_lists_authors(tmp_path, hyperref):
    paper = build_paper(tmp_path, paper_source(style_options="accepted", hyperref=hyperref))
    assert paper.info()["Author"] == ", ".join(AUTHOR_NAMES)
