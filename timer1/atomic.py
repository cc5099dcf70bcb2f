"""Atomic file writes: a reader never sees half a file and a crash never leaves one behind.

Each writer puts the content in a temporary file in the target's own directory (so the rename stays
on one filesystem), flushes it to disk, and renames it over the target with ``os.replace``, which
POSIX and Windows both make atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def write_text_atomic(path: str | os.PathLike, text: str, *, newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8; ``newline`` as for ``open``, "" for CSV)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs and checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, payload) -> Path:
    """``payload`` as indented JSON (numpy scalars and arrays become numbers and lists), atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
