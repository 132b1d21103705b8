"""Where a result came from: the command, the time, and the files (path and sha256) it was computed from.

Every result file (metrics JSON, a similarity matrix's ids JSON, a QB-Norm summary) carries one `provenance`
object (`provenance()`):

    command   the command line of this process (sys.executable, then sys.argv), shell-quoted
    cwd       the folder it ran in (relative paths in the command are relative to it)
    time      when the result was written, ISO 8601 in UTC
    checkpoint  the weights that were evaluated: {"path", "sha256"} of the file; for a model trained in this run
              {"trained_in_this_run": true, "path", "sha256"} of the file this run saved those weights in (path
              and sha256 absent when they were not saved); null when no weights file holds them (e.g. --clip_arch)
    weights   every weights file the run read, by flag: {"init_model": {"path", "sha256"}, "clip_path": ...}
              (these two keys only where a model was built; a score of saved matrices has `inputs` instead)
    inputs    (saved-matrix scoring) the input files by role, each {"path", "sha256"} and, for a matrix whose
              `<name>_ids.json` (or `<name>.json`) records that very matrix (same sha256), "made_by": the
              provenance recorded there

Hashes are computed once per (file, size, modification time) in a process.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from modules.engine.checkpoint import atomic_write

_DIGESTS: dict[tuple[str, int, int], str] = {}
_BLOCK = 1 << 20


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes; cached by (absolute path, size, modification time)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def file_record(path: str | Path) -> dict:
    """{"path": as given, "sha256": of its bytes}."""
    return {"path": str(path), "sha256": file_digest(path)}


def command_line() -> str:
    """This process's command: the interpreter, then sys.argv (the script and its arguments), shell-quoted."""
    return shlex.join([sys.executable, *sys.argv])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def descriptions(matrix: str | Path) -> list[Path]:
    """The JSON files that describe a saved matrix beside it: its ids (sims_test.npy -> sims_test_ids.json,
    written by the evaluation) and its summary (x.npy -> x.json, written by test_qb_norm.py --out)."""
    matrix = Path(matrix)
    return [matrix.with_name(f"{matrix.stem}_ids.json"), matrix.with_suffix(".json")]


def matrix_record(path: str | Path) -> dict:
    """`file_record` of a saved matrix, with "made_by": the provenance recorded in a JSON beside it
    (`descriptions`) that names exactly this file (its "sims_sha256" is this file's)."""
    record = file_record(path)
    for description in descriptions(path):
        try:
            described = json.loads(description.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(described, dict) and described.get("sims_sha256") == record["sha256"]:
            record["made_by"] = described.get("provenance")
            break
    return record


def provenance(weights: Mapping[str, str | Path | None] | None = None, checkpoint: str | Path | None = None,
               trained_in_this_run: bool = False, inputs: Mapping[str, object] | None = None) -> dict:
    """The provenance object (see the module docstring). `weights`: the weights files read, by flag (None values
    are left out); `checkpoint`: the file holding the evaluated weights (--init_model, or the file this run saved
    them in when `trained_in_this_run`); `inputs`: records of the input files (`file_record`, `matrix_record`).
    Without `weights`, `checkpoint` and `trained_in_this_run` (no model was built: saved matrices were scored)
    the record has no "checkpoint" and "weights" keys."""
    if trained_in_this_run:
        held = {"trained_in_this_run": True}
        if checkpoint is not None and Path(checkpoint).is_file():
            held.update(file_record(checkpoint))
    else:
        held = None if checkpoint is None else file_record(checkpoint)
    out = {"command": command_line(), "cwd": os.getcwd(), "time": utc_now()}
    if weights is not None or checkpoint is not None or trained_in_this_run:  # a model was built here
        out["checkpoint"] = held
        out["weights"] = {name: file_record(path) for name, path in (weights or {}).items() if path is not None}
    if inputs is not None:
        out["inputs"] = dict(inputs)
    return out


def write_json(path: str | Path, obj, indent: int | None = 1) -> Path:
    """`obj` as JSON at `path`, written atomically (a reader never sees half a file, a crash leaves the old one)."""
    text = json.dumps(obj, indent=indent) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return Path(path)
