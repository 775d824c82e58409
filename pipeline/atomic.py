"""Atomic file writes: a finished file is either the old one or the complete new one."""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path


def _default_mode() -> int:
    """Return the mode a plain ``open`` would give a new file: 0o666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def writer_tag() -> str:
    """Return ``HOST-PID`` for temporary file names: a hash of this host's name and this process's id."""
    host = hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:8]
    return f"{host}-{os.getpid()}"


def write_bytes_atomically(path: Path, content: bytes) -> None:
    """Write ``content`` to a temporary file next to ``path``, flush it to disk, then rename it over ``path``.

    The file gets the permissions of a normally created file (``mkstemp`` alone
    would make it readable by its owner only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's host and process id in the name let a later run delete what a killed writer left.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, _default_mode())
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 with ``write_bytes_atomically``."""
    write_bytes_atomically(path, text.encode("utf-8"))
