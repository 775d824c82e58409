"""The paper's own settings: ``paper/content/paper.yaml``.

They hold what is not a result: the title among a few candidates, the budget
of Table 1 per device, and the rows and tasks of the ablation table. Errors
name the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.render.content_files import display_path, read_model

CONFIG_PATH = Path(__file__).resolve().parents[2] / "paper" / "content" / "paper.yaml"


class ConfigError(ValueError):
    """The paper configuration cannot be read or is inconsistent."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AblationRow(_Section):
    """One row of Table 2: its label, the subject of the sentence about it (both LaTeX), and its method spec."""

    label: str = Field(min_length=1)
    phrase: str = Field(min_length=1)
    method: str = Field(min_length=1)


class Ablation(_Section):
    """Table 2: its rows, first the full method, and the tasks (``all``: every task all rows ran)."""

    tasks: list[str] | Literal["all"] = "all"
    rows: list[AblationRow] = Field(min_length=2)


REMEDIES = ("short_captions", "ablation_to_appendix", "compact_related", "vspace")


class PaperConfig(_Section):
    """The choices ``paper.yaml`` makes."""

    title: str
    titles: dict[str, str] = Field(min_length=1)
    main_budget: dict[str, int] = Field(min_length=1, description="Table 1's budget by device type (cpu, cuda)")
    ablation: Ablation
    fit: list[Literal[REMEDIES]] = Field(default=list(REMEDIES), description="FIT=auto's remedies, in order")

    @model_validator(mode="after")
    def _title_is_known(self) -> PaperConfig:
        if self.title not in self.titles:
            raise ValueError(f"title {self.title!r} is not a key of titles ({', '.join(self.titles)})")
        return self

    @property
    def title_text(self) -> str:
        return self.titles[self.title]

    def budget_for(self, device_type: str, budgets: list[int], path: Path = CONFIG_PATH) -> int:
        """Return Table 1's budget for results from ``device_type``; it must be one of ``budgets``."""
        kind = device_type.split(":")[0]
        shown = display_path(path)
        if kind not in self.main_budget:
            raise ConfigError(
                f"{shown}: main_budget has no entry for the device {kind!r} the results ran on; "
                f"add `{kind}: B` with B one of {', '.join(map(str, budgets))}."
            )
        budget = self.main_budget[kind]
        if budget not in budgets:
            raise ConfigError(
                f"{shown}: main_budget.{kind} is {budget}, but the results hold budgets "
                f"{', '.join(map(str, budgets)) or 'none'}; choose one of them or run that budget."
            )
        return budget


def load_config(path: Path = CONFIG_PATH) -> PaperConfig:
    """Read and validate the paper configuration."""
    return read_model(path, PaperConfig, ConfigError, "a mapping with title, titles, main_budget and ablation")
