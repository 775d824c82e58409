"""PyramidKV: SnapKV scores with budgets that shrink from the bottom layer to the top."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pipeline.methods.base import LayerBudgets
from pipeline.methods.snapkv import SnapKV

logger = logging.getLogger(__name__)


@dataclass
class PyramidKV(SnapKV):
    """SnapKV scoring with a linear per-layer budget schedule whose mean is B.

    With w the window and L layers, the top layer keeps (B - w) / beta
    selected tokens and the bottom layer 2 (B - w) - (B - w) / beta, linear in
    between, each plus the window. Layer budgets are rounded by largest
    remainder so that they sum to L * B exactly. Where the schedule is
    infeasible (a layer would select no token, or keep more than the prompt),
    every layer keeps B, and the results record why.

    Source: Cai et al., "PyramidKV: Dynamic KV Cache Compression based on
    Pyramidal Information Funneling", arXiv:2406.02069, 2024 (beta = 20).

    Attributes:
        beta: Ratio between the selected tokens of the bottom and top layers' schedule ends.
    """

    name = "pyramidkv"
    beta: float = 20.0

    def layer_budgets(self, budget: int, num_layers: int, num_tokens: int) -> LayerBudgets:
        selected = budget - self.window
        low = selected / self.beta  # top layer
        high = 2 * selected - low  # bottom layer
        if num_layers == 1:
            return LayerBudgets([budget])
        ideal = [self.window + high - (high - low) * layer / (num_layers - 1) for layer in range(num_layers)]

        # Largest-remainder rounding keeps the total at num_layers * budget.
        budgets = [math.floor(value) for value in ideal]
        shortfall = num_layers * budget - sum(budgets)
        by_remainder = sorted(range(num_layers), key=lambda layer: ideal[layer] - budgets[layer], reverse=True)
        for layer in by_remainder[:shortfall]:
            budgets[layer] += 1

        if min(budgets) <= self.window:
            reason = f"the top layer would select no token beyond the {self.window}-token window at B={budget}"
        elif max(budgets) > num_tokens:
            reason = f"the bottom layer would keep {max(budgets)} entries of a {num_tokens}-token prompt"
        else:
            return LayerBudgets(budgets)
        logger.info("PyramidKV uses a flat budget: %s", reason)
        return LayerBudgets([budget] * num_layers, fallback=f"flat budget: {reason}")
