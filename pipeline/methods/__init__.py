"""KV cache compression methods, addressed by name."""

from __future__ import annotations

from pipeline.methods.base import (
    BudgetError,
    LayerBudgets,
    Method,
    check_budget,
    check_ratio,
    keep_positions,
    ratio_budget,
    score_layers,
    select,
)
from pipeline.methods.circuitkv import CircuitKV, CircuitKVAbsorb, CircuitKVAbsorbExact, CircuitKVExact
from pipeline.methods.full import FullCache
from pipeline.methods.h2o import H2O
from pipeline.methods.pyramidkv import PyramidKV
from pipeline.methods.snapkv import SnapKV
from pipeline.methods.spec import format_spec, parse_spec
from pipeline.methods.streamingllm import StreamingLLM

REGISTRY: dict[str, type[Method]] = {
    FullCache.name: FullCache,
    StreamingLLM.name: StreamingLLM,
    H2O.name: H2O,
    SnapKV.name: SnapKV,
    PyramidKV.name: PyramidKV,
    CircuitKV.name: CircuitKV,
    CircuitKVAbsorb.name: CircuitKVAbsorb,
    CircuitKVExact.name: CircuitKVExact,
    CircuitKVAbsorbExact.name: CircuitKVAbsorbExact,
}


def build_method(spec: str, **params) -> Method:
    """Instantiate a method from its spec (``name`` or ``name+key=value...``) and keyword overrides."""
    name, overrides = parse_spec(spec, REGISTRY)
    method = REGISTRY[name](**{**overrides, **params})
    method.label = format_spec(name, {**overrides, **params})
    return method


__all__ = [
    "REGISTRY", "BudgetError", "LayerBudgets", "Method", "build_method", "check_budget", "check_ratio",
    "keep_positions", "ratio_budget", "score_layers", "select",
]
