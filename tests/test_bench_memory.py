"""The peak-memory probe behind the H2O memory benchmark."""

import sys

import pytest
import torch

from pipeline.bench.memory import PeakMemory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")

MIB = 2**20


def test_probe_sees_a_temporary_allocation():
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(64 * MIB // 4)  # 64 MiB of float32, touched
        del block
    assert 56 * MIB < peak.peak_bytes < 128 * MIB


def test_probe_sees_quadratic_growth():
    peaks = []
    for n in (1024, 2048):
        with PeakMemory(torch.device("cpu")) as peak:
            torch.ones(n, n * 8).sum()
        peaks.append(peak.peak_bytes)
    assert peaks[1] > 3 * peaks[0]


@pytest.mark.parametrize(
    "name, params",
    [
        ("h2o", {}),
        ("snapkv", {}),
        ("circuitkv", {}),
        ("circuitkv-exact", {}),
        ("circuitkv-exact", {"max_steps": None}),
        ("circuitkv-absorb-exact", {}),
    ],
)
def test_scorers_never_build_the_attention_matrix(name, params):
    """At n = 8192 one float32 attention matrix is 256 MiB; every scorer must stay below half of it."""
    from pipeline.methods import build_method
    from pipeline.methods.base import LayerView

    n = 8192
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(1, n, 16, generator=generator)  # (heads, n, head_dim)
    keys = torch.randn(1, n, 16, generator=generator)
    view = LayerView(0, 1, queries, keys, 0.25, torch.Generator().manual_seed(0))
    method = build_method(name, **params)
    with PeakMemory(torch.device("cpu")) as peak:
        method.score(view)
    assert peak.peak_bytes < n * n * 4 // 2
