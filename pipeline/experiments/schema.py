"""Typed result files: one JSON file per cell (task, protocol, method, budget).

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

SCHEMA_VERSION = 2
MERGED_DIR = "merged"  # per-task cells merged from their shards, which the paper reads (experiments.aggregate)
MISSING_FILE = "missing.json"  # in MERGED_DIR: the holes of a draft merge
PROTOCOLS = ("prompt", "context")
MAX_LISTED_PROBLEMS = 5  # validation errors named in one message


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
    budget: int | None = Field(description="KV entries per layer and KV head; None for the full cache or a ratio")
    budget_ratio: float | None = Field(
        default=None, gt=0, le=1, description="Budget as a fraction r of each prompt, B = round(r n)"
    )
    protocol: str = Field(
        default="prompt",
        description="prompt: compress the whole prompt, question included; "
        "context: compress the context, then feed the question through the compressed cache",
    )
    num_samples: int = Field(gt=0)
    context_tokens: int | None = Field(description="Target prompt length of generated tasks")
    haystack: str | None = Field(
        default=None, description="Essay text of essay-haystack tasks: its source and SHA-256 prefix"
    )
    max_prompt_tokens: int = Field(gt=0, description="Longer prompts are truncated in the middle")
    seed: int = Field(description="Seed of data generation, and of stochastic methods unless method_seed is set")
    method_seed: int | None = Field(default=None, description="Seed of a stochastic method when not the data seed")
    task_samples: int | None = Field(default=None, gt=0, description="Samples of the whole task, all shards")
    shard_start: int | None = Field(default=None, ge=0, description="First sample index of this cell's shard")
    shard_stop: int | None = Field(default=None, gt=0, description="Sample index after this cell's shard")
    code_version: str | None = Field(default=None, description="Hash of the code that computed the numbers")
    key: str | None = Field(default=None, description="Content hash naming the cell's file (cells.CellPlan.key)")

    @model_validator(mode="after")
    def _check_budget(self) -> "CellConfig":
        if self.budget is not None and self.budget_ratio is not None:
            raise ValueError("give budget or budget_ratio, not both")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        return self


class ModelInfo(_Strict):
    model_id: str
    model_type: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: str
    bytes_per_element: int = Field(gt=0, description="Bytes of one cached key or value element")
    device: str

    def kv_bytes(self, entries: int) -> int:
        """Bytes of ``entries`` KV entries summed over layers: 2 x KV heads x head dim x bytes each."""
        return 2 * self.num_kv_heads * self.head_dim * self.bytes_per_element * entries


class Timing(_Strict):
    prefill_s: float = Field(ge=0)
    scoring_s: float = Field(ge=0)
    decode_s: float = Field(ge=0, description="Wall time of the decode batch this sample ran in")
    decode_batch: int = Field(ge=1, description="Method and budget variants decoded together")


class SampleResult(_Strict):
    """One prompt's outcome. LongBench rows keep their ``_id`` only, never their text."""

    sample_id: str
    prompt_tokens: int = Field(gt=0)
    context_tokens: int = Field(
        gt=0, description="Tokens prefilled before compression: the whole prompt, or its context"
    )
    truncated: bool
    budget: int | None = Field(description="KV entries per layer and KV head for this prompt; None for the full cache")
    compressed: bool = Field(
        description="False for the full cache and for prompts kept whole because they fit the budget"
    )
    layer_budgets: list[int] | None = Field(description="The method's per-layer schedule; None when not compressed")
    budget_fallback: str | None = Field(description="Why the method's schedule fell back to a flat one")
    cache_lengths: list[int] = Field(description="KV entries per layer after compression, before the question")
    kv_bytes: int = Field(gt=0, description="Bytes of the cache after compression")
    length: int | None = Field(default=None, description="LongBench's length field of the row, for length bins")
    full_kv_bytes: int = Field(gt=0, description="Bytes of the full cache of the same tokens")
    generated_tokens: int = Field(ge=0)
    answer_nll: float | None = Field(
        default=None, ge=0, description="Mean NLL per token of the reference answer, teacher-forced after the prompt"
    )
    agreement_tokens: int | None = Field(
        default=None, ge=0, description="Leading generated tokens equal to the full cache's; None when it did not run"
    )
    prediction: str
    references: list[str] | None = Field(description="None for dataset rows whose text is not committed")
    score: float = Field(ge=0, le=100)
    timing: Timing

    @model_validator(mode="after")
    def _check_compression(self) -> "SampleResult":
        if self.context_tokens > self.prompt_tokens:
            raise ValueError(f"context_tokens {self.context_tokens} exceeds prompt_tokens {self.prompt_tokens}")
        if self.compressed:
            if self.budget is None or self.layer_budgets is None:
                raise ValueError("a compressed sample needs its budget and layer_budgets")
            if self.cache_lengths != self.layer_budgets:
                raise ValueError(
                    f"cache_lengths {self.cache_lengths} differ from the schedule layer_budgets {self.layer_budgets}"
                )
            if self.kv_bytes >= self.full_kv_bytes:
                raise ValueError(f"compressed, but kv_bytes {self.kv_bytes} is not below full_kv_bytes")
        elif self.budget is not None and self.context_tokens > self.budget:
            raise ValueError(
                f"not compressed although its {self.context_tokens} context tokens exceed the budget {self.budget}"
            )
        return self


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
        config = self.config
        for sample in self.samples:
            where = f"sample {sample.sample_id}"
            if config.budget is None and config.budget_ratio is None and sample.budget is not None:
                raise ValueError(f"{where}: a full-cache cell has budget {sample.budget}")
            if config.budget is not None and sample.budget != config.budget:
                raise ValueError(f"{where}: budget {sample.budget} differs from config.budget {config.budget}")
            if len(sample.cache_lengths) != self.model.num_layers:
                raise ValueError(
                    f"{where}: {len(sample.cache_lengths)} cache_lengths for {self.model.num_layers} layers"
                )
            if sample.kv_bytes != self.model.kv_bytes(sum(sample.cache_lengths)):
                raise ValueError(f"{where}: kv_bytes {sample.kv_bytes} does not match cache_lengths and the model")
            if sample.full_kv_bytes != self.model.kv_bytes(self.model.num_layers * sample.context_tokens):
                raise ValueError(f"{where}: full_kv_bytes {sample.full_kv_bytes} does not match context_tokens")
        return self


def cell_filename(
    task: str,
    method: str,
    budget: int | None,
    protocol: str = "prompt",
    budget_ratio: float | None = None,
    method_seed: int | None = None,
    context_tokens: int | None = None,
) -> str:
    """File name of a cell inside the results directory.

    Generated tasks carry their target length, ``ctx4096-``, so that one
    directory can hold a task at several lengths.
    """
    if budget_ratio is not None:
        budget_part = f"r{budget_ratio:g}"
    else:
        budget_part = "full" if budget is None else f"b{budget}"
    seed_part = "" if method_seed is None else f"-s{method_seed}"
    length_part = "" if context_tokens is None else f"ctx{context_tokens}-"
    return f"{task}/{length_part}{protocol}-{method}-{budget_part}{seed_part}.json"


def sample_mean(samples: list[SampleResult]) -> float:
    return sum(sample.score for sample in samples) / len(samples)


def cell_json(cell: CellResult) -> str:
    """Return the text of ``cell``'s file."""
    return json.dumps(cell.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n"


def write_cell(path: Path, cell: CellResult) -> None:
    """Write ``cell`` atomically: a temporary file in the same directory, then a rename."""
    write_text_atomically(path, cell_json(cell))


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

    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: written with schema_version {version}, but this pipeline reads version {SCHEMA_VERSION}; "
            "run `make results` to recompute the cell."
        )

    try:
        cell = CellResult.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "(top level)"
            problems.append(f"field {field}: {item['msg']}")
        if len(problems) > MAX_LISTED_PROBLEMS:
            hidden = len(problems) - MAX_LISTED_PROBLEMS
            problems = problems[:MAX_LISTED_PROBLEMS] + [f"and {hidden} more"]
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
