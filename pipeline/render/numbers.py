"""Relative numbers the paper states: one definition each, so that no sentence computes its own."""

from __future__ import annotations


def percent_change(new: float, old: float) -> float:
    """Return the change from ``old`` to ``new`` in percent of ``old``: 100 (new - old) / old.

    Negative when ``new`` is smaller. ``old`` must be positive.
    """
    if old <= 0:
        raise ValueError(f"percent_change: the reference value must be positive, got {old}.")
    return 100.0 * (new - old) / old


def percent_of(part: float, whole: float) -> float:
    """Return ``part`` in percent of ``whole``: 100 part / whole. ``whole`` must be positive."""
    if whole <= 0:
        raise ValueError(f"percent_of: the whole must be positive, got {whole}.")
    return 100.0 * part / whole
