"""Bootstrap intervals for mean scores and for paired differences between methods.

Both resample prompts with replacement (Efron and Tibshirani, "An
Introduction to the Bootstrap", 1993, percentile intervals). A paired
difference resamples the same prompts for both methods, so that the
variation between prompts, which both methods share, cancels out. Resampling
uses numpy's ``default_rng`` with a fixed seed, so an interval reproduces
exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile bootstrap interval.

    Attributes:
        mean: Mean over samples.
        low: Lower end of the interval.
        high: Upper end of the interval.
        num_samples: Number of samples the mean is over.
    """

    mean: float
    low: float
    high: float
    num_samples: int


@dataclass(frozen=True)
class PairedDifference:
    """The mean of ``first - second`` over shared samples, with its interval.

    Attributes:
        interval: Mean difference and its percentile bootstrap interval.
        share_positive: Share of resamples in which the mean difference is above zero.
    """

    interval: Interval
    share_positive: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or entirely below zero."""
        return self.interval.low > 0 or self.interval.high < 0


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` resamples with replacement of ``values``, shape (resamples,)."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(values), size=(resamples, len(values)))  # (R, n)
    return values[indices].mean(axis=1)


def _percentiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _check(values: Sequence[float], confidence: float, resamples: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"Bootstrap needs a non-empty list of scores, got {len(array)} values.")
    if not np.all(np.isfinite(array)):
        raise ValueError("Bootstrap scores must be finite numbers.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}.")
    return array


def bootstrap_mean(
    values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval:
    """Return the mean of ``values`` with its percentile bootstrap interval."""
    array = _check(values, confidence, resamples)
    low, high = _percentiles(_resampled_means(array, resamples, seed), confidence)
    return Interval(float(array.mean()), low, high, len(array))


def paired_difference(
    first: Sequence[float],
    second: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedDifference:
    """Return the mean of ``first[i] - second[i]`` with a paired bootstrap interval.

    Both sequences contain scores of the same samples in the same order.
    """
    if len(first) != len(second):
        raise ValueError(f"Paired scores need equal lengths, got {len(first)} and {len(second)}.")
    differences = _check(np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64),
                         confidence, resamples)
    means = _resampled_means(differences, resamples, seed)
    low, high = _percentiles(means, confidence)
    interval = Interval(float(differences.mean()), low, high, len(differences))
    return PairedDifference(interval, float((means > 0).mean()))


def paired_task_average(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> PairedDifference:
    """Return the unweighted mean over tasks of each task's mean ``first - second``, with its interval.

    ``pairs`` contains one (first, second) pair of paired score lists per task.
    Each resample draws prompts with replacement within every task (a
    stratified bootstrap), so each task keeps its weight in the average, as
    in a table's average column.
    """
    if not pairs:
        raise ValueError("A task average needs at least one task.")
    rng = np.random.default_rng(seed)
    task_means = np.zeros(len(pairs))
    resampled = np.zeros(resamples)  # (R,) sum over tasks of resampled task means
    for index, (first, second) in enumerate(pairs):
        if len(first) != len(second):
            raise ValueError(f"Task {index}: paired scores need equal lengths, got {len(first)} and {len(second)}.")
        differences = _check(np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64),
                             confidence, resamples)
        task_means[index] = differences.mean()
        draws = rng.integers(0, len(differences), size=(resamples, len(differences)))  # (R, n_task)
        resampled += differences[draws].mean(axis=1)
    resampled /= len(pairs)
    low, high = _percentiles(resampled, confidence)
    interval = Interval(float(task_means.mean()), low, high, sum(len(first) for first, _ in pairs))
    return PairedDifference(interval, float((resampled > 0).mean()))
