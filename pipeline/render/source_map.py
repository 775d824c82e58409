"""Map each line of the rendered ``main.tex`` back to the template line that produced it.

The loader puts an invisible marker, ``\\x1e<template>:<line>\\x1f``, at the
start of every template line that does not continue an open tag. After
rendering, ``strip_markers`` removes them and keeps, for each output line,
the last marker before its first character of text: a line whose only
content was a statement (``((* if ... *))``) leaves its marker in front of
the next output line, and the marker of the line that wrote the text comes
after it.
"""

from __future__ import annotations

import re

import jinja2

START, END = "\x1e", "\x1f"
_MARKER = re.compile(f"{START}([^{END}]*){END}")
_OPENERS = ("((*", "(((", "((=")
_CLOSERS = {"((*": "*))", "(((": ")))", "((=": "=))"}


def mark_lines(source: str, name: str) -> str:
    """Return ``source`` with a marker at the start of every line that is not inside a tag."""
    lines = source.split("\n")
    marked = []
    open_tag = None
    for number, line in enumerate(lines, start=1):
        marked.append(line if open_tag else f"{START}{name}:{number}{END}{line}")
        position = 0
        while True:
            if open_tag:
                end = line.find(_CLOSERS[open_tag], position)
                if end < 0:
                    break
                position, open_tag = end + 3, None
            else:
                starts = [(line.find(opener, position), opener) for opener in _OPENERS]
                starts = [(index, opener) for index, opener in starts if index >= 0]
                if not starts:
                    break
                index, open_tag = min(starts)
                position = index + 3
    return "\n".join(marked)


class MarkingLoader(jinja2.FileSystemLoader):
    """A file loader whose templates carry line markers (see ``mark_lines``)."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        return mark_lines(source, template), filename, uptodate


def strip_markers(text: str) -> tuple[str, list[str | None]]:
    """Remove the markers; return the text and, per output line, ``template:line`` or None."""
    clean_lines = []
    origins: list[str | None] = []
    for line in text.split("\n"):
        origin = None
        position = 0
        for match in _MARKER.finditer(line):
            if line[position : match.start()].strip():
                break  # text came before this marker, so the line's origin is already known
            origin = match.group(1)
            position = match.end()
        if origin is None:
            first = _MARKER.search(line)
            origin = first.group(1) if first else None
        clean_lines.append(_MARKER.sub("", line))
        origins.append(origin)
    return "\n".join(clean_lines), origins
