"""A restricted unpickler for annotation pickles: plain containers and strings, nothing that runs code.

The published annotation pickles hold dicts, lists, tuples, sets and strings. Protocol 4+ writes sets with their own
opcodes, protocols 2-3 write them as a call of `builtins.set` (EVVE's `evve.pickle` does), so exactly `set` and
`frozenset` are admitted as globals; every other global (the way a pickle reaches `os.system` and the like) is refused.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

from dataloaders.errors import DataError

# (module, name) pairs a plain-container pickle may name; "__builtin__" is how protocol-2 pickles of Python 2 spell it.
_ALLOWED = {(module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset")}


class PlainContainersUnpickler(pickle.Unpickler):
    """Loads dicts, lists, tuples, sets, strings and numbers; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return frozenset if name == "frozenset" else set
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain containers and strings")


def load_plain_pickle(path: str | Path) -> object:
    """The object in the pickle at `path`, read with `PlainContainersUnpickler`.

    DataError (one line naming the file) for a refused global or a corrupt / truncated file.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return PlainContainersUnpickler(f).load()
    except OSError:
        raise
    except Exception as exc:  # a corrupt pickle raises many types (UnpicklingError, EOFError, KeyError, ...)
        detail = str(exc).splitlines()[0][:200] if str(exc) else "truncated or corrupt"
        raise DataError(f"{path}: not a plain-container pickle ({type(exc).__name__}: {detail})") from None
