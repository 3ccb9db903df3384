"""The one way the package writes human-readable progress and messages: a rich console on stderr
(stdout stays each command's JSON result).

Why a helper: rich wraps long lines at the terminal's width, and when stderr is not a terminal (a log
file, CI, ``2> run.log``) it assumes 80 columns and breaks messages mid-phrase. Off a terminal the
console soft-wraps (never inserts line breaks) and draws no colour or live redraws.
"""

from __future__ import annotations

import sys


def stderr_console(file=None):
    """A ``rich.console.Console`` on ``file`` (default stderr); off a terminal, lines are never
    wrapped and no control codes are written."""
    from rich.console import Console

    stream = file if file is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return Console(file=stream)
    return Console(file=stream, soft_wrap=True, no_color=True, highlight=False, emoji=False)
