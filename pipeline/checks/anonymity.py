"""Check the review build of the paper for anything that identifies its authors.

The identity terms (names, e-mails, affiliations, usernames, URLs, extra terms)
come from the git-ignored authors file, whose format paper/authors.example.yaml
documents. Each term is searched for in:

* every TeX source file under the sources folder (``build/`` excluded),
  reported as ``file:line``;
* the PDF text, reported by page. pdftotext extracts it twice: with
  ``-layout``, and in reading order, which keeps together a name that wraps
  at the end of a line inside a column;
* the PDF Info dictionary, the XMP packet, link targets, and the metadata that
  pdfTeX copies from every included PDF figure (``/PTEX.InfoDict``, ``/PTEX.FileName``).

Two rules are checked even without an authors file: the PDF author metadata
must be empty or "Anonymous Authors", and no e-mail address other than the
style's placeholder anon.email@domain.com may appear in the sources, the PDF
text or its links. The checker assumes the review build, so it also reports a
style loaded with the ``accepted`` or ``preprint`` option.

NOTE: a term is reported wherever it appears, including a bibliography entry
that spells an author's full name, although ICML allows citing one's own
published work in the third person. There is no allow-list yet.

Exit status: 0 clean, 1 findings, 2 when a check could not run.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers.expat import ExpatError

import yaml
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import DictionaryObject, IndirectObject

from pipeline.atomic import write_text_atomically

logger = logging.getLogger(__name__)

DEFAULT_AUTHORS = Path("paper/authors.yaml")
DEFAULT_SOURCES = Path("paper")
DEFAULT_PDF = Path("paper/build/main.pdf")
DEFAULT_ALLOWLIST = Path("paper/anonymity-allowlist.yaml")

PLACEHOLDER_EMAIL = "anon.email@domain.com"
ANONYMOUS_AUTHOR = "Anonymous Authors"
SOURCE_SUFFIXES = frozenset({".tex", ".bib", ".bbl", ".sty", ".cls", ".bst", ".cfg", ".clo"})
BUILD_FOLDER = "build"
FIGURE_SUFFIXES = frozenset({".pdf", ".png", ".jpg", ".jpeg"})
MIN_TERM_CHARACTERS = 3
PDFTOTEXT_TIMEOUT_S = 120

# Style options that print the real authors instead of "Anonymous Authors".
NON_ANONYMOUS_STYLE_OPTIONS = ("accepted", "preprint")


class AnonymityCheckError(Exception):
    """A check could not run: missing input, unreadable file or missing tool."""


class AuthorsFileError(AnonymityCheckError):
    """The authors file is not valid YAML or does not follow the documented format."""


# --- Report ------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One place where the review build may reveal who wrote the paper."""

    check: str  # "identity", "email", "pdf-author", "style-option", or a check of source_leaks or pdf_leaks
    location: str  # "paper/main.tex:12", "paper/build/main.pdf page 3", ...
    message: str
    fix: str

    def format(self) -> str:
        return f"{self.location}: {self.message} — {self.fix}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@dataclass
class AnonymityReport:
    """Findings and warnings of one run, with what was checked."""

    findings: list[Finding] = field(default_factory=list)
    allowed: list[tuple[Finding, str]] = field(default_factory=list)  # reviewed false positives, with the reason
    warnings: list[str] = field(default_factory=list)
    source_files: list[Path] = field(default_factory=list)
    pdf: Path | None = None
    pdf_pages: int = 0
    identity_terms: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        scope = ", ".join(
            [
                _count(len(self.source_files), "source file"),
                _count(self.pdf_pages, "PDF page"),
                _count(self.identity_terms, "identity term"),
            ]
        )
        if self.clean:
            return f"anonymity check: clean ({scope})"
        return f"anonymity check: {_count(len(self.findings), 'finding')} ({scope})"

    def format_text(self) -> str:
        lines = [f"warning: {warning}" for warning in self.warnings]
        lines += [f"allowed: {finding.location}: {finding.message} (reason: {reason})" for finding, reason in self.allowed]
        lines += [finding.format() for finding in self.findings]
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "status": "clean" if self.clean else "findings",
            "findings": [
                {"check": f.check, "location": f.location, "message": f.message, "fix": f.fix}
                for f in self.findings
            ],
            "allowed": [
                {"check": f.check, "location": f.location, "message": f.message, "reason": reason}
                for f, reason in self.allowed
            ],
            "warnings": list(self.warnings),
            "source_files": [str(path) for path in self.source_files],
            "pdf": str(self.pdf) if self.pdf else None,
            "pdf_pages": self.pdf_pages,
            "identity_terms": self.identity_terms,
            "summary": self.summary(),
        }


# --- Text folding --------------------------------------------------------------
#
# Sources and PDF text are folded into a "skeleton": accents removed,
# casefolded, and every run of non-alphanumeric characters reduced to one
# space. LaTeX commands count as spaces. Braces, \- and hyphenated line ends
# become a JOIN mark, which a term may skip between two letters but which
# still ends a word: "M{\"u}ller" matches "Muller", and "\href{a.org}{b}"
# does not read as "a.orgb". Each skeleton character keeps the span of the
# original text it came from, so a match maps back to a line or a page.

JOIN = "\x01"

_HYPHENATED_LINE_END = r"[-\u2010\u2011\u00ad][ \t]*\r?\n[ \t]*"

_LATEX_MARKUP = re.compile(
    r"""
    (?P<accent>\\[`'^"~=.]\s*
        (?:\{\s*(?P<accent_braced>\\[ij](?![A-Za-z])|[A-Za-z])\s*\}
        |(?P<accent_bare>\\[ij](?![A-Za-z])|[A-Za-z])))
    | (?P<letter_accent>\\[uvHtcdbrk]
        (?:\s*\{\s*(?P<letter_braced>\\[ij](?![A-Za-z])|[A-Za-z])\s*\}
        |\s+(?P<letter_bare>[A-Za-z])))
    | (?P<special>\\(?P<special_name>ss|ae|AE|oe|OE|aa|AA|o|O|l|L|i|j|dh|DH|th|TH|ng|NG|dj|DJ)
        (?![A-Za-z])[ \t]*)
    | (?P<join>\\-|%[ \t]*\r?\n[ \t]*|"""
    + _HYPHENATED_LINE_END
    + r""")
    | (?P<command>\\(?:[A-Za-z@]+\*?|.))
    | (?P<brace>[{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_PLAIN_MARKUP = re.compile(f"(?P<join>{_HYPHENATED_LINE_END})")

# Letters that the LaTeX macros \ss, \o, \aa, ... print. Matching ignores case.
_LATEX_SPECIAL_LETTERS = {
    "ss": "ss", "ae": "ae", "oe": "oe", "aa": "a", "o": "o", "l": "l",
    "i": "i", "j": "j", "dh": "d", "th": "th", "ng": "ng", "dj": "d",
}  # fmt: skip

# Letters that NFKD does not split into a base letter and an accent.
_LETTER_FOLDS = {
    "ø": "o", "đ": "d", "ł": "l", "æ": "ae", "œ": "oe", "þ": "th",
    "ð": "d", "ı": "i", "ħ": "h", "ŧ": "t", "ŋ": "ng", "ĸ": "k",
}  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    """Fold one character to lowercase ASCII-like letters, " " for a separator, or ""."""
    # Spacing accents (¨, ´), modifier letters, combining marks and format
    # characters such as the soft hyphen sit inside words, so they vanish.
    if unicodedata.category(char) in ("Mn", "Me", "Sk", "Lm", "Cf"):
        return ""
    folded = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.combining(part):
            continue
        for letter in part.casefold():
            letter = _LETTER_FOLDS.get(letter, letter)
            folded.append(letter if letter.isalnum() else " ")
    return "".join(folded)


def _latex_replacement(match: re.Match[str]) -> str:
    """Return the raw text that one piece of LaTeX markup stands for."""
    if match.group("accent") or match.group("letter_accent"):
        letter = (
            match.group("accent_braced")
            or match.group("accent_bare")
            or match.group("letter_braced")
            or match.group("letter_bare")
        )
        return letter.lstrip("\\")
    if match.group("special"):
        return _LATEX_SPECIAL_LETTERS[match.group("special_name").lower()]
    if match.group("command"):
        return " "
    return JOIN  # braces, \-, an empty comment before a line break, a hyphenated line end


@dataclass(frozen=True)
class FoldedText:
    """A text's skeleton, with the original span of every skeleton character."""

    original: str
    skeleton: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, str]:
        """Map the skeleton slice [start, end) to its original offset and text."""
        original_start = self.starts[start]
        return original_start, self.original[original_start : self.ends[end - 1]]


def fold_text(text: str, latex: bool = False) -> FoldedText:
    """Fold ``text`` for matching. With ``latex``, TeX markup is folded too."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def append(piece: str, start: int, end: int) -> None:
        for char in piece:
            if char in (" ", JOIN) and (not chars or chars[-1] == " "):
                continue
            if chars and chars[-1] == JOIN and char in (" ", JOIN):
                chars[-1] = char  # a space next to a JOIN mark wins
                continue
            chars.append(char)
            starts.append(start)
            ends.append(end)

    position = 0
    markup = _LATEX_MARKUP if latex else _PLAIN_MARKUP
    for match in markup.finditer(text):
        for index in range(position, match.start()):
            append(_fold_char(text[index]), index, index + 1)
        replacement = _latex_replacement(match) if latex else JOIN
        folded = "".join(char if char == JOIN else _fold_char(char) for char in replacement)
        append(folded, match.start(), match.end())
        position = match.end()
    for index in range(position, len(text)):
        append(_fold_char(text[index]), index, index + 1)

    return FoldedText(text, "".join(chars), tuple(starts), tuple(ends))


# --- Identity terms ------------------------------------------------------------


@dataclass(frozen=True)
class IdentityTerm:
    """One string from the authors file, with the pattern that finds it."""

    text: str
    kind: str  # "name", "email", "affiliation", "username", "url", "project_url", "extra_term"
    skeletons: tuple[str, ...]  # folded spellings, e.g. "zoe muller" and "zoe mueller"
    pattern: re.Pattern[str]


_TERM_LABELS = {
    "name": "author name",
    "email": "author e-mail",
    "affiliation": "affiliation",
    "username": "username",
    "url": "author URL",
    "project_url": "project URL",
    "extra_term": "identifying term",
}

_TERM_FIXES = {
    "name": "remove it, and cite your own work in the third person",
    "email": f"remove it, because the review build shows only {PLACEHOLDER_EMAIL}",
    "affiliation": "remove it, because the review build shows only 'Anonymous Institution'",
    "username": "remove it or replace the link with an anonymized copy",
    "url": "remove the link or replace it with an anonymized copy",
    "project_url": "remove the link or replace it with an anonymized copy",
    "extra_term": "remove it for the review version",
}


def _term_pattern(skeletons: Sequence[str]) -> re.Pattern[str]:
    """Compile the folded spellings of a term into one regex over folded text.

    A JOIN mark may sit between any two letters. A space in the term may also
    be absent in the text, because pdftotext removes the hyphen of "Jean-" at
    a line end and joins it to "Pierre", so "Ada Example" matches
    "AdaExample" too. A term that starts or ends with a letter must not touch
    another letter, and one that ends with a digit must not touch another
    letter or digit. A digit may follow a name, as an affiliation mark does
    ("Example1").
    """
    alternatives = []
    for skeleton in skeletons:
        parts = []
        for index, char in enumerate(skeleton):
            if char == " ":
                parts.append(f"[ {JOIN}]?")
                continue
            if index > 0 and skeleton[index - 1] != " ":
                parts.append(f"{JOIN}?")
            parts.append(re.escape(char))
        before = r"(?<![^\W\d_])" if skeleton[0].isalpha() else r"(?<!\w)"
        after = r"(?![^\W\d_])" if skeleton[-1].isalpha() else r"(?!\w)"
        alternatives.append(before + "".join(parts) + after)
    return re.compile("|".join(alternatives))


def _strip_url(url: str) -> str:
    """Drop the scheme, a leading "www." and trailing slashes, as a paper often does."""
    stripped = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", url.strip())
    stripped = re.sub(r"^www\.", "", stripped, flags=re.IGNORECASE)
    return stripped.rstrip("/")


def _string_list(value: object, where: str, path: Path) -> list[str]:
    """Accept one string or a list of strings for an optional field."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
        raise AuthorsFileError(f"{path}: {where} must be a string or a list of strings")
    return values


# German umlauts are also written "ae", "oe", "ue": "Müller" is often "Mueller".
_UMLAUT_SPELLINGS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})


def _make_term(text: str, kind: str, where: str, path: Path) -> IdentityTerm:
    searched = _strip_url(text) if kind in ("url", "project_url") else text
    spellings = {searched, unicodedata.normalize("NFC", searched).translate(_UMLAUT_SPELLINGS)}
    skeletons = sorted(
        {fold_text(spelling, latex=True).skeleton.replace(JOIN, "").strip() for spelling in spellings}
    )
    if any(sum(char.isalnum() for char in skeleton) < MIN_TERM_CHARACTERS for skeleton in skeletons):
        raise AuthorsFileError(
            f"{path}: {where} {text!r} has fewer than {MIN_TERM_CHARACTERS} letters or digits, "
            "so it would match unrelated text. Remove it or write it out in full"
        )
    return IdentityTerm(
        text=text, kind=kind, skeletons=tuple(skeletons), pattern=_term_pattern(skeletons)
    )


_AUTHOR_FIELDS = {
    "email": "email",
    "affiliation": "affiliation",
    "usernames": "username",
    "urls": "url",
}
_TOP_LEVEL_LISTS = {"project_urls": "project_url", "extra_terms": "extra_term"}


def load_identity_terms(path: Path) -> list[IdentityTerm]:
    """Read the authors file and return every identity term in it, deduplicated.

    Raises FileNotFoundError when the file is missing and AuthorsFileError when
    it is unreadable, not valid YAML or not in the documented format.
    """
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise AuthorsFileError(f"{path}: cannot read the authors file: {error}") from error
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as error:
        raise AuthorsFileError(f"{path}: invalid YAML: {error}") from error

    if isinstance(data, list):  # a bare list of authors is accepted too
        data = {"authors": data}
    if not isinstance(data, dict):
        raise AuthorsFileError(
            f"{path}: expected a mapping with an 'authors' list. "
            "See paper/authors.example.yaml for the format"
        )
    # The acknowledgements are text for the camera-ready paper, not an identity to search for.
    unknown = sorted(set(data) - {"authors", "acknowledgements", *_TOP_LEVEL_LISTS})
    if unknown:
        allowed = ", ".join(["authors", *_TOP_LEVEL_LISTS, "acknowledgements"])
        raise AuthorsFileError(f"{path}: unknown top-level field(s) {unknown} (allowed: {allowed})")
    authors = data.get("authors")
    if not isinstance(authors, list) or not authors:
        raise AuthorsFileError(f"{path}: 'authors' must be a non-empty list of authors")

    terms: list[IdentityTerm] = []
    for number, author in enumerate(authors, start=1):
        where = f"authors entry {number}"
        if not isinstance(author, dict):
            raise AuthorsFileError(f"{path}: {where} must be a mapping with at least a 'name'")
        unknown = sorted(set(author) - {"name", *_AUTHOR_FIELDS})
        if unknown:
            allowed = ", ".join(["name", *_AUTHOR_FIELDS])
            raise AuthorsFileError(f"{path}: {where}: unknown field(s) {unknown} (allowed: {allowed})")
        name = author.get("name")
        if not isinstance(name, str) or not name.strip():
            raise AuthorsFileError(f"{path}: {where}: missing required field 'name' (a non-empty string)")
        terms.append(_make_term(name, "name", f"{where} name", path))
        for key, kind in _AUTHOR_FIELDS.items():
            for value in _string_list(author.get(key), f"{where} {key}", path):
                terms.append(_make_term(value, kind, f"{where} {key}", path))

    for key, kind in _TOP_LEVEL_LISTS.items():
        for value in _string_list(data.get(key), key, path):
            terms.append(_make_term(value, kind, key, path))

    unique: dict[tuple[str, str], IdentityTerm] = {}
    for term in terms:
        unique.setdefault((term.kind, term.pattern.pattern), term)
    return list(unique.values())


@dataclass(frozen=True)
class TermMatch:
    """One occurrence of an identity term, at an offset of the original text."""

    term: IdentityTerm
    offset: int
    matched: str


def find_terms(folded: FoldedText, terms: Sequence[IdentityTerm]) -> list[TermMatch]:
    """Find every term in ``folded``, in text order.

    A match that lies inside a longer one is dropped, so "ada@example.org"
    reports the e-mail and not also the name "Ada Example" within it. Of two
    matches with the same span, the closer one wins: first the term written
    exactly as in the text ("ada.example.org" is a URL, not the e-mail
    "ada@example.org"), then the term whose spacing equals the text's.
    """
    candidates = []
    for term in terms:
        for match in term.pattern.finditer(folded.skeleton):
            _, original = folded.span(match.start(), match.end())
            closeness = 0
            if " ".join(original.split()).casefold() in _written_forms(term):
                closeness = 2
            elif match.group().replace(JOIN, "") in term.skeletons:
                closeness = 1
            candidates.append((match.start(), match.end(), closeness, term))
    candidates.sort(key=lambda candidate: (candidate[0] - candidate[1], -candidate[2]))

    selected: list[tuple[int, int, IdentityTerm]] = []
    for start, end, _, term in candidates:
        if not any(outer_start <= start and end <= outer_end for outer_start, outer_end, _ in selected):
            selected.append((start, end, term))

    matches = []
    for start, end, term in sorted(selected, key=lambda item: item[0]):
        offset, matched = folded.span(start, end)
        matches.append(TermMatch(term, offset, matched))
    return matches


def _written_forms(term: IdentityTerm) -> tuple[str, str]:
    """Return the term as written and without a URL scheme, casefolded."""
    return term.text.casefold(), _strip_url(term.text).casefold()


def _identity_finding(match: TermMatch, location: str) -> Finding:
    term = match.term
    message = f'{_TERM_LABELS[term.kind]} "{term.text}"'
    matched_text = " ".join(match.matched.split())
    if matched_text.casefold() not in _written_forms(term):
        message += f' (as "{matched_text}")'
    return Finding("identity", location, message, _TERM_FIXES[term.kind])


# --- E-mail addresses ------------------------------------------------------------

# An address, or the grouped form "{ada,bob}@example.org" (in TeX,
# "\{ada,bob\}@example.org"). A plain local part may not follow a backslash
# or "@", which keeps TeX internals such as \@ifnextchar out.
_EMAIL = re.compile(
    r"(?:(?<![\w.%+\\@-])[A-Za-z0-9._%+-]+|\\?\{[^{}@\s]+\\?\})"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)


def find_emails(text: str) -> Iterator[tuple[int, str]]:
    """Yield the offset and text of every e-mail address except the style's placeholder."""
    for match in _EMAIL.finditer(text):
        if match.group().casefold() != PLACEHOLDER_EMAIL:
            yield match.start(), match.group()


def _email_finding(location: str, address: str) -> Finding:
    return Finding(
        "email",
        location,
        f"e-mail address {address}",
        f"remove it, because the review build shows only {PLACEHOLDER_EMAIL}",
    )


# --- Sources ---------------------------------------------------------------------


def list_source_files(sources: Path) -> list[Path]:
    """List the TeX source files under ``sources``, skipping its build folder."""
    files = []
    for directory, subdirectories, names in os.walk(sources):
        if Path(directory) == sources and BUILD_FOLDER in subdirectories:
            subdirectories.remove(BUILD_FOLDER)
        subdirectories.sort()
        for name in sorted(names):
            if Path(name).suffix.lower() in SOURCE_SUFFIXES:
                files.append(Path(directory) / name)
    return files


def _read_source(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        logger.warning("%s is not valid UTF-8, so it is read as Latin-1", path)
        return raw.decode("latin-1")


def _line_number(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


_STYLE_LOAD = re.compile(r"\\(?:usepackage|RequirePackage|documentclass)\s*\[([^\]]*)\]\s*\{([^}]*)\}")
_TEX_COMMENT = re.compile(r"(?<!\\)%.*")


def _style_option_findings(path: Path, text: str) -> list[Finding]:
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _STYLE_LOAD.finditer(_TEX_COMMENT.sub("", line)):
            options = [option.strip() for option in match.group(1).split(",")]
            for option in NON_ANONYMOUS_STYLE_OPTIONS:
                if option in options:
                    findings.append(
                        Finding(
                            "style-option",
                            f"{path}:{number}",
                            f"{match.group(2).strip()} is loaded with the '{option}' option, "
                            "which prints the authors' names",
                            "remove the option to build the anonymous review version",
                        )
                    )
    return findings


def check_sources(files: Sequence[Path], terms: Sequence[IdentityTerm]) -> list[Finding]:
    """Search each source file for identity terms, e-mail addresses and style options."""
    author_emails = {term.text.casefold() for term in terms if term.kind == "email"}
    findings: list[Finding] = []
    for path in files:
        try:
            text = _read_source(path)
        except OSError as error:
            raise AnonymityCheckError(f"{path}: cannot read the source file: {error}") from error

        for match in find_terms(fold_text(text, latex=True), terms):
            findings.append(_identity_finding(match, f"{path}:{_line_number(text, match.offset)}"))

        # An author's address is already reported as an identity term.
        for offset, address in find_emails(text):
            if address.casefold() not in author_emails:
                findings.append(_email_finding(f"{path}:{_line_number(text, offset)}", address))

        if path.suffix.lower() == ".tex":
            findings.extend(_style_option_findings(path, text))
    return findings


# --- PDF text --------------------------------------------------------------------


def extract_pdf_text(pdf: Path, layout: bool) -> str:
    """Extract the text of ``pdf`` with pdftotext, with a form feed after each page."""
    executable = shutil.which("pdftotext")
    if executable is None:
        raise AnonymityCheckError(
            "pdftotext not found, so the PDF text cannot be checked. "
            "Install poppler-utils (e.g. `apt-get install poppler-utils`)"
        )
    command = [executable, "-enc", "UTF-8", *(["-layout"] if layout else []), str(pdf), "-"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=PDFTOTEXT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as error:
        raise AnonymityCheckError(f"pdftotext timed out after {PDFTOTEXT_TIMEOUT_S} s on {pdf}") from error
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        raise AnonymityCheckError(f"pdftotext failed on {pdf} (exit {result.returncode}): {stderr}")
    return result.stdout.decode("utf-8", "replace")


def check_pdf_text(pdf: Path, texts: Sequence[str], terms: Sequence[IdentityTerm]) -> list[Finding]:
    """Search the extracted texts of one PDF, reporting each term or address once per page."""
    author_emails = {term.text.casefold() for term in terms if term.kind == "email"}
    terms_seen: set[tuple[str, int]] = set()
    emails_seen: set[tuple[str, int]] = set()
    findings: list[Finding] = []
    for text in texts:
        for match in find_terms(fold_text(text), terms):
            page = text.count("\f", 0, match.offset) + 1
            if (match.term.pattern.pattern, page) not in terms_seen:
                terms_seen.add((match.term.pattern.pattern, page))
                findings.append(_identity_finding(match, f"{pdf} page {page}"))

        for offset, address in find_emails(text):
            page = text.count("\f", 0, offset) + 1
            key = (address.casefold(), page)
            if address.casefold() not in author_emails and key not in emails_seen:
                emails_seen.add(key)
                findings.append(_email_finding(f"{pdf} page {page}", address))
    return findings


# --- PDF metadata ----------------------------------------------------------------


def _resolve(value: object) -> object:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _metadata_findings(location: str, value: str, terms: Sequence[IdentityTerm]) -> list[Finding]:
    findings = []
    reported: set[str] = set()
    for match in find_terms(fold_text(value), terms):
        if match.term.pattern.pattern not in reported:
            reported.add(match.term.pattern.pattern)
            findings.append(_identity_finding(match, location))
    return findings


def _author_rule_finding(location: str, author: str) -> Finding | None:
    if author.strip().casefold() in ("", ANONYMOUS_AUTHOR.casefold()):
        return None
    return Finding(
        "pdf-author",
        location,
        f'author is "{author}", not "{ANONYMOUS_AUTHOR}" or empty',
        f"build in review mode, or set \\hypersetup{{pdfauthor={{{ANONYMOUS_AUTHOR}}}}}",
    )


def _iter_figure_metadata(page: DictionaryObject) -> Iterator[tuple[str, str, str]]:
    """Yield (figure, field, value) for the metadata pdfTeX kept from included PDFs."""
    pending = [page.get("/Resources")]
    seen: set[tuple[int, int]] = set()
    while pending:
        resources = _resolve(pending.pop())
        if not isinstance(resources, DictionaryObject):
            continue
        xobjects = _resolve(resources.get("/XObject"))
        if not isinstance(xobjects, DictionaryObject):
            continue
        for name, reference in xobjects.items():
            if isinstance(reference, IndirectObject):
                if (reference.idnum, reference.generation) in seen:
                    continue
                seen.add((reference.idnum, reference.generation))
            xobject = _resolve(reference)
            if not isinstance(xobject, DictionaryObject):
                continue
            file_name = _resolve(xobject.get("/PTEX.FileName"))
            figure = str(file_name) if file_name is not None else str(name)
            if file_name is not None:
                yield figure, "PTEX.FileName", str(file_name)
            info = _resolve(xobject.get("/PTEX.InfoDict"))
            if isinstance(info, DictionaryObject):
                for key, value in info.items():
                    yield figure, str(key).lstrip("/"), str(_resolve(value))
            pending.append(xobject.get("/Resources"))


def _iter_link_targets(page: DictionaryObject) -> Iterator[str]:
    annotations = _resolve(page.get("/Annots"))
    if not isinstance(annotations, list):
        return
    for annotation in annotations:
        annotation = _resolve(annotation)
        if not isinstance(annotation, DictionaryObject):
            continue
        action = _resolve(annotation.get("/A"))
        if isinstance(action, DictionaryObject) and action.get("/URI") is not None:
            yield str(_resolve(action["/URI"]))


def check_pdf_metadata(pdf: Path, reader: PdfReader, terms: Sequence[IdentityTerm]) -> list[Finding]:
    """Check the Info dictionary, the XMP packet, link targets and figure metadata."""
    findings: list[Finding] = []

    info = reader.metadata or {}
    for key, value in info.items():
        field_name = str(key).lstrip("/")
        value = str(_resolve(value))
        findings += _metadata_findings(f"{pdf} metadata {field_name}", value, terms)
        if field_name == "Author":
            finding = _author_rule_finding(f"{pdf} metadata Author", value)
            findings += [finding] if finding else []

    root = _resolve(reader.trailer["/Root"])
    metadata_stream = _resolve(root.get("/Metadata")) if isinstance(root, DictionaryObject) else None
    if metadata_stream is not None:
        xmp_text = html.unescape(metadata_stream.get_data().decode("utf-8", "replace"))
        findings += _metadata_findings(f"{pdf} XMP metadata", xmp_text, terms)
        xmp = reader.xmp_metadata
        for creator in (xmp.dc_creator or []) if xmp is not None else []:
            finding = _author_rule_finding(f"{pdf} XMP metadata dc:creator", str(creator))
            findings += [finding] if finding else []

    author_emails = {term.text.casefold() for term in terms if term.kind == "email"}
    for number, page in enumerate(reader.pages, start=1):
        for target in _iter_link_targets(page):
            location = f"{pdf} page {number} link {target}"
            findings += _metadata_findings(location, target, terms)
            for _, address in find_emails(target):
                if address.casefold() not in author_emails:
                    findings.append(_email_finding(location, address))
        for figure, field_name, value in _iter_figure_metadata(page):
            location = f"{pdf} page {number} figure {figure} metadata {field_name}"
            findings += _metadata_findings(location, value, terms)
    return findings


# --- Entry points ----------------------------------------------------------------


def _missing_authors_warning(authors: Path) -> str:
    example = authors.parent / "authors.example.yaml"
    return (
        f"{authors} not found, so the identity checks ran with no author names, e-mails "
        f"or affiliations. To run them, copy {example} to {authors} and fill in the real "
        "authors (the file is git-ignored)."
    )


def _review_mode(files: Sequence[Path]) -> bool:
    """Whether the sources build the review version: no style option prints the authors."""
    for path in files:
        if path.suffix == ".tex" and any(
            re.search(rf"\\usepackage\[[^\]]*\b{option}\b", _read_source(path))
            for option in NON_ANONYMOUS_STYLE_OPTIONS
        ):
            return False
    return True


def _source_leak_findings(files: Sequence[Path], terms: Sequence[IdentityTerm]) -> list[Finding]:
    """Acknowledgements, URLs, ORCID iDs, self-citations, hidden text, and first-person citations of own work."""
    from pipeline.checks.source_leaks import check_bibliography, check_source_leaks

    findings = check_source_leaks(files, review=_review_mode(files), author_terms=terms)
    tex_files = [path for path in files if path.suffix == ".tex"]
    for bib in (path for path in files if path.suffix == ".bib"):
        findings += check_bibliography(bib, tex_files, terms)
    return findings


def check_anonymity(
    sources: Path | str = DEFAULT_SOURCES,
    pdf: Path | str = DEFAULT_PDF,
    authors: Path | str = DEFAULT_AUTHORS,
    allowlist: Path | str | None = None,
) -> AnonymityReport:
    """Run every anonymity check on the rendered sources and the built PDF.

    Raises AnonymityCheckError (AuthorsFileError for the authors file) when a
    check cannot run. A missing authors file only adds a warning. Findings
    that an ``allowlist`` entry matches are moved to ``report.allowed``.
    """
    sources, pdf, authors = Path(sources), Path(pdf), Path(authors)
    report = AnonymityReport(pdf=pdf)

    try:
        terms = load_identity_terms(authors)
    except FileNotFoundError:
        terms = []
        report.warnings.append(_missing_authors_warning(authors))
    report.identity_terms = len(terms)

    if not sources.is_dir():
        raise AnonymityCheckError(f"sources folder {sources} not found. Run `make paper` first")
    report.source_files = list_source_files(sources)
    if not report.source_files:
        suffixes = ", ".join(sorted(SOURCE_SUFFIXES))
        raise AnonymityCheckError(
            f"no source files ({suffixes}) found under {sources}. Run `make paper` first"
        )
    if not pdf.is_file():
        raise AnonymityCheckError(f"PDF {pdf} not found. Run `make paper` first")

    logger.info("checking %d source files under %s", len(report.source_files), sources)
    report.findings += check_sources(report.source_files, terms)
    report.findings += _source_leak_findings(report.source_files, terms)

    logger.info("checking the text of %s", pdf)
    texts = [extract_pdf_text(pdf, layout=False), extract_pdf_text(pdf, layout=True)]
    if not any(text.strip() for text in texts):
        raise AnonymityCheckError(
            f"pdftotext extracted no text from {pdf}, so its text cannot be checked. "
            "Rebuild it with `make paper`"
        )
    report.findings += check_pdf_text(pdf, texts, terms)

    logger.info("checking the metadata of %s", pdf)
    try:
        reader = PdfReader(pdf)
        report.pdf_pages = len(reader.pages)
        report.findings += check_pdf_metadata(pdf, reader, terms)
    except (PyPdfError, OSError, ValueError, KeyError, ExpatError) as error:
        raise AnonymityCheckError(f"cannot read the metadata of {pdf}: {error}") from error

    from pipeline.checks.pdf_leaks import check_figure_files, check_pdf_objects

    logger.info("checking the objects of %s and the figure files", pdf)
    # A term the page-text check already reported is not repeated for the content stream that draws it.
    seen = {match for finding in report.findings if finding.check in ("identity", "email")
            for match in re.findall(r'"([^"]+)"', finding.message)}
    report.findings += [
        finding for finding in check_pdf_objects(pdf, terms, include_metadata=False)
        if not (finding.check in ("identity", "email") and set(re.findall(r'"([^"]+)"', finding.message)) & seen)
    ]
    figures = sorted(
        path for path in sources.rglob("*")
        if path.suffix.lower() in FIGURE_SUFFIXES and BUILD_FOLDER not in path.relative_to(sources).parts
    )
    report.findings += check_figure_files(figures, terms)
    if allowlist is not None:
        apply_allowlist(report, load_allowlist(Path(allowlist)))
    return report


@dataclass(frozen=True)
class AllowEntry:
    """A reviewed false positive: findings of ``check`` whose location starts with ``location`` and whose
    message contains ``text`` are reported as allowed, with ``reason``."""

    check: str
    reason: str
    location: str = ""
    text: str = ""

    def matches(self, finding: Finding) -> bool:
        return (finding.check == self.check and finding.location.startswith(self.location)
                and self.text in finding.message)


def load_allowlist(path: Path) -> list[AllowEntry]:
    """Read the allowlist: a YAML list of {check, reason, location?, text?}. A missing file is an empty list."""
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as error:
        raise AnonymityCheckError(f"{path}: cannot read the allowlist ({error})") from error
    if not isinstance(data, list):
        raise AnonymityCheckError(f"{path}: expected a list of entries with check and reason")
    entries = []
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict) or set(item) - {"check", "reason", "location", "text"}:
            raise AnonymityCheckError(f"{path}: entry {index}: expected the fields check, reason, location, text")
        if not str(item.get("check") or "").strip() or not str(item.get("reason") or "").strip():
            raise AnonymityCheckError(
                f"{path}: entry {index}: every entry needs a check and a reason, so that a reader knows why "
                "the finding is safe"
            )
        entries.append(AllowEntry(str(item["check"]), str(item["reason"]), str(item.get("location") or ""),
                                  str(item.get("text") or "")))
    return entries


def apply_allowlist(report: AnonymityReport, entries: Sequence[AllowEntry]) -> None:
    """Move the findings an entry matches from ``report.findings`` to ``report.allowed``."""
    kept = []
    for finding in report.findings:
        entry = next((entry for entry in entries if entry.matches(finding)), None)
        if entry is None:
            kept.append(finding)
        else:
            report.allowed.append((finding, entry.reason))
    report.findings = kept


def write_json_atomically(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to a temporary file next to ``path``, then rename it."""
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.checks.anonymity",
        description="Check the review build of the paper for anything that identifies its authors. "
        "Exit status: 0 clean, 1 findings, 2 when a check could not run.",
    )
    parser.add_argument(
        "--authors", type=Path, default=DEFAULT_AUTHORS,
        help=f"YAML file with the authors' identities (default: {DEFAULT_AUTHORS}), "
        "in the format of paper/authors.example.yaml",
    )  # fmt: skip
    parser.add_argument(
        "--sources", type=Path, default=DEFAULT_SOURCES,
        help="folder of rendered TeX sources, searched recursively except its build/ folder "
        f"(default: {DEFAULT_SOURCES})",
    )  # fmt: skip
    parser.add_argument(
        "--pdf", type=Path, default=DEFAULT_PDF, help=f"built PDF (default: {DEFAULT_PDF})"
    )
    parser.add_argument(
        "--allowlist", type=Path, default=DEFAULT_ALLOWLIST,
        help="YAML list of reviewed false positives, each with check, reason and optionally location and text "
        f"(default: {DEFAULT_ALLOWLIST}; absent means none)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks, print the report and return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )

    try:
        report = check_anonymity(sources=args.sources, pdf=args.pdf, authors=args.authors, allowlist=args.allowlist)
    except AnonymityCheckError as error:
        logger.error("%s", error)
        print("anonymity check: could not run (see the error above)")
        if args.json:
            # Replace any earlier report, so that a stale "clean" cannot be read.
            try:
                write_json_atomically(args.json, {"status": "error", "error": str(error)})
            except OSError as write_error:
                logger.error("cannot write the JSON report %s: %s", args.json, write_error)
        return 2

    print(report.format_text())
    if args.json:
        try:
            write_json_atomically(args.json, report.to_dict())
        except OSError as error:
            logger.error("cannot write the JSON report %s: %s", args.json, error)
            return 2
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
