"""Claims on prompt groups, so that several runners can share one results folder without doing work twice.

A runner claims a group by creating ``claims/<group key>.json`` with
``O_CREAT | O_EXCL``, which succeeds for exactly one process, also on NFS
version 3 and later. The claim names the host and process, and the worker
touches it after every prompt. A claim is stale, and may be taken over, when
its process is gone from this host or when it has not been touched for
``STALE_AFTER_S`` (a crashed or preempted node elsewhere).

A group that raised an error leaves ``failures/<group key>.json``; the next
run tries the group again and removes the record once it succeeds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import write_text_atomically, writer_tag

logger = logging.getLogger(__name__)

# A worker touches its claim after each prompt. One 4096-token prompt with 16 cells took about 2 minutes with
# the default model on a 2-core CPU. NOTE: a prompt slower than this (a large model on a CPU) loses its claim.
STALE_AFTER_S = 30 * 60


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def claim_path(results_dir: Path, group_key: str) -> Path:
    return results_dir / "claims" / f"{group_key}.json"


def failure_path(results_dir: Path, group_key: str) -> Path:
    return results_dir / "failures" / f"{group_key}.json"


@dataclass
class Claim:
    """A held claim; ``touch`` it while working and ``release`` it when done."""

    path: Path

    def touch(self) -> None:
        os.utime(self.path)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def read_claim(path: Path) -> dict | None:
    """Return a claim's record, or None when it vanished or is unreadable (a claim being written)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_stale(path: Path, now: float | None = None) -> bool:
    """Return whether the claim at ``path`` belongs to no live worker."""
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return True
    record = read_claim(path)
    if record is not None and record.get("host") == socket.gethostname() and not _alive(int(record.get("pid", 0))):
        return True
    return age > STALE_AFTER_S


def held(results_dir: Path, group_key: str) -> bool:
    """Return whether a live worker holds the group's claim."""
    path = claim_path(results_dir, group_key)
    return path.exists() and not is_stale(path)


def try_claim(results_dir: Path, group_key: str, description: str) -> Claim | None:
    """Claim the group, taking over a stale claim; return None when a live worker holds it."""
    path = claim_path(results_dir, group_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "group": description,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(path):
                return None
            logger.warning("Taking over the stale claim %s (%s)", path, read_claim(path))
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(record)
        return Claim(path)
    return None


def record_failure(results_dir: Path, group_key: str, description: str, error: BaseException) -> Path:
    """Write the group's failure record and return its path."""
    path = failure_path(results_dir, group_key)
    write_text_atomically(path, json.dumps({
        "group": description, "error": f"{type(error).__name__}: {error}", "host": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=1) + "\n")
    return path


def clear_failure(results_dir: Path, group_key: str) -> None:
    failure_path(results_dir, group_key).unlink(missing_ok=True)


def remove_stale_temporaries(directory: Path, older_than_s: float = 600) -> int:
    """Delete the temporary files that killed writers left (``.NAME.HOST-PID.*.tmp``, see ``pipeline.atomic``).

    A file goes when its writer was a process of this host that is gone, or when it is older
    than ``older_than_s``: a live writer renames its file within moments, and
    a writer on another host cannot be asked. Returns how many were deleted.
    """
    removed = 0
    now = time.time()
    this_host = writer_tag().split("-")[0]
    for path in directory.rglob(".*.tmp") if directory.is_dir() else []:
        match = re.match(r"\..+\.([0-9a-f]{8})-(\d+)\.[^.]+\.tmp$", path.name)
        try:
            orphan = match is not None and match.group(1) == this_host and not _alive(int(match.group(2)))
            if orphan or now - path.stat().st_mtime > older_than_s:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
