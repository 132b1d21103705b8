"""Training checkpoints that resume exactly: model, optimiser, scheduler, scaler, counters and every RNG.

The file loads with `torch.load(weights_only=True)`: RNG states are stored as tensors and plain python values.
"""
from __future__ import annotations

import errno
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch
from torch import nn

from models.weights import CheckpointError
from modules.engine.errors import RunError

FORMAT = "hbi-train-checkpoint-v1"
LAST_NAME = "last.pt"
TMP_MARK = ".tmp"  # temporary files are .<name>.tmp<pid>
_REQUIRED_KEYS = ("format", "model", "step", "epoch", "rng")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def _write_failure(path: Path, err: BaseException) -> str:
    """Why a write failed, in words: the OSError behind torch's own message when there is one (a full disk
    shows up as `[enforce fail at inline_container.cc] unexpected pos`, with the ENOSPC as its context)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
        free = shutil.disk_usage(path.parent).free
        return f"the disk is full ({free / 2**20:.1f} MiB free there)"
    if isinstance(cause, OSError):
        return cause.strerror or str(cause)
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write `path` through a temporary file in the same folder, fsync it, then rename it into place.

    A crash or an exception while writing leaves the previous file (if any) untouched and no partial file; a write
    that fails (a full disk, no permission) raises `RunError` naming the path and the cause.
    """
    path = Path(path)
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (KeyboardInterrupt, SystemExit):
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:
        tmp.unlink(missing_ok=True)
        raise RunError(f"{path}: could not write it: {_write_failure(path, err)}") from err
    # The rename itself is durable only once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed runs left in `folder` (their process is gone); returns them."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_MARK}*"):
        pid = tmp.name.rpartition(TMP_MARK)[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel, so keys carry no `module.` prefix."""
    return model.module if hasattr(model, "module") else model


def _rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and CUDA as tensors and plain values (weights_only-safe)."""
    py_version, py_keys, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "keys": torch.tensor(py_keys, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["keys"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # A resume on fewer GPUs restores the devices that exist.
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None, step: int, epoch: int,
                    extra: dict | None = None) -> None:
    """Save everything a resume needs, atomically. `extra` must hold tensors and plain python values only."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "model": _unwrap(model).state_dict(),
        "step": int(step),
        "epoch": int(epoch),
        "rng": _rng_state(),
        "extra": dict(extra or {}),
    }
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            payload[key] = obj.state_dict()
    atomic_write(path, lambda f: torch.save(payload, f))


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    """Load and validate a checkpoint file; errors name the file."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (expected a dict, got {type(ckpt).__name__})")
    for key in _REQUIRED_KEYS:
        if key not in ckpt:
            raise CheckpointError(f"{path}: not a training checkpoint of this repository (missing key '{key}')")
    return ckpt


def load_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None, restore_rng: bool = True,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Restore the given objects (and the RNGs) from `path`; returns {"step", "epoch", "extra"}.

    An object passed in whose state the file lacks is an error naming the file and the key.
    """
    path = Path(path)
    ckpt = _read(path, map_location)
    _unwrap(model).load_state_dict(ckpt["model"])
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is None:
            continue
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' state to resume from")
        obj.load_state_dict(ckpt[key])
    if restore_rng:
        _set_rng_state(ckpt["rng"])
    return {"step": ckpt["step"], "epoch": ckpt["epoch"], "extra": ckpt.get("extra", {})}


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The resume file of a run folder (`last.pt`), or None when the run has not saved one yet."""
    path = Path(output_dir) / LAST_NAME
    return path if path.is_file() else None
