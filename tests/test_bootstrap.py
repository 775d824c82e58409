"""Bootstrap intervals: coverage of known means and differences, pairing, and input checks."""

import numpy as np
import pytest

from pipeline.stats.bootstrap import bootstrap_mean, paired_difference, paired_task_average


def test_interval_covers_the_true_mean_in_most_trials():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        values = rng.normal(50.0, 10.0, size=40)
        interval = bootstrap_mean(values, seed=trial)
        covered += interval.low <= 50.0 <= interval.high
    # A 95% interval from 40 samples covers the mean in about 93-95% of trials.
    assert 0.88 <= covered / 200 <= 0.99


def test_interval_contains_the_sample_mean_and_counts_samples():
    interval = bootstrap_mean([0.0, 100.0, 100.0, 0.0, 100.0])
    assert interval.mean == 60.0
    assert interval.low < 60.0 < interval.high
    assert interval.num_samples == 5


def test_constant_scores_have_a_zero_width_interval():
    interval = bootstrap_mean([100.0] * 8)
    assert (interval.low, interval.mean, interval.high) == (100.0, 100.0, 100.0)


def test_same_seed_same_interval():
    values = [10.0, 20.0, 35.0, 50.0, 90.0]
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    assert bootstrap_mean(values, seed=3) != bootstrap_mean(values, seed=4)


def test_known_difference_is_covered_and_excludes_zero():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 100, size=60)  # prompts differ widely in difficulty
    first = base + 5.0 + rng.normal(0, 1.0, size=60)  # the first method is 5 points better on every prompt
    result = paired_difference(first, base)
    assert result.interval.low <= 5.0 <= result.interval.high
    assert result.excludes_zero
    assert result.share_positive == 1.0


def test_pairing_detects_what_unpaired_intervals_miss():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 100, size=30)
    first = base + 2.0
    separate_first, separate_second = bootstrap_mean(first), bootstrap_mean(base)
    assert separate_first.low < separate_second.high  # the separate intervals overlap
    assert paired_difference(first, base).excludes_zero


def test_no_difference_does_not_exclude_zero():
    rng = np.random.default_rng(4)
    first = rng.normal(50, 10, size=50)
    second = first + rng.normal(0, 5, size=50) * np.where(np.arange(50) % 2 == 0, 1, -1)
    result = paired_difference(first, first.copy())
    assert result.interval.low == result.interval.high == 0.0
    assert not result.excludes_zero
    assert 0.0 <= paired_difference(first, second).share_positive <= 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bootstrap_mean([]), "non-empty"),
        (lambda: bootstrap_mean([1.0, float("nan")]), "finite"),
        (lambda: bootstrap_mean([1.0], confidence=1.5), "confidence"),
        (lambda: paired_difference([1.0, 2.0], [1.0]), "equal lengths"),
    ],
)
def test_bad_inputs_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_task_average_weighs_tasks_equally():
    rng = np.random.default_rng(5)
    short = rng.uniform(0, 100, size=10)
    long = rng.uniform(0, 100, size=80)
    # The first method is 4 points better on the short task and 10 better on the long one: 7 on average.
    pairs = [(short + 4.0 + rng.normal(0, 1, 10), short), (long + 10.0 + rng.normal(0, 1, 80), long)]
    result = paired_task_average(pairs)
    assert result.interval.low <= 7.0 <= result.interval.high
    assert abs(result.interval.mean - 7.0) < 0.5  # pooling the prompts would give about 9.3
    assert result.interval.num_samples == 90
    assert result.excludes_zero


def test_task_average_of_opposite_effects_includes_zero():
    rng = np.random.default_rng(6)
    base = rng.uniform(0, 100, size=40)
    pairs = [(base + 5.0 + rng.normal(0, 3, 40), base), (base - 5.0 + rng.normal(0, 3, 40), base)]
    result = paired_task_average(pairs)
    assert not result.excludes_zero
    assert 0.05 < result.share_positive < 0.95


def test_task_average_rejects_unpaired_or_missing_tasks():
    with pytest.raises(ValueError, match="at least one task"):
        paired_task_average([])
    with pytest.raises(ValueError, match="Task 1: paired scores need equal lengths"):
        paired_task_average([([1.0], [2.0]), ([1.0, 2.0], [3.0])])
