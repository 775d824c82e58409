"""Haystack text for RULER-style needle-in-a-haystack prompts.

Two haystacks follow RULER (Hsieh et al., 2024, "RULER: What's the Real Context
Size of Your Long-Context Language Models?"):

* the "noise" haystack, the five sentences of ``NOISE_TEXT`` repeated, one
  repetition per line;
* the "essay" haystack, running text from a directory of ``.txt`` files (RULER
  uses Paul Graham's essays). The project ships no essays. Without a directory
  the text of the standard-library module ``pydoc_data.topics`` is used, so that
  prompts can be built offline. That text differs between Python versions.

A haystack's size is counted in units (sentences for noise, words for essays),
and ``render`` inserts needle sentences at sentence boundaries at given depths.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

NOISE_TEXT = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NOISE_SENTENCES = tuple(sentence + "." for sentence in NOISE_TEXT.rstrip(".").split(". "))

# Environment variable that the command line reads for the essay directory.
ESSAYS_DIR_ENV = "ESSAYS_DIR"

# A sentence ends at ".", "!" or "?" (optionally followed by a closing quote or
# bracket) before a space. RULER splits with nltk's punkt model instead, which
# needs a data download.
_SENTENCE_END = re.compile(r"(?<=[.!?]) |(?<=[.!?]['\")\]]) ")


def split_sentences(text: str) -> list[str]:
    """Split single-spaced ``text`` into sentences so that ``" ".join`` restores it."""
    return [sentence for sentence in _SENTENCE_END.split(text) if sentence]


def insertion_points(num_boundaries: int, depths: Sequence[float]) -> list[int]:
    """Map depths in percent (0 = start, 100 = end) to boundary indices in [0, num_boundaries].

    The index is ``int(num_boundaries * depth / 100)``, as in RULER's niah.py.
    """
    for depth in depths:
        if not 0 <= depth <= 100:
            raise ValueError(f"Needle depth {depth} is outside [0, 100] percent.")
    return [int(num_boundaries * depth / 100) for depth in depths]


def insert_needles(units: list[str], needles: Sequence[str], depths: Sequence[float]) -> list[str]:
    """Return ``units`` with ``needles[i]`` inserted before the unit at ``depths[i]`` percent.

    Needles that map to the same boundary keep their order.
    """
    if len(needles) != len(depths):
        raise ValueError(f"Got {len(needles)} needles but {len(depths)} depths.")
    positions = insertion_points(len(units), depths)
    result = list(units)
    # Insert from the back so that earlier positions stay valid.
    for position, needle in sorted(zip(positions, needles), key=lambda pair: pair[0], reverse=True):
        result.insert(position, needle)
    return result


class NoiseHaystack:
    """RULER's noise haystack: ``NOISE_TEXT`` repeated, one repetition per line."""

    name = "noise"
    unit = "sentences"

    def render(self, size: int, needles: Sequence[str], depths: Sequence[float]) -> str:
        """Build ``size`` noise sentences with each needle on its own line.

        Needles go between lines, and the last line may be a partial repetition.
        The size step is then one sentence (about 5 tokens) instead of a whole
        line (about 24 tokens), so a 1,024-token prompt can meet a ±2% target.
        """
        _check_size(size)
        per_line = len(NOISE_SENTENCES)
        sentences = [NOISE_SENTENCES[i % per_line] for i in range(size)]
        lines = [" ".join(sentences[start : start + per_line]) for start in range(0, size, per_line)]
        return "\n".join(insert_needles(lines, needles, depths))


class EssayHaystack:
    """RULER's essay haystack: the first ``size`` words of a text, repeated when too short."""

    name = "essay"
    unit = "words"

    def __init__(self, text: str):
        self.words = text.split()
        if not self.words:
            raise ValueError("The essay haystack text is empty.")

    def render(self, size: int, needles: Sequence[str], depths: Sequence[float]) -> str:
        """Build the first ``size`` words (whitespace collapsed) with needles between sentences."""
        _check_size(size)
        repeats = -(-size // len(self.words))
        text = " ".join((self.words * repeats)[:size])
        sentences = split_sentences(text)
        return " ".join(insert_needles(sentences, needles, depths))


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"Haystack size must be >= 0, got {size}.")


def read_essays(essays_dir: str | Path | None = None) -> str:
    """Return the essay text: all ``*.txt`` files of ``essays_dir`` in name order, or the default.

    The default, used when ``essays_dir`` is None, is the text of the Python
    help topics in ``pydoc_data.topics``, sorted by topic name.
    """
    if essays_dir is None:
        logger.info("No essay directory given: using the pydoc_data.topics text as the essay haystack")
        return _pydoc_topics_text()

    directory = Path(essays_dir).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Essay directory {directory} not found. Point {ESSAYS_DIR_ENV} (or the essay directory "
            "option) at a directory of .txt files, or leave it unset to use the built-in default."
        )
    paths = sorted(directory.glob("*.txt"))
    if not paths:
        raise FileNotFoundError(
            f"Essay directory {directory} contains no .txt files. Add plain-text essays there, "
            f"or point {ESSAYS_DIR_ENV} at another directory."
        )
    logger.info("Reading %d essays from %s", len(paths), directory)
    return "\n".join(path.read_text(encoding="utf-8") for path in paths)


def describe_essays(essays_dir: str | Path | None = None) -> str:
    """Name the essay text without its path: its source and the first 12 hex digits of its SHA-256.

    Results record this, so that runs on different essay collections never
    pass for one another, and no local path (or user name) enters them.
    """
    digest = hashlib.sha256(read_essays(essays_dir).encode("utf-8")).hexdigest()[:12]
    source = "pydoc_data.topics" if essays_dir is None else "essay directory"
    return f"{source}, sha256 {digest}"


def _pydoc_topics_text() -> str:
    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise FileNotFoundError(
            "The default essay haystack needs the standard-library module pydoc_data, which this "
            f"Python installation lacks. Set {ESSAYS_DIR_ENV} to a directory of .txt essays."
        ) from error
    return "\n".join(topics[name] for name in sorted(topics))
