"""The positioning map behind Related Work: ``paper/content/related_work.yaml``.

The map lists prior work in three groups (``kv_cache``, ``long_context``,
``random_walks``), a paragraph title, lead and closing sentence per group in
``sections``, and CircuitKV's own row for the appendix table in ``ours``.
Errors name the file and the field, e.g.
``paper/content/related_work.yaml: kv_cache[2].cite: missing``.

Text fields are plain text without digits: the environment escapes them when
they are inserted, so ``%``, ``&`` and ``_`` are written as they are, and a
field cites only through its entry's ``cite`` key. The one LaTeX field is
``name_latex``, the printed form of a name with a digit (``H$_2$O``), which
is checked against ``name``.

``related_context`` returns the template variable ``related``::

    {
        "sections": [                 # paragraphs, in the order of `sections`
            {
                "group": str,         # kv_cache, long_context or random_walks
                "title": str,
                "lead": str,
                "closing": str,
                "entries": [ENTRY, ...],
                "points_to_table": bool,  # true for the first paragraph with table rows
            },
        ],
        "table": [ENTRY, ...],        # entries with in_table, in the map's order
        "ours": {"name": str, "signal": str, "budget": str},
        "cite_keys": [str, ...],      # every key the map cites, in the map's order
    }

    ENTRY = {"name": Latex, "cite": Latex, "signal": str, "budget": str,
             "differs": str, "in_table": bool}

``name`` and ``cite`` are ``Latex`` values and are inserted as they are; the
other strings are escaped by the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    model_validator,
)

from pipeline.render.content_files import display_path, read_model
from pipeline.render.latex import Latex, escape

REPOSITORY = Path(__file__).resolve().parents[2]
RELATED_PATH = REPOSITORY / "paper" / "content" / "related_work.yaml"
BIB_PATH = REPOSITORY / "templates" / "references.bib"
GROUPS = ("kv_cache", "long_context", "random_walks")
NOT_APPLICABLE = "n/a"

# Characters that only LaTeX markup needs, so plain text never contains them.
_MARKUP = re.compile(r"[\\${}]")
_DIGIT = re.compile(r"[0-9]")
# The bibliography keys the map accepts: a letter, then letters, digits or : . _ -.
_CITE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9:._-]*")
# Letters, spaces, hyphens and apostrophes, with digits only in math subscripts: H$_2$O.
_NAME_LATEX = re.compile(r"(?:[A-Za-z .'-]|\$_(?:[0-9]|\{[0-9]+\})\$)+")


class RelatedError(ValueError):
    """The Related Work map cannot be read, is invalid, or cites unknown keys."""


def _plain_text(value: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise ValueError("empty")
    if _MARKUP.search(text):
        raise ValueError(
            f"{text!r} contains LaTeX markup (one of \\ $ {{ }}); write plain text, "
            "which the renderer escapes, and cite only through the cite key"
        )
    if _DIGIT.search(text):
        raise ValueError(
            f"{text!r} contains a digit, which the paper prints only through result macros; spell it out"
        )
    return text


def _phrase(value: str) -> str:
    if value.endswith("."):
        raise ValueError(f"{value!r} ends with a period; write a phrase, the template ends the sentence")
    return value


def _sentence(value: str) -> str:
    if not value.endswith("."):
        raise ValueError(f"{value!r} does not end with a period; write whole sentences")
    return value


def _cite_key(value: str) -> str:
    if not _CITE_KEY.fullmatch(value):
        raise ValueError(f"{value!r} is not a bibliography key (a letter, then letters, digits or : . _ -)")
    return value


PlainText = Annotated[str, AfterValidator(_plain_text)]
Phrase = Annotated[str, AfterValidator(_plain_text), AfterValidator(_phrase)]
Sentences = Annotated[str, AfterValidator(_plain_text), AfterValidator(_sentence)]
CiteKey = Annotated[str, AfterValidator(_cite_key)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entry(_Section):
    """One prior work: how it is printed, what it scores tokens by, and how CircuitKV differs."""

    name: str = Field(min_length=1)
    name_latex: str | None = Field(default=None, description="printed form of a name with a digit, e.g. H$_2$O")
    cite: CiteKey
    signal: Phrase
    budget: Phrase = Field(description=f"budget policy, or {NOT_APPLICABLE!r}")
    differs: Sentences
    in_table: StrictBool = False

    @model_validator(mode="after")
    def _printable_name(self) -> Entry:
        if _MARKUP.search(self.name):
            raise ValueError(f"name: {self.name!r} contains LaTeX markup; put the printed form in name_latex")
        if self.name_latex is None:
            if _DIGIT.search(self.name):
                raise ValueError(
                    f"name_latex: missing; the name {self.name!r} contains a digit, which prose may print "
                    "only in math, so give its printed form, e.g. H$_2$O"
                )
            return self
        if not _NAME_LATEX.fullmatch(self.name_latex):
            raise ValueError(
                f"name_latex: {self.name_latex!r} may hold only letters, spaces, hyphens and math subscripts "
                "such as $_2$"
            )
        if re.sub(r"[${}_]", "", self.name_latex) != self.name:
            raise ValueError(f"name_latex: {self.name_latex!r} does not print the name {self.name!r}")
        return self

    def printed_name(self) -> Latex:
        """Return the name as LaTeX: ``name_latex`` where given, else the escaped ``name``."""
        return Latex(self.name_latex) if self.name_latex is not None else escape(self.name)


class Paragraph(_Section):
    """The title, first sentence and last sentences of one group's paragraph."""

    group: str
    title: Phrase
    lead: Sentences
    closing: Sentences

    @model_validator(mode="after")
    def _known_group(self) -> Paragraph:
        if self.group not in GROUPS:
            raise ValueError(f"group: {self.group!r} is not one of {', '.join(GROUPS)}")
        return self


class Ours(_Section):
    """CircuitKV's row of the appendix table."""

    name: PlainText
    signal: Phrase
    budget: Phrase


class RelatedMap(_Section):
    """The whole map, as ``related_work.yaml`` contains it."""

    sections: list[Paragraph] = Field(min_length=1)
    kv_cache: list[Entry] = Field(min_length=1)
    long_context: list[Entry] = Field(min_length=1)
    random_walks: list[Entry] = Field(min_length=1)
    ours: Ours

    _source: Path = PrivateAttr(default=RELATED_PATH)

    @model_validator(mode="after")
    def _consistent(self) -> RelatedMap:
        groups = [paragraph.group for paragraph in self.sections]
        for index, group in enumerate(groups):
            if group in groups[:index]:
                raise ValueError(f"sections[{index}].group: {group!r} appears twice")
        missing = [group for group in GROUPS if group not in groups]
        if missing:
            raise ValueError(
                f"sections: no paragraph for {', '.join(missing)}; add one with group, title, lead and closing"
            )

        seen_names: dict[str, str] = {}
        seen_cites: dict[str, str] = {}
        for location, entry in self.located_entries():
            if entry.name in seen_names:
                raise ValueError(f"{location}.name: {entry.name!r} repeats {seen_names[entry.name]}.name")
            if entry.cite in seen_cites:
                raise ValueError(f"{location}.cite: {entry.cite!r} repeats {seen_cites[entry.cite]}.cite")
            seen_names[entry.name] = location
            seen_cites[entry.cite] = location
        if not any(entry.in_table for _, entry in self.located_entries()):
            raise ValueError("no entry has in_table: true, so the appendix table would hold only CircuitKV")
        return self

    @property
    def source(self) -> Path:
        """The file the map was read from; error messages name it."""
        return self._source

    def entries(self, group: str) -> list[Entry]:
        """Return the entries of ``group`` in the map's order."""
        return getattr(self, group)

    def located_entries(self) -> list[tuple[str, Entry]]:
        """List every entry with its location for messages (``kv_cache[2]``), in the order of ``sections``."""
        return [
            (f"{paragraph.group}[{index}]", entry)
            for paragraph in self.sections
            for index, entry in enumerate(self.entries(paragraph.group))
        ]


def load_related(path: Path = RELATED_PATH) -> RelatedMap:
    """Read and validate the map. Every problem raises ``RelatedError`` naming the file and the field."""
    related = read_model(path, RelatedMap, RelatedError, f"a mapping with sections, {', '.join(GROUPS)} and ours")
    related._source = path
    return related


def _field_value(text: str, start: int, path: Path, key: str) -> tuple[str, int]:
    """Read one field value at ``text[start]``: ``{...}`` with nested braces, ``"..."`` or a bare word."""
    if text[start] == "{":
        depth = 0
        for position in range(start, len(text)):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    return text[start + 1:position], position + 1
        raise RelatedError(f"{display_path(path)}: entry {key}: unbalanced braces.")
    if text[start] == '"':
        end = text.find('"', start + 1)
        if end < 0:
            raise RelatedError(f"{display_path(path)}: entry {key}: unterminated quoted value.")
        return text[start + 1:end], end + 1
    match = re.compile(r"[^\s,}]+").match(text, start)
    if match is None:
        raise RelatedError(f"{display_path(path)}: entry {key}: a field has no value.")
    return match.group(), match.end()


_ENTRY_START = re.compile(r"@\s*(\w+)\s*\{\s*([^,\s]+)\s*,")
_FIELD_START = re.compile(r"\s*(\w+)\s*=\s*")
_SKIPPED_TYPES = ("comment", "string", "preamble")


def read_bibliography(path: Path) -> dict[str, dict[str, str]]:
    """Parse a .bib file into ``{key: {field: value}}``, with the entry type under ``ENTRYTYPE``.

    The parser reads braced values (nested braces included), quoted values and
    bare words, which is all that ``references.bib`` uses. It does not expand
    ``@string`` macros or ``#`` concatenation. A repeated key raises ``RelatedError``.
    """
    if not path.is_file():
        raise RelatedError(f"{display_path(path)} not found.")
    text = path.read_text(encoding="utf-8")
    entries: dict[str, dict[str, str]] = {}
    for match in _ENTRY_START.finditer(text):
        entry_type, key = match.group(1).lower(), match.group(2)
        if entry_type in _SKIPPED_TYPES:
            continue
        if key in entries:
            raise RelatedError(f"{display_path(path)}: the key {key} appears twice; keys must be unique.")
        fields = {"ENTRYTYPE": entry_type}
        position = match.end()
        while True:
            field = _FIELD_START.match(text, position)
            if field is None:
                break
            value, position = _field_value(text, field.end(), path, key)
            fields[field.group(1).lower()] = " ".join(value.split())
            separator = re.compile(r"\s*,").match(text, position)
            if separator is None:
                break
            position = separator.end()
        if not re.compile(r"\s*\}").match(text, position):
            raise RelatedError(f"{display_path(path)}: entry {key}: expected `field = {{value}},` or a closing brace.")
        entries[key] = fields
    return entries


def check_citations(related: RelatedMap, bib_path: Path = BIB_PATH) -> None:
    """Raise ``RelatedError`` listing every ``cite`` key of ``related`` that ``bib_path`` lacks."""
    known = read_bibliography(bib_path)
    unknown = [
        f"{location}.cite: {entry.cite}"
        for location, entry in related.located_entries()
        if entry.cite not in known
    ]
    if unknown:
        raise RelatedError(
            f"{display_path(related.source)}: cite keys not found in {display_path(bib_path)}: "
            f"{'; '.join(unknown)}. Add the entries to the bibliography or correct the keys."
        )


def _entry_context(entry: Entry) -> dict:
    return {
        "name": entry.printed_name(),
        "cite": Latex(entry.cite),
        "signal": entry.signal,
        "budget": entry.budget,
        "differs": entry.differs,
        "in_table": entry.in_table,
    }


def related_context(path: Path = RELATED_PATH, bib_path: Path = BIB_PATH) -> dict:
    """Load the map, check its citations against ``bib_path`` and return the template variable ``related``."""
    related = load_related(path)
    check_citations(related, bib_path)

    sections = []
    table_pointed = False
    for paragraph in related.sections:
        entries = [_entry_context(entry) for entry in related.entries(paragraph.group)]
        has_table_rows = any(entry["in_table"] for entry in entries)
        sections.append(
            {
                "group": paragraph.group,
                "title": paragraph.title,
                "lead": paragraph.lead,
                "closing": paragraph.closing,
                "entries": entries,
                "points_to_table": has_table_rows and not table_pointed,
            }
        )
        table_pointed = table_pointed or has_table_rows

    return {
        "sections": sections,
        "table": [entry for section in sections for entry in section["entries"] if entry["in_table"]],
        "ours": {"name": related.ours.name, "signal": related.ours.signal, "budget": related.ours.budget},
        "cite_keys": [entry.cite for _, entry in related.located_entries()],
    }
