"""What every command-line entry point shares: a Python warning is one ``warning: ...`` line.

Python prints a warning as ``/path/to/file.py:237: UserWarning: message`` followed by the source line
that raised it: noise for a person running a command, who needs the message alone.
"""

from __future__ import annotations

import sys
import warnings


def show_warnings_as_lines(enabled: bool = True) -> None:
    """From now on, each warning this process shows is one ``warning: MESSAGE`` line on stderr;
    ``enabled=False`` (the other ranks of a torchrun job) shows none, so a job says each one once."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if enabled:
            print(f"warning: {message}", file=sys.stderr if file is None else file, flush=True)

    warnings.showwarning = show
