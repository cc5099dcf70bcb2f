"""The training scripts' ``__main__``: config from the command line, the process group, ``main(cfg,
info)``, and the one-line endings: bad input, Ctrl-C (naming the checkpoint ``--resume=true``
continues from), a schedule too short to reach its learning rate."""

from __future__ import annotations

import signal
import sys
import warnings
from typing import Any, Callable, Optional

from timer1.train.checkpoint import latest_checkpoint
from timer1.train.config import load_config_or_exit
from timer1.util import dist
from timer1.util.cli import show_warnings_as_lines


def warn_short_schedule(samples: int, total_steps: int, warmup_steps: int) -> None:
    """A run whose every optimizer step falls inside the learning-rate warm-up never trains at the rate
    it was set to (`lr_at`): too little data for the recipe, which the person should hear before it runs."""
    if total_steps <= warmup_steps:
        warnings.warn(f"too little data: {samples} samples make {total_steps} optimizer steps, all inside the "
                      f"{warmup_steps}-step learning-rate warm-up, so the run never reaches its learning rate; "
                      f"give it more rows (or a smaller --data.stride, more --epochs), or a smaller "
                      f"--optim.warmup_steps")


def run_cli(main: Callable[[Any, dist.DistInfo], Any], config_class: type, description: str,
            argv: Optional[list[str]] = None) -> None:
    """The scripts' ``__main__``: config, process group, ``main(cfg, info)``. Bad input (ValueError,
    OSError) ends as one ``error:`` line and status 2, Ctrl-C as one line and status 130."""
    cfg = load_config_or_exit(config_class, argv, description)
    show_warnings_as_lines(enabled=dist.is_master())
    signal.signal(signal.SIGINT, lambda signum, frame: _interrupted(cfg.out_dir))
    error = None
    with dist.distributed() as info:
        try:
            main(cfg, info)
        except (ValueError, OSError) as err:
            error = str(err).splitlines()[0] if str(err) else type(err).__name__
        # the message is kept and the except block left first: its traceback would keep the DDP model alive
    if error is not None:
        dist.fail(error)
    if dist.under_torchrun():
        dist.leave_now(0)


def _interrupted(out_dir: str) -> None:
    """SIGINT (torchrun forwards it to every worker): rank 0 names the checkpoint ``--resume=true``
    continues from and every rank leaves at once. Not a KeyboardInterrupt: raised inside a collective it
    gave a traceback per rank and an aborted Gloo teardown. Safe: checkpoints are renamed in whole."""
    if dist.is_master():
        try:
            latest = latest_checkpoint(out_dir)
        except OSError:                                # an unreadable out_dir must not cost the one line
            latest = None
        where = (f"--resume=true continues from {latest}" if latest is not None
                 else "no checkpoint was written yet")
        print(f"error: interrupted; {where}", file=sys.stderr, flush=True)
    dist.leave_now(130)
