"""Monte Carlo walkers on small hand-made attention graphs."""

import torch

from pipeline.methods.walkers import normalize_visits, walk_visits

SINKS = 4


def rows_of(matrix: torch.Tensor):
    """Row function over a dense hand-made attention matrix."""
    return lambda positions: matrix[positions]


def generator(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def chain(n: int) -> torch.Tensor:
    """Position i attends only to i - 1 (besides the sinks, which walkers never enter)."""
    matrix = torch.zeros(n, n)
    matrix[:, :SINKS] = 0.1
    for i in range(1, n):
        matrix[i, i - 1] = 1.0
    return matrix


def test_chain_visits_every_node_once_per_walker():
    n = 12
    visits = walk_visits(rows_of(chain(n)), n, n - 1, num_walkers=7, max_steps=50, temperature=1.0,
                         num_sinks=SINKS, generator=generator())
    assert torch.equal(visits[SINKS:], torch.full((n - SINKS,), 7.0, dtype=visits.dtype))
    assert visits[:SINKS].sum() == 0


def test_chain_stops_after_max_steps():
    n = 12
    visits = walk_visits(rows_of(chain(n)), n, n - 1, num_walkers=3, max_steps=2, temperature=1.0,
                         num_sinks=SINKS, generator=generator())
    assert visits[n - 3 :].tolist() == [3.0, 3.0, 3.0]
    assert visits[: n - 3].sum() == 0


def bridge_graph(n: int, bridge: int) -> torch.Tensor:
    """Late positions attend weakly to each other but all routes pass through ``bridge``.

    The query (last position) spreads its attention over the positions after
    the bridge. Each of them puts most of its attention on the bridge, which
    the query itself barely attends to.
    """
    matrix = torch.zeros(n, n)
    matrix[:, :SINKS] = 1.0
    for i in range(SINKS + 1, n):
        matrix[i, SINKS : i] = 0.01
    for i in range(bridge + 1, n - 1):
        matrix[i, bridge] = 5.0
    matrix[n - 1, bridge + 1 : n - 1] = 1.0
    matrix[n - 1, bridge] = 0.05
    return matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1e-9)


def test_bridge_token_ranks_first():
    n, bridge = 40, 15
    matrix = bridge_graph(n, bridge)
    visits = walk_visits(rows_of(matrix), n, n - 1, num_walkers=2000, max_steps=10, temperature=1.0,
                         num_sinks=SINKS, generator=generator())
    scores = normalize_visits(visits)
    scores[n - 1] = -1  # the start position is always kept and not ranked here
    assert int(scores.argmax()) == bridge
    # The query's own attention ranks the bridge low, so the walk changes the decision.
    assert matrix[n - 1, bridge] < matrix[n - 1, bridge + 1 : n - 1].min()


def test_same_seed_reproduces_and_other_seed_differs():
    n = 64
    torch.manual_seed(3)
    matrix = torch.rand(n, n).tril()
    matrix = matrix / matrix.sum(dim=1, keepdim=True)

    def run(seed):
        return walk_visits(rows_of(matrix), n, n - 1, num_walkers=256, max_steps=10, temperature=1.0,
                           num_sinks=SINKS, generator=generator(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_visit_total_counts_every_step():
    n = 64
    matrix = torch.zeros(n, n)
    for i in range(SINKS + 1, n):
        matrix[i, max(i - 3, SINKS) : i] = 1.0  # moves of one to three positions never reach the sinks
    visits = walk_visits(rows_of(matrix), n, n - 1, num_walkers=100, max_steps=3, temperature=0.5,
                         num_sinks=SINKS, generator=generator())
    # Starting far from the sinks, each walker makes all 3 moves: 4 counted steps each.
    assert visits.sum() == 400


def test_low_temperature_follows_strongest_edge():
    n = 20
    matrix = torch.full((n, n), 0.01).tril()
    for i in range(SINKS + 1, n):
        matrix[i, i - 2 if i - 2 >= SINKS else SINKS] = 1.0
    visits = walk_visits(rows_of(matrix), n, n - 1, num_walkers=50, max_steps=4, temperature=0.05,
                         num_sinks=SINKS, generator=generator())
    assert visits[[n - 3, n - 5, n - 7, n - 9]].tolist() == [50.0] * 4


def test_row_without_mass_stops_walkers():
    n = 10
    matrix = torch.zeros(n, n)
    matrix[:, :SINKS] = 1.0  # all attention on the sinks
    visits = walk_visits(rows_of(matrix), n, n - 1, num_walkers=5, max_steps=10, temperature=1.0,
                         num_sinks=SINKS, generator=generator())
    assert visits[n - 1] == 5
    assert visits.sum() == 5


def test_normalization_divides_by_root_distance():
    visits = torch.tensor([4.0, 4.0, 4.0, 4.0], dtype=torch.float64)
    assert normalize_visits(visits).tolist() == [2.0, 4.0 / 3**0.5, 4.0 / 2**0.5, 4.0]
