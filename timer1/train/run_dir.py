"""The run directory: claimed by one live process (an flock) and refused when it holds another run,
a killed run's temporaries cleaned; the append-only metrics log; the one-line progress report."""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from timer1.train.checkpoint import clean_stale_temps, latest_checkpoint
from timer1.util import dist
from timer1.util.atomic import json_default, write_text_atomic
from timer1.util.progress import format_seconds


def check_writable(out_dir: str | os.PathLike) -> Path:
    """Create `out_dir` if needed and prove a file can be written there; ValueError (one line) if not."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"output directory {out_dir} is not writable ({err.strerror or err})") from None
    return out_dir


_RUN_LOCKS: dict[Path, Any] = {}  # open lock files: a lock lives as long as its file object


@atexit.register
def _release_run_locks() -> None:
    """Close the lock files at exit (the kernel would drop the locks anyway) rather than leave them to
    the interpreter's teardown, which warns "unclosed file" for each."""
    for handle in _RUN_LOCKS.values():
        handle.close()
    _RUN_LOCKS.clear()


def claim_out_dir(out_dir: str | os.PathLike, resume: bool) -> Path:
    """The run directory, writable and ours: a fresh run refuses one holding a run (the two would mix),
    any run one that a live process trains into (an flock on ``.run.lock``, released however that
    process ends); then a killed run's temporaries are removed, safe only because nobody else writes
    there. Collective: rank 0 looks, locks and cleans, every rank gets its verdict."""
    problem = None
    if dist.is_master():
        try:
            _claim(Path(out_dir), resume)
        except (ValueError, OSError) as err:
            problem = str(err)
    problem = dist.broadcast_object(problem)
    if problem is not None:
        raise ValueError(problem)
    return Path(out_dir)


def _claim(out_dir: Path, resume: bool) -> None:
    check_writable(out_dir)
    _lock_run(out_dir)
    if not resume and (latest_checkpoint(out_dir) is not None or (out_dir / "metrics.jsonl").exists()):
        raise ValueError(f"{out_dir} already holds a run: add --resume=true to continue it, "
                         f"or choose another --out_dir")
    cleaned = clean_stale_temps(out_dir)
    if cleaned:
        print(f"removed {len(cleaned)} temporary file(s) left by an interrupted run in {out_dir}: "
              f"{', '.join(cleaned)}", flush=True)


def _lock_run(out_dir: Path) -> None:
    """Hold an flock on ``out_dir/.run.lock`` until this process exits; ValueError when a live process
    holds it. A filesystem without locks (some network mounts) is used unlocked."""
    import fcntl  # POSIX: torchrun training runs on Linux (and macOS)
    if out_dir.resolve() in _RUN_LOCKS:            # this process holds it already (a run started in-process again)
        return
    handle = open(out_dir / ".run.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"{out_dir} is in use by another training process that is still running; "
                         f"wait for it or stop it first") from None
    except OSError:
        handle.close()
        return
    _RUN_LOCKS[out_dir.resolve()] = handle


class MetricsLog:
    """Append-only JSONL, one flushed record (with its ``step``) per line; rank 0 only (``enabled``)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        line = json.dumps(record, default=json_default)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records after `step` (a run that went on past its last checkpoint), so a resumed run's
        log reads like an uninterrupted one."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:                 # a line cut by the crash
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))


class Progress:
    """One line per call, ``step 12/300 | loss 1.234 | 850 tok/s | eta 3m04s``: tokens/s since the previous
    call, the ETA from this process's mean step time (a resumed run counts from `start_step`)."""

    def __init__(self, total: int, start_step: int = 0, enabled: bool = True):
        self.total, self.start_step, self.enabled = total, start_step, enabled
        self.t0 = self.t_last = time.perf_counter()
        self.tokens_since = 0

    def add_tokens(self, n: int) -> None:
        self.tokens_since += int(n)

    def update(self, step: int, **values: float) -> str:
        """`step`: optimizer steps done; `values` printed in order (floats to 4 digits). Returns the line."""
        now = time.perf_counter()
        rate = self.tokens_since / max(now - self.t_last, 1e-9)
        done = step - self.start_step
        eta = (now - self.t0) / done * (self.total - step) if done > 0 else float("nan")
        parts = [f"step {step}/{self.total}"]
        for key, value in values.items():
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        parts += [f"{rate:.0f} tok/s", f"eta {format_seconds(eta)}"]
        self.t_last, self.tokens_since = now, 0
        line = " | ".join(parts)
        if self.enabled:
            print(line, flush=True)
        return line
