"""Atomic file writes: a reader never sees half a file and a crash never leaves one behind.

Each writer puts the content in a temporary file in the target's own directory (so the rename stays
on one filesystem), flushes it to disk, and renames it over the target with ``os.replace``, which
POSIX and Windows both make atomic.

A rename replaces whatever sits at the path, so the target is checked first: a symlink is followed,
a character device (``/dev/null``, a terminal) is written straight through, since there is nothing
to replace (run as root, a rename would turn ``/dev/null`` into a regular file), and anything else
that is not a regular file (a directory, a FIFO, a block device) is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


def write_text_atomic(path: str | os.PathLike, text: str, *, newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8; ``newline`` as for ``open``, "" for CSV)."""
    path = Path(path)
    if is_character_device(path):
        with open(path, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    target = replaceable_target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:  # the message names the user's path, not a temporary one
        raise OSError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs and checkpoints are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def replacing_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty ``.tmp-NAME`` beside ``path`` to fill; when the block ends it replaces ``path``
    (a previous copy is set aside as ``.old-NAME`` between the two renames), when it raises it is
    removed. A reader never sees a half-written directory under ``path``."""
    path = Path(path)
    tmp, old = path.with_name(f".tmp-{path.name}"), path.with_name(f".old-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)                 # left by an earlier crash
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_character_device(path: str | os.PathLike) -> bool:
    """Whether ``path`` (symlinks followed) is a character device such as /dev/null: a sink to write
    into, not a file to replace."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def replaceable_target(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: symlinks followed; ValueError naming ``path`` when
    something other than a regular file is there."""
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        raise ValueError(f"{path} is {_kind(target)}, not a regular file; refusing to replace it")
    return target


def check_writable(path: str | os.PathLike) -> Path:
    """Before long work, so a CLI fails in a second: the target of ``path`` can be written (a probe
    file is created and removed: permissions, read-only mounts and /proc answer truthfully only to a
    real attempt). Returns the target; ValueError naming ``path`` otherwise."""
    if is_character_device(path):
        if not os.access(path, os.W_OK):
            raise ValueError(f"cannot write {path}: permission denied")
        return Path(os.path.realpath(path))
    target = replaceable_target(path)
    if not target.parent.is_dir():
        raise ValueError(f"cannot write {path}: directory {Path(path).parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"cannot write {path}: {err.strerror or err}") from None
    return target


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def write_json_atomic(path: str | os.PathLike, payload) -> Path:
    """``payload`` as indented JSON (numpy scalars and arrays become numbers and lists), atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, default=json_default) + "\n")


def json_default(value):
    """``json.dumps(default=json_default)``: NumPy arrays become lists, NumPy scalars and 0-d tensors numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
