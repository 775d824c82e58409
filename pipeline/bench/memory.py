"""Peak extra memory of a block of code, on CPU or CUDA.

On CUDA the figure is torch's own peak-allocation counter. On Linux CPUs it is
the rise of the process's resident-set high-water mark (``VmHWM``) above the
resident set at the start. Writing 5 to ``/proc/self/clear_refs`` resets that
mark before the block, after glibc has returned its free heap pages
(``malloc_trim``).

On CPU the figure follows the live tensors only when glibc gives every large
allocation its own mapping, so run the process with ``MALLOC_MMAP_THRESHOLD_``
set (``with_fixed_mmap_threshold`` re-executes the command that way). Without
it, glibc reuses freed heap memory, and the figure mixes tensors with heap
fragmentation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


class MemoryProbeError(RuntimeError):
    """Peak memory cannot be measured on this system."""


MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"
PROBE_MMAP_THRESHOLD = "65536"


def with_fixed_mmap_threshold(module: str, argv: list[str]) -> None:
    """Re-execute ``python -m module argv`` with a fixed glibc mmap threshold, unless it is set already.

    Timing under this setting is slower (every large tensor is a fresh
    mapping), so benchmarks measure time in a process without it.
    """
    if os.environ.get(MMAP_THRESHOLD_ENV) or not sys.platform.startswith("linux"):
        return
    environment = {**os.environ, MMAP_THRESHOLD_ENV: PROBE_MMAP_THRESHOLD}
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], environment)


def _release_free_heap() -> None:
    """Return free heap pages to the system, where glibc allows it."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), flags=re.MULTILINE)
    if match is None:
        raise MemoryProbeError(f"{STATUS} has no {field} line; peak CPU memory needs Linux.")
    return int(match.group(1))


@dataclass
class PeakMemory:
    """Context manager: ``peak_bytes`` is the peak extra memory while the block ran."""

    device: torch.device
    peak_bytes: int = 0

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        if not STATUS.exists() or not CLEAR_REFS.exists():
            raise MemoryProbeError("Peak CPU memory is read from /proc/self; run the benchmark on Linux.")
        _release_free_heap()
        try:
            CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
        except OSError as error:
            raise MemoryProbeError(f"Cannot reset the peak resident set through {CLEAR_REFS}: {error}.") from None
        self._start = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self.peak_bytes = max(_status_kib("VmHWM") * 1024 - self._start, 0)
