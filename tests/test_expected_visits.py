"""Exact expected visits against Monte Carlo walkers, and on hand-made graphs."""

import math

import pytest
import torch
from test_walkers import bridge_graph

from pipeline.methods import build_method
from pipeline.methods.expected_visits import expected_visits
from pipeline.methods.walkers import walk_visits

SINKS = 4


def rows_of(matrix: torch.Tensor):
    """Row function over a dense hand-made attention matrix."""
    return lambda positions: matrix[positions]


def random_attention(n: int, seed: int, sink_mass: float = 0.0) -> torch.Tensor:
    """Random causal attention rows; ``sink_mass`` extra weight spread on the sinks of each row."""
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.rand(n, n, generator=generator).pow(3).tril()
    matrix[:, :SINKS] += sink_mass / SINKS
    matrix = matrix.tril()
    return matrix / matrix.sum(dim=1, keepdim=True)


def last_token_mass(n: int, walkers: float = 1.0) -> torch.Tensor:
    mass = torch.zeros(n, dtype=torch.float64)
    mass[n - 1] = walkers
    return mass


@pytest.mark.parametrize("absorbing", [False, True])
@pytest.mark.parametrize("max_steps", [3, None])
def test_exact_matches_monte_carlo_within_four_standard_errors(absorbing, max_steps):
    n, walkers = 40, 200_000
    matrix = random_attention(n, seed=1, sink_mass=2.0)
    exact = expected_visits(rows_of(matrix), n, last_token_mass(n), max_steps, 1.0, SINKS, absorbing, block=16)
    generator = torch.Generator().manual_seed(0)
    sampled = walk_visits(rows_of(matrix), n, n - 1, walkers, max_steps, 1.0, SINKS, generator, absorbing)

    # A walk visits each position at most once, so a visit count is binomial(N, x).
    probability = exact.clamp(0, 1)
    standard_error = (walkers * probability * (1 - probability)).sqrt()
    deviation = (sampled - walkers * exact).abs()
    assert torch.all(deviation <= 4 * standard_error + 1e-6), (deviation / standard_error.clamp_min(1e-12)).max()


@pytest.mark.parametrize("block", [1, 5, 16, 256])
def test_block_size_does_not_change_the_result(block):
    n = 37
    matrix = random_attention(n, seed=2)
    reference = expected_visits(rows_of(matrix), n, last_token_mass(n), None, 0.5, SINKS, block=256)
    result = expected_visits(rows_of(matrix), n, last_token_mass(n), None, 0.5, SINKS, block=block)
    assert torch.allclose(result, reference, atol=1e-12)
    finite = expected_visits(rows_of(matrix), n, last_token_mass(n), 4, 0.5, SINKS, block=block)
    finite_reference = expected_visits(rows_of(matrix), n, last_token_mass(n), 4, 0.5, SINKS, block=256)
    assert torch.allclose(finite, finite_reference, atol=1e-12)


def test_exact_equals_dense_matrix_series():
    """x = pi_0 (I + P + ... + P^S) and pi_0 (I - P)^-1, with P built densely from the definition."""
    n, temperature = 20, 2.0
    matrix = random_attention(n, seed=3).double()
    transition = torch.zeros(n, n, dtype=torch.float64)
    for i in range(SINKS + 1, n):
        weights = matrix[i, SINKS:i].pow(1 / temperature)
        transition[i, SINKS:i] = weights / weights.sum()
    start = last_token_mass(n)

    series, power = start.clone(), start.clone()
    for _ in range(5):
        power = power @ transition
        series += power
    finite = expected_visits(rows_of(matrix.float()), n, start, 5, temperature, SINKS, block=7)
    assert torch.allclose(finite, series, atol=1e-6)

    inverse = start @ torch.linalg.inv(torch.eye(n, dtype=torch.float64) - transition)
    unlimited = expected_visits(rows_of(matrix.float()), n, start, None, temperature, SINKS, block=7)
    assert torch.allclose(unlimited, inverse, atol=1e-6)


def test_chain_visits_every_node_once():
    n = 12
    matrix = torch.zeros(n, n)
    matrix[:, :SINKS] = 0.1
    for i in range(1, n):
        matrix[i, i - 1] = 1.0
    visits = expected_visits(rows_of(matrix), n, last_token_mass(n), None, 1.0, SINKS)
    assert torch.allclose(visits[SINKS:], torch.ones(n - SINKS, dtype=torch.float64))
    assert visits[:SINKS].sum() == 0


def test_bridge_token_outranks_its_neighbours():
    n, bridge = 40, 15
    matrix = bridge_graph(n, bridge)
    visits = expected_visits(rows_of(matrix), n, last_token_mass(n), 10, 1.0, SINKS)
    assert visits[bridge] > visits[bridge - 1]
    assert visits[bridge] > visits[bridge + 1 : n - 1].max()


def test_absorbing_sinks_shorten_walks_by_their_attention_mass():
    """Every row puts mass m on the sinks and 1 - m on the previous token: a walk survives k moves with (1 - m)^k."""
    n, sink_mass = 30, 0.3
    matrix = torch.zeros(n, n)
    for i in range(1, n):
        matrix[i, : min(i, SINKS)] = sink_mass / min(i, SINKS)
        if i - 1 >= SINKS:
            matrix[i, i - 1] = 1 - sink_mass
    visits = expected_visits(rows_of(matrix), n, last_token_mass(n), None, 1.0, SINKS, absorbing=True)
    distance = torch.arange(n - 1 - SINKS, -1, -1)  # moves from the last token to positions s .. n-1
    assert torch.allclose(visits[SINKS:], (1 - sink_mass) ** distance.double(), atol=1e-9)
    # The sinks receive the mass that left the walk; with excluded sinks it all stays on the chain.
    assert math.isclose(float(visits[:SINKS].sum()), 1.0, abs_tol=1e-9)
    excluded = expected_visits(rows_of(matrix), n, last_token_mass(n), None, 1.0, SINKS, absorbing=False)
    assert torch.allclose(excluded[SINKS:], torch.ones(n - SINKS, dtype=torch.float64))


def test_window_start_spreads_walkers_evenly():
    method = build_method("circuitkv", num_walkers=64, window=8, start="window")
    starts = method.start_positions(100, torch.device("cpu"))
    assert torch.equal(torch.bincount(starts, minlength=100)[92:], torch.full((8,), 8))


def test_exact_variant_scores_scale_with_walkers(full_prefill_small):
    exact = build_method("circuitkv-exact", num_walkers=10)
    exact_large = build_method("circuitkv-exact", num_walkers=1000)
    view = full_prefill_small
    small, large = exact.score(view), exact_large.score(view)
    finite = torch.isfinite(small)
    assert torch.allclose(large[finite], small[finite] * 100, rtol=1e-4)


@pytest.fixture
def full_prefill_small(tiny_llama):
    from pipeline.methods.base import LayerView
    from pipeline.model.prefill import prefill

    torch.manual_seed(4)
    full = prefill(tiny_llama, torch.randint(3, 128, (1, 120)))
    return LayerView(0, 2, full.queries[0], full.keys(0), full.scaling, torch.Generator())


@pytest.mark.parametrize("name", ["circuitkv-absorb", "circuitkv-exact", "circuitkv-absorb-exact"])
def test_variants_are_registered_configurations(name):
    method = build_method(name)
    assert method.name == name
    assert method.params()["absorbing"] == ("absorb" in name)
    assert method.params()["exact"] == ("exact" in name)


def test_invalid_walker_settings_are_rejected():
    with pytest.raises(ValueError, match="start 'middle'"):
        build_method("circuitkv", start="middle")
    with pytest.raises(ValueError, match="temperature must be positive"):
        build_method("circuitkv", temperature=0)
