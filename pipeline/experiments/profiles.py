"""Named experiment grids: readable YAML files in ``profiles/`` that expand into a ``GridConfig``.

A profile fixes what a run covers: the model, methods, budgets, protocols,
seeds, and per benchmark its tasks, sample counts and lengths. Options given
on the command line override the profile's values. The LongBench section is
used only when a LongBench directory is given, because the data is not
shipped.

Example (``profiles/quick.yaml``)::

    description: The default of `make results`.
    methods: [full, snapkv, circuitkv]
    budgets: [128, 512]
    ruler:
      tasks: [niah_multikey_1]
      context_lengths: [4096]
      num_samples: 20
    longbench:
      tasks: available      # every English task file in LONGBENCH_DIR
      num_samples: all      # every row
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.benchmarks import longbench, ruler

logger = logging.getLogger(__name__)

PROFILE_DIR = Path(__file__).resolve().parents[2] / "profiles"
ENGLISH_TASKS = tuple(
    task for tasks in longbench.CATEGORIES.values() for task in tasks
    if not task.endswith("_zh") and task not in ("dureader", "vcsum", "lsht")
)


class ProfileError(ValueError):
    """A profile that cannot be found, parsed or expanded."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RulerSection(_Section):
    """Generated RULER tasks: which ones, at which prompt lengths, and how many samples each."""

    tasks: list[str] = Field(min_length=1)
    context_lengths: list[int] = Field(default=[4096], min_length=1)
    num_samples: int = Field(default=20, gt=0)


class LongBenchSection(_Section):
    """LongBench tasks, run when a LongBench directory is given."""

    tasks: list[str] | Literal["available"] = Field(min_length=1)
    num_samples: int | Literal["all"] = "all"
    length_bins: bool = Field(default=False, description="read LongBench-E (TASK_e.jsonl) for scores by length")


class AblationSection(_Section):
    """CircuitKV variants run after the main grid, on some of its tasks and budgets, for the paper's Table 2."""

    methods: list[str] = Field(min_length=1, description="method specifications, e.g. circuitkv+normalize=false")
    budgets: list[int] = Field(min_length=1)
    tasks: list[str] | Literal["all"] = "all"


class Profile(_Section):
    """One experiment grid. Absent fields take the command line's defaults."""

    description: str
    model: str | None = None
    methods: list[str] | None = Field(default=None, min_length=1)
    budgets: list[int] | None = None
    budget_ratios: list[float] | None = None
    protocols: list[str] | None = Field(default=None, min_length=1)
    seed: int | None = None
    method_seeds: list[int] | None = None
    decode_batch: int | None = Field(default=None, gt=0)
    max_prompt_tokens: int | None = Field(default=None, gt=0)
    jobs: int | None = Field(default=None, gt=0, description="worker processes of `make results` when JOBS is unset")
    shard_size: int | None = Field(default=None, gt=0, description="samples per cell file; a task's samples "
                                   "split into shards that run, and survive a crash, separately")
    ruler: RulerSection | None = None
    longbench: LongBenchSection | None = None
    task_samples: dict[str, int] = Field(default_factory=dict, description="per-task sample counts")
    ablation: AblationSection | None = None


def profile_path(name: str) -> Path:
    """Return the file of a profile given by name (``quick``) or by path (``my/grid.yaml``)."""
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        if not path.is_file():
            raise ProfileError(f"Profile file {path} not found.")
        return path
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(item.stem for item in PROFILE_DIR.glob("*.yaml")))
        raise ProfileError(f"Unknown profile {name!r}; choose one of {known}, or pass the path of a YAML file.")
    return path


def load_profile(name: str) -> tuple[Path, Profile]:
    """Read and validate a profile. Errors name the file and the field."""
    path = profile_path(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML ({error}).") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of settings such as 'methods:' and 'ruler:'.")
    try:
        profile = Profile.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
            for item in error.errors()
        )
        raise ProfileError(f"{path}: {problems}.") from None
    _check_tasks(path, profile)
    return path, profile


def _check_tasks(path: Path, profile: Profile) -> None:
    if profile.ruler is not None:
        unknown = [task for task in profile.ruler.tasks if task not in ruler.TASKS and task != ruler.SWEEP_TASK]
        if unknown:
            raise ProfileError(
                f"{path}: ruler.tasks: unknown task(s) {', '.join(unknown)}; "
                f"choose from {', '.join([*ruler.TASKS, ruler.SWEEP_TASK])}."
            )
    if profile.longbench is not None and profile.longbench.tasks != "available":
        unknown = [task for task in profile.longbench.tasks if task not in longbench.TASK_METRICS]
        if unknown:
            raise ProfileError(
                f"{path}: longbench.tasks: unknown task(s) {', '.join(unknown)}; "
                f"choose from {', '.join(ENGLISH_TASKS)}, or write 'available'."
            )


def ablation_settings(path: Path, profile: Profile, settings: dict) -> dict | None:
    """Return the grid settings of the profile's ablation pass (its methods, budgets and tasks), or None.

    The pass inherits everything else from ``settings``, the main grid's
    merged settings, so that its cells share the main grid's prompts.
    """
    if profile.ablation is None:
        return None
    section = profile.ablation
    wanted = settings["tasks"] if section.tasks == "all" else list(section.tasks)
    tasks = [task for task in wanted if task in settings["tasks"]]
    if not tasks:
        raise ProfileError(f"{path}: ablation.tasks: none of {', '.join(wanted)} is in the main grid's tasks "
                           f"({', '.join(settings['tasks'])}); LongBench tasks need LONGBENCH_DIR.")
    if len(tasks) < len(wanted):
        logger.warning("%s: the ablation skips %s, which the main grid does not run", path,
                       ", ".join(task for task in wanted if task not in tasks))
    return {**settings, "methods": list(section.methods), "budgets": list(section.budgets), "budget_ratios": [],
            "tasks": tasks}


def _expand_model(path: Path, model: str) -> str:
    """Substitute ``$VAR`` and ``${VAR}`` in a model path. An unset variable raises ProfileError."""
    missing = [name for name in re.findall(r"\$\{?(\w+)\}?", model) if name not in os.environ]
    if missing:
        raise ProfileError(
            f"{path}: model: {model!r} needs the environment variable {missing[0]}; set it to the "
            "local checkpoint directory, or pass --model."
        )
    return os.path.expandvars(model)


def grid_settings(path: Path, profile: Profile, longbench_dir: Path | None) -> dict:
    """Return the ``GridConfig`` fields that ``profile`` sets, with its tasks expanded.

    LongBench tasks join only when ``longbench_dir`` is given; ``available``
    means every English task whose file is in it.
    """
    settings: dict = {}
    for name in ("methods", "budgets", "budget_ratios", "protocols", "seed", "method_seeds", "decode_batch",
                 "max_prompt_tokens", "shard_size"):
        value = getattr(profile, name)
        if value is not None:
            settings[name] = value
    if profile.model is not None:
        settings["model"] = _expand_model(path, profile.model)

    tasks: list[str] = []
    task_samples: dict[str, int | None] = {}
    if profile.ruler is not None:
        tasks += profile.ruler.tasks
        task_samples.update(dict.fromkeys(profile.ruler.tasks, profile.ruler.num_samples))
        settings["context_lengths"] = profile.ruler.context_lengths
    if profile.longbench is not None and longbench_dir is not None:
        section = profile.longbench
        suffix = longbench.E_SUFFIX if section.length_bins else ""
        if section.tasks == "available":
            chosen = [task for task in ENGLISH_TASKS if (longbench_dir / f"{task}{suffix}.jsonl").is_file()]
        else:
            chosen = list(section.tasks)
        if not chosen:
            raise ProfileError(f"{path}: longbench.tasks is 'available', but {longbench_dir} has no English task file.")
        chosen = [f"{task}{suffix}" for task in chosen]
        tasks += chosen
        task_samples.update(dict.fromkeys(chosen, None if section.num_samples == "all" else section.num_samples))
    if not tasks:
        raise ProfileError(f"{path}: no tasks; add a ruler section, or a longbench section and set LONGBENCH_DIR.")
    task_samples.update(profile.task_samples)
    settings["tasks"] = tasks
    settings["task_samples"] = task_samples
    return settings
