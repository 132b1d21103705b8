"""How a run ends when the user's input is wrong or the user stops it: one line, a non-zero exit, no traceback.

The project raises three kinds of error about the user's input, each with a one-line message that names the file,
row, key or flag and says what was expected: `DataError` (annotations, videos), `CheckpointError` (weight files)
and `RunError` (the run folder, a resume, the amount of work, a write that failed). `cli(main)` prints such an
error as `<script>: error: <message>` on every process that raised it and exits 1; Ctrl-C (or SIGTERM) exits 130
with the line the run left (where it stopped, how to resume). `--debug 1` or HBI_DEBUG=1 shows the traceback.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from dataloaders.errors import DataError
from models.weights import CheckpointError


class RunError(ValueError):
    """A run that cannot start or continue as asked (folder, resume, empty work, failed write): one line."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; the message says where the run stopped and how to continue it."""


USER_ERRORS = (DataError, CheckpointError, RunError)
EXIT_ERROR, EXIT_INTERRUPTED = 1, 130
_debug = {"on": False}


def set_debug(on: bool) -> None:
    """Called once the flags are parsed: `--debug 1` shows tracebacks of the errors above."""
    _debug["on"] = bool(on)


def debugging() -> bool:
    return _debug["on"] or os.environ.get("HBI_DEBUG", "") not in ("", "0")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def _who() -> str:
    """`rank R` under torchrun with several processes, so each failing rank's line says which it is."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f" (rank {os.environ.get('RANK', '?')})" if world > 1 else ""


def cli(main: Callable[[list[str]], Any], argv: list[str] | None = None) -> None:
    """Run an entry script's `main(argv)` as a command: user errors and interrupts end in one line."""
    argv = sys.argv[1:] if argv is None else argv
    prog = Path(sys.argv[0]).name
    # Also where a shell started the run in the background with SIGINT ignored (tests, job scripts).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler), signal.signal(signal.SIGTERM, _terminate)
    try:
        main(argv)
    except USER_ERRORS as err:
        if debugging():
            raise
        print(f"{prog}: error{_who()}: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_ERROR) from None
    except KeyboardInterrupt as err:
        if debugging():
            raise
        print(f"{prog}: interrupted{_who()}: {err or 'stopped by Ctrl-C'}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
