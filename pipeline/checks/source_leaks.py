"""Check the rendered LaTeX sources for text that can reveal the authors without naming them.

``check_source_leaks`` reads the files that would be submitted (``.tex``,
``.bib``, ``.sty``, ``.bbl``) and reports, each as ``path:line``:

* ``acknowledgements``: an Acknowledgements section or funding text in a
  ``.tex`` file, outside comments, in review mode only;
* ``url``: a link to a code-hosting account (GitHub, GitLab, Bitbucket,
  Hugging Face), to a personal page, or to any host outside ``NEUTRAL_HOSTS``;
* ``orcid``: an ORCID iD;
* ``self-citation``: a first-person phrase such as "our previous work" in the
  same sentence as a ``\\cite`` command;
* ``hidden-text``: ``\\iffalse ... \\fi`` blocks, ``comment`` environments and
  commented-out text in ``.tex`` files.

``check_bibliography`` reports the bibliography entries written by a listed
author that the text cites in the first person (check ``self-cited-work``).

Style options that print the authors are checked in pipeline.checks.anonymity.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.checks.anonymity import (
    AnonymityCheckError,
    Finding,
    IdentityTerm,
    _line_number,
    _read_source,
    find_terms,
    fold_text,
)

logger = logging.getLogger(__name__)

# Hosts whose links name a paper or a venue, not a person. A subdomain of a
# listed host is neutral too ("export.arxiv.org", "dx.doi.org").
NEUTRAL_HOSTS = (
    "arxiv.org",
    "doi.org",
    "openreview.net",
    "anonymous.4open.science",
    # Reserved for examples (RFC 2606): they cannot belong to anyone.
    "example.org",
    "example.com",
    "example.net",
    "aclanthology.org",
    "aclweb.org",
    "proceedings.neurips.cc",
    "papers.nips.cc",
    "papers.neurips.cc",
    "proceedings.mlr.press",
    "jmlr.org",
    "icml.cc",
    "iclr.cc",
    "neurips.cc",
    "dl.acm.org",
    "ieeexplore.ieee.org",
    "link.springer.com",
    "openaccess.thecvf.com",
    "ojs.aaai.org",
    "ijcai.org",
    "sciencedirect.com",
    "nature.com",
    "semanticscholar.org",
)

# Hosts where the first path segment is a user or an organization.
CODE_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "huggingface.co")

# Path parts of personal home pages: "/~ada", "/%7Eada", "/people/ada", "/users/ada".
_PERSONAL_PATH = re.compile(r"(?:^|/)(?:~|%7e)|/(?:people|users)/", re.IGNORECASE)
# OpenReview and similar sites name a profile "~First_Last1" inside the query.
_PERSONAL_QUERY = re.compile(r"(?:^|[=&])~", re.IGNORECASE)

LEAK_SUFFIXES = frozenset({".tex", ".bib", ".sty", ".bbl"})

_ANONYMIZE_FIX = (
    "replace the link with an anonymized copy (for example on anonymous.4open.science) "
    "or remove it for the review version"
)


# --- Reading and locating ----------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return _read_source(path)
    except OSError as error:
        raise AnonymityCheckError(f"{path}: cannot read the source file: {error}") from error


def _comment_start(line: str) -> int | None:
    """Return the index of the "%" that starts a comment in ``line``, or None.

    A "%" after an odd number of backslashes is an escaped percent sign
    ("\\%"), and one after an even number ("\\\\%") starts a comment.
    """
    for index, char in enumerate(line):
        if char != "%":
            continue
        backslashes = len(line[:index]) - len(line[:index].rstrip("\\"))
        if backslashes % 2 == 0:
            return index
    return None


def _blank_comments(text: str) -> str:
    """Replace every comment with spaces, keeping offsets and line breaks."""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        start = _comment_start(line)
        if start is not None:
            lines[number] = line[:start] + " " * (len(line) - start)
    return "\n".join(lines)


# --- Acknowledgements ------------------------------------------------------------

_ACKNOWLEDGEMENTS_HEADING = re.compile(
    r"\\(?:section|subsection|subsubsection|paragraph|subparagraph|chapter)\*?\s*"
    r"(?:\[[^\]]*\]\s*)?\{\s*acknowledge?ments?\s*\}"
    r"|\\begin\s*\{\s*(?:ack|acks|acknowledge?ments?)\s*\}",
    re.IGNORECASE,
)
_FUNDING_PHRASE = re.compile(
    r"\b(?:supported\s+by|funded\s+by|grant\s+no\b|grant\s+nos\b|grant\s+number"
    r"|we\s+thank|we\s+gratefully\s+acknowledge)",
    re.IGNORECASE,
)


def _acknowledgement_findings(path: Path, text: str) -> list[Finding]:
    uncommented = _blank_comments(text)
    findings = []
    for match in _ACKNOWLEDGEMENTS_HEADING.finditer(uncommented):
        findings.append(
            Finding(
                "acknowledgements",
                f"{path}:{_line_number(text, match.start())}",
                "Acknowledgements section in the review version",
                "remove the section for review, and add it back for the camera-ready version",
            )
        )
    # "~" is a non-breaking space in TeX, so "we~thank" reads as "we thank".
    for match in _FUNDING_PHRASE.finditer(uncommented.replace("~", " ")):
        phrase = " ".join(match.group().split())
        findings.append(
            Finding(
                "acknowledgements",
                f"{path}:{_line_number(text, match.start())}",
                f'funding or thanks text ("{phrase}") in the review version',
                "remove it for review, because thanks and grants can identify the authors; "
                "add it back for the camera-ready version",
            )
        )
    return findings


# --- URLs --------------------------------------------------------------------------

_URL_COMMAND = re.compile(r"\\(?:url|href)\s*\{([^{}]*)\}")
_BARE_URL = re.compile(
    r"(?:\b(?:https?|ftp)://|(?<![\w./@-])www\.|(?<![\w./@-])(?:"
    + "|".join(re.escape(host) for host in CODE_HOSTS)
    + r")/)[^\s{}<>\"'\\]+",
    re.IGNORECASE,
)
_BIB_FIELD = re.compile(r"[,{]\s*([A-Za-z_-]+)\s*=\s*", re.ASCII)
_ORCID = re.compile(r"(?<![\d-])\d{4}-\d{4}-\d{4}-\d{3}[\dX](?![\d-])")


def _iter_urls(text: str) -> Iterator[tuple[int, str]]:
    """Yield the offset and text of each URL in \\url{}, \\href{}{} and bare text."""
    spans: list[tuple[int, int]] = []
    for match in _URL_COMMAND.finditer(text):
        url = match.group(1).strip()
        spans.append((match.start(), match.end()))
        if url:
            yield match.start(1), url
    for match in _BARE_URL.finditer(text):
        if any(start <= match.start() < end for start, end in spans):
            continue
        yield match.start(), match.group().rstrip(".,;:)]")


def _host_matches(host: str, listed: str) -> bool:
    return host == listed or host.endswith("." + listed)


def classify_url(url: str) -> str | None:
    """Return why ``url`` can identify the authors, or None when it is neutral."""
    unescaped = re.sub(r"\\([%#_&~$])", r"\1", url)
    if unescaped.lower().startswith("mailto:"):
        return None  # the e-mail check of pipeline.checks.anonymity reports addresses
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", unescaped):
        unescaped = "http://" + unescaped
    parts = urlsplit(unescaped)
    host = (parts.hostname or "").removeprefix("www.")
    if not host:
        return "link without a web host, such as a local file path"

    for code_host in CODE_HOSTS:
        if _host_matches(host, code_host):
            if parts.path.strip("/"):
                return f"link to a user or repository on {code_host}, which names its owner"
            return None
    if _PERSONAL_PATH.search(parts.path) or _PERSONAL_QUERY.search(parts.query):
        return "link to a personal page"
    if any(_host_matches(host, neutral) for neutral in NEUTRAL_HOSTS):
        return None
    return f"link to {host}, which is not a known neutral publisher or venue host"


def _bib_field_at(text: str, offset: int) -> str | None:
    """Return the name of the .bib field whose value contains ``offset``."""
    entry_start = text.rfind("@", 0, offset)
    field_name = None
    for match in _BIB_FIELD.finditer(text, max(entry_start, 0), offset):
        field_name = match.group(1).lower()
    return field_name


def _url_findings(path: Path, text: str) -> list[Finding]:
    is_bib = path.suffix.lower() == ".bib"
    findings = []
    for offset, url in _iter_urls(text):
        if _ORCID.search(url):
            continue  # reported by the ORCID check
        if is_bib and _bib_field_at(text, offset) == "doi":
            continue  # a DOI resolves to the published work, wherever it is hosted
        reason = classify_url(url)
        if reason is not None:
            findings.append(
                Finding("url", f"{path}:{_line_number(text, offset)}", f"{reason}: {url}", _ANONYMIZE_FIX)
            )
    return findings


def _orcid_findings(path: Path, text: str) -> list[Finding]:
    return [
        Finding(
            "orcid",
            f"{path}:{_line_number(text, match.start())}",
            f"ORCID iD {match.group()}, which names its owner",
            "remove it for the review version",
        )
        for match in _ORCID.finditer(text)
    ]


# --- Self-citation -------------------------------------------------------------------

_SELF_CITATION_PHRASE = re.compile(
    r"\b(?:"
    r"(?:in\s+)?our\s+(?:own\s+)?(?:previous|earlier|prior|past|recent|preliminary)\s+"
    r"(?:work|works|paper|papers|study|studies|publication|publications|results?"
    r"|method|methods|approach|system|model|version)"
    r"|in\s+our\s+(?:previous|earlier|prior)"
    r"|we\s+(?:previously|earlier|recently)\s+"
    r"(?:showed|shown|proposed|introduced|demonstrated|reported|presented|described|found)"
    r"|we\s+have\s+(?:previously\s+|already\s+)?"
    r"(?:shown|proposed|introduced|demonstrated|reported|presented)\s+in"
    r"|as\s+we\s+(?:showed|have\s+shown|demonstrated|have\s+demonstrated|reported|found)\s+in"
    r")\b",
    re.IGNORECASE,
)
_CITE = re.compile(r"\\[A-Za-z]*cite[A-Za-z]*\*?\s*(?:\[[^\]]*\]\s*){0,2}\{([^{}]*)\}")
# A sentence ends at ".", "?" or "!" before white space, unless an abbreviation
# ends there, and at a blank line. NOTE: only the abbreviations listed here are
# known, so "Sect. 2 \cite{x}" after "our previous work" splits the sentence.
_SENTENCE_END = re.compile(
    r"(?<!\be\.g)(?<!\bi\.e)(?<!\bet al)(?<!\bcf)(?<!\bvs)(?<!\bFig)(?<!\bSec)(?<!\bEq)"
    r"[.?!](?=\s)|\n[ \t]*\n"
)


@dataclass(frozen=True)
class SelfCitation:
    """A first-person phrase and the keys cited in its sentence."""

    offset: int
    phrase: str
    keys: tuple[str, ...]


def find_self_citations(text: str) -> list[SelfCitation]:
    """Find first-person phrases that share a sentence with a citation, outside comments."""
    uncommented = _blank_comments(text).replace("~", " ")
    boundaries = [match.end() for match in _SENTENCE_END.finditer(uncommented)]
    citations = []
    for match in _SELF_CITATION_PHRASE.finditer(uncommented):
        start = max((end for end in boundaries if end <= match.start()), default=0)
        end = min((end for end in boundaries if end > match.end()), default=len(uncommented))
        cites = list(_CITE.finditer(uncommented, start, end))
        if not cites:
            continue
        keys = [key.strip() for cite in cites for key in cite.group(1).split(",") if key.strip()]
        citations.append(SelfCitation(match.start(), " ".join(match.group().split()), tuple(keys)))
    return citations


def _self_citation_findings(path: Path, text: str) -> list[Finding]:
    return [
        Finding(
            "self-citation",
            f"{path}:{_line_number(text, citation.offset)}",
            f'first-person self-citation ("{citation.phrase}") next to a citation',
            "cite your own work in the third person, e.g. 'Example et al. (2024) showed'",
        )
        for citation in find_self_citations(text)
    ]


# --- Hidden text -----------------------------------------------------------------------

_HIDDEN_FIX = (
    "delete the text, or make sure the submission archive is built with comments stripped"
)
_CONDITIONAL = re.compile(r"\\(if(?!f(?![A-Za-z]))[A-Za-z@]*|fi)(?![A-Za-z@])")
_COMMENT_ENVIRONMENT = re.compile(r"\\begin\s*\{comment\}")
# A comment with at least one word or LaTeX command in it, as opposed to "%",
# "%%%%" or a "% ------" rule.
_COMMENT_CONTENT = re.compile(r"[A-Za-z]{2,}|\\[A-Za-z@]+")


def _hidden_block_findings(path: Path, text: str) -> list[Finding]:
    """Report \\iffalse ... \\fi blocks and comment environments at their first line."""
    uncommented = _blank_comments(text)
    findings = []
    tokens = list(_CONDITIONAL.finditer(uncommented))
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.group(1) != "iffalse":
            continue
        depth = 1
        while index < len(tokens) and depth:
            depth += -1 if tokens[index].group(1) == "fi" else 1
            index += 1
        findings.append(
            Finding(
                "hidden-text",
                f"{path}:{_line_number(text, token.start())}",
                "\\iffalse block: text that is not printed but is in the submitted source",
                _HIDDEN_FIX,
            )
        )
    for match in _COMMENT_ENVIRONMENT.finditer(uncommented):
        findings.append(
            Finding(
                "hidden-text",
                f"{path}:{_line_number(text, match.start())}",
                "comment environment: text that is not printed but is in the submitted source",
                _HIDDEN_FIX,
            )
        )
    return findings


def _is_leak_text(body: str) -> bool:
    """Return True when a comment's text would be a finding of another check if it were printed."""
    return bool(
        _FUNDING_PHRASE.search(body)
        or _ACKNOWLEDGEMENTS_HEADING.search(body)
        or _SELF_CITATION_PHRASE.search(body)
        or any(True for _ in _iter_urls(body))
        or _ORCID.search(body)
    )


def _comment_findings(path: Path, text: str) -> list[Finding]:
    """Report each block of commented-out text once, at its first line.

    A block is a run of consecutive lines with a comment that contains a word
    or a command. A one-line note directly above a line of LaTeX code (such as
    the source note above each \\resultdef) documents that code and is not
    reported, unless its own text would leak.

    NOTE: this also lets through a one-line prose comment directly above a
    command line, such as "% Bob ran these runs" above "\\begin{table}".
    """
    lines = text.split("\n")
    comments: dict[int, tuple[str, bool]] = {}  # line index -> (comment text, whole line)
    for index, line in enumerate(lines):
        start = _comment_start(line)
        if start is None:
            continue
        body = line[start:].lstrip("%").strip()
        if _COMMENT_CONTENT.search(body):
            comments[index] = (body, not line[:start].strip())

    findings = []
    index = 0
    while index < len(lines):
        if index not in comments:
            index += 1
            continue
        first = index
        while index in comments:
            index += 1
        block = [comments[number] for number in range(first, index)]
        next_line = lines[index].lstrip() if index < len(lines) else ""
        body, whole_line = block[0]
        is_code_note = (
            len(block) == 1
            and whole_line
            and not body.startswith("\\")
            and next_line.startswith("\\")
            and not _is_leak_text(body)
        )
        if not is_code_note:
            findings.append(
                Finding(
                    "hidden-text",
                    f"{path}:{first + 1}",
                    f"commented-out text ({len(block)} line{'s' if len(block) > 1 else ''}) "
                    "that is not printed but is in the submitted source",
                    _HIDDEN_FIX,
                )
            )
    return findings


# --- Entry points ----------------------------------------------------------------------


def check_source_leaks(
    files: Sequence[Path],
    review: bool = True,
    author_terms: Sequence[IdentityTerm] = (),
) -> list[Finding]:
    """Check the source files that would be submitted for indirect identity leaks.

    Files with other suffixes than .tex, .bib, .sty and .bbl are skipped.
    ``review`` enables the acknowledgements check, which only applies to the
    review version. ``author_terms`` is accepted for symmetry with the other
    checks. Raises AnonymityCheckError when a file cannot be read.
    """
    del author_terms  # the rules here do not depend on who the authors are
    findings: list[Finding] = []
    for path in map(Path, files):
        suffix = path.suffix.lower()
        if suffix not in LEAK_SUFFIXES:
            continue
        text = _read_text(path)
        findings += _url_findings(path, text)
        findings += _orcid_findings(path, text)
        if suffix != ".tex":
            # Style files define macros, and .bib and .bbl files hold the titles of
            # other works, where "supported by" or "our previous" is not a leak.
            continue
        if review:
            findings += _acknowledgement_findings(path, text)
        findings += _self_citation_findings(path, text)
        findings += _hidden_block_findings(path, text)
        findings += _comment_findings(path, _blank_literals(text))
    return findings


_LITERALS = re.compile(
    r"\\begin\{(verbatim\*?|Verbatim|lstlisting)\}.*?\\end\{\1\}"  # verbatim environments
    r"|\\verb\*?(.).*?\2"  # \verb|...|
    r"|\\(?:url|href)\{[^{}\n]*\}",  # a URL argument, where % is data
    re.DOTALL,
)


def _blank_literals(text: str) -> str:
    """Blank verbatim text, \\verb and URL arguments, keeping line breaks: a % there is not a comment."""
    return _LITERALS.sub(lambda match: re.sub(r"[^\n]", " ", match.group()), text)


@dataclass(frozen=True)
class BibEntry:
    """One .bib entry: its citation key, author field and first line."""

    key: str
    authors: str
    line: int


_BIB_ENTRY = re.compile(r"@\s*([A-Za-z]+)\s*[{(]\s*([^,\s]+)\s*,")


def _braced_value(text: str, start: int) -> str:
    """Return the field value that starts at ``start``: braced, quoted or bare."""
    if start >= len(text):
        return ""
    if text[start] == "{":
        depth = 0
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                return text[start + 1 : index]
        return text[start + 1 :]
    if text[start] == '"':
        # A quote inside braces, as in M{\"u}ller, does not end the value.
        depth = 0
        for index in range(start + 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if text[index] == '"' and depth == 0:
                return text[start + 1 : index]
        return text[start + 1 :]
    match = re.match(r"[^,}\n]*", text[start:])
    return match.group() if match else ""


def parse_bib_entries(text: str) -> list[BibEntry]:
    """Parse the key, author field and line of each entry.

    @string, @comment and @preamble blocks are skipped.
    """
    entries = []
    matches = list(_BIB_ENTRY.finditer(text))
    for number, match in enumerate(matches):
        if match.group(1).lower() in ("string", "comment", "preamble"):
            continue
        end = matches[number + 1].start() if number + 1 < len(matches) else len(text)
        field = re.compile(r"[,{]\s*author\s*=\s*", re.IGNORECASE).search(text, match.start(), end)
        authors = _braced_value(text, field.end()) if field else ""
        entries.append(BibEntry(match.group(2), authors, _line_number(text, match.start())))
    return entries


def _natural_order(authors: str) -> str:
    """Rewrite a BibTeX author list so that each "Last, First" reads "First Last".

    "Last, Jr., First" becomes "First Last Jr.". Names are joined with " and ",
    as in the field.
    """
    names = []
    for name in re.split(r"\s+and\s+", authors.strip()):
        parts = [part.strip() for part in name.split(",")]
        if len(parts) == 2:
            names.append(f"{parts[1]} {parts[0]}")
        elif len(parts) >= 3:
            names.append(f"{', '.join(parts[2:])} {parts[0]} {parts[1]}")
        else:
            names.append(name)
    return " and ".join(names)


def check_bibliography(
    bib: Path, tex_files: Sequence[Path], author_terms: Sequence[IdentityTerm]
) -> list[Finding]:
    """Report citations of an author's own work that the text makes in the first person.

    An entry counts as the authors' own when its author field contains a name
    from ``author_terms``. Each finding points at the citing sentence in the
    .tex file. Returns no findings without name terms. Raises
    AnonymityCheckError when a file cannot be read.
    """
    if not bib.is_file():
        raise AnonymityCheckError(f"bibliography {bib} not found. Run `make paper` first")
    names = [term for term in author_terms if term.kind == "name"]
    own_entries: dict[str, BibEntry] = {}
    for entry in parse_bib_entries(_read_text(bib)):
        if names and find_terms(fold_text(_natural_order(entry.authors), latex=True), names):
            own_entries[entry.key] = entry
    if not own_entries:
        return []

    findings = []
    for path in map(Path, tex_files):
        text = _read_text(path)
        for citation in find_self_citations(text):
            for key in citation.keys:
                entry = own_entries.get(key)
                if entry is None:
                    continue
                findings.append(
                    Finding(
                        "self-cited-work",
                        f"{path}:{_line_number(text, citation.offset)}",
                        f'"{citation.phrase}" cites {key} ({bib}:{entry.line}), '
                        "which a listed author wrote",
                        "cite your own work in the third person; do not anonymize published work",
                    )
                )
    return findings
