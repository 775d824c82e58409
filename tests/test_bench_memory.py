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
