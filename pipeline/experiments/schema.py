"""Typed result files: one JSON file per cell (task, method, budget).

Every file under ``data/results/`` is validated on read; a malformed or
incomplete file is rejected with its path and the offending field.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from pipeline.atomic import write_text_atomically
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class ResultsError(ValueError):
    """A results file that is missing, malformed or incomplete."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CellConfig(_Strict):
    """The cell's coordinates and every setting that shaped its numbers."""

    task: str
    benchmark: str = Field(description="ruler or longbench")
    method: str
    method_params: dict
    budget: int | None = Field(description="KV entries per layer and KV head; None for the full cache")
    protocol: str = "prompt"
    num_samples: int = Field(gt=0)
    context_tokens: int | None = Field(description="Target prompt length of generated tasks")
    max_prompt_tokens: int = Field(gt=0, description="Longer prompts are truncated in the middle")
    seed: int


class ModelInfo(_Strict):
    model_id: str
    model_type: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: str
    device: str


class Timing(_Strict):
    prefill_s: float = Field(ge=0)
    scoring_s: float = Field(ge=0)
    decode_s: float = Field(ge=0)


class SampleResult(_Strict):
    """One prompt's outcome. LongBench rows keep their ``_id`` only, never their text."""

    sample_id: str
    prompt_tokens: int = Field(gt=0)
    truncated: bool
    compressed: bool = Field(description="False for the full cache and for prompts no longer than the budget")
    cache_lengths: list[int] = Field(description="KV entries per layer after compression")
    generated_tokens: int = Field(ge=0)
    prediction: str
    references: list[str] | None = Field(description="None for dataset rows whose text is not committed")
    score: float = Field(ge=0, le=100)
    timing: Timing


class Provenance(_Strict):
    git_commit: str
    git_dirty: bool
    packages: dict[str, str]
    python: str
    platform: str
    device_name: str
    torch_threads: int
    created: str


class CellResult(_Strict):
    """A finished cell: config, model, per-sample results and the mean score (0-100)."""

    schema_version: int
    config: CellConfig
    model: ModelInfo
    samples: list[SampleResult] = Field(min_length=1)
    mean_score: float = Field(ge=0, le=100)
    total_seconds: float = Field(ge=0)
    provenance: Provenance

    @model_validator(mode="after")
    def _check_counts(self) -> "CellResult":
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not the supported {SCHEMA_VERSION}")
        if len(self.samples) != self.config.num_samples:
            raise ValueError(
                f"config.num_samples is {self.config.num_samples} but the file has {len(self.samples)} samples"
            )
        return self


def cell_filename(task: str, method: str, budget: int | None, protocol: str = "prompt") -> str:
    """File name of a cell inside the results directory."""
    budget_part = "full" if budget is None else f"b{budget}"
    return f"{task}/{protocol}-{method}-{budget_part}.json"


def sample_mean(samples: list[SampleResult]) -> float:
    return sum(sample.score for sample in samples) / len(samples)


def write_cell(path: Path, cell: CellResult) -> None:
    """Write ``cell`` atomically: a temporary file in the same directory, then a rename."""
    write_text_atomically(path, json.dumps(cell.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n")


def read_cell(path: Path) -> CellResult:
    """Read and validate one cell file; raise ResultsError naming the file and field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: results file not found; run `make results`.") from None
    except json.JSONDecodeError as error:
        raise ResultsError(
            f"{path}: invalid JSON at line {error.lineno}, column {error.colno} ({error.msg}); "
            "fix the file or delete it and run `make results` to recompute the cell."
        ) from None

    try:
        cell = CellResult.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "(top level)"
            problems.append(f"field {field}: {item['msg']}")
        raise ResultsError(
            f"{path}: invalid results file: " + "; ".join(problems)
            + ". Fix the field or delete the file and run `make results` to recompute the cell."
        ) from None

    recomputed = sample_mean(cell.samples)
    if not math.isclose(recomputed, cell.mean_score, abs_tol=1e-6):
        logger.warning(
            "%s: mean_score %.4f differs from the mean of the %d sample scores (%.4f); the paper uses mean_score.",
            path, cell.mean_score, len(cell.samples), recomputed,
        )
    return cell


def read_results(directory: Path) -> list[CellResult]:
    """Read every cell file under ``directory``; raise ResultsError if there is none."""
    paths = sorted(path for path in directory.rglob("*.json") if not path.name.startswith("."))
    if not paths:
        raise ResultsError(f"{directory}: no results files found; run `make results` first.")
    return [read_cell(path) for path in paths]
