"""Reading weight files: OpenAI CLIP archives, plain state dicts and this repository's checkpoints.

Nothing is downloaded; every file is read from a local path. Plain files load with `torch.load(weights_only=True)`;
OpenAI's TorchScript archives go through `torch.jit.load`, which reads tensors without unpickling Python objects.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Callable

import torch


class CheckpointError(ValueError):
    """A weight file that is missing, unreadable or does not fit the model, or model sizes / options (flags) no
    model can be built or run with; the message is one line naming the file, key or flag and what was expected."""


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def check_strict(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], name: str, model: str,
                 expected: str, optional: Callable[[str], bool] = lambda key: False, hint: str = "") -> None:
    """A strict load's checks, one CheckpointError line naming `name` and the first bad key: every key of `own`
    in `state` (those `optional` accepts may be absent), no other key, every shape `own`'s. `model` is who has
    the keys ("the model", "ResNet-50"), `expected` what the file should be, `hint` ends a shape message."""
    missing = [key for key in own if key not in state and not optional(key)]
    if missing:
        raise CheckpointError(f"{name}: missing key {missing[0]} ({len(missing)} missing; expected {expected})")
    unexpected = [key for key in state if key not in own]
    if unexpected:
        raise CheckpointError(f"{name}: unexpected key {unexpected[0]} ({len(unexpected)} keys {model} does not "
                              "have)")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{name}: {key} has shape {tuple(value.shape)}, {model} expects "
                                  f"{tuple(own[key].shape)}{hint}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Returns the tensors of a weight file as a flat dict (a `{"model": ...}` checkpoint is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found")
    try:
        if _is_torchscript(path):
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run whatever the file holds.
        raise CheckpointError(f"{path}: not a readable weight file (not a torch file of tensors: torch.load with "
                              "weights_only=True refused it; it is corrupt or holds Python objects)") from None
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable weight file ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200]})") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def split_clip(state_dict: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(CLIP weights with OpenAI names, everything else). Repository checkpoints keep CLIP under `clip.`."""
    if any(k.startswith("clip.") for k in state_dict):
        clip = {k[len("clip."):]: v for k, v in state_dict.items() if k.startswith("clip.")}
        rest = {k: v for k, v in state_dict.items() if not k.startswith("clip.")}
        return clip, rest
    return dict(state_dict), {}


def summarise_keys(keys: list[str], limit: int = 12) -> str:
    """Groups keys by their first component so a long list reads in one line."""
    groups: dict[str, int] = {}
    for key in keys:
        head = key.split(".")[0]
        groups[head] = groups.get(head, 0) + 1
    parts = [f"{head}.* ({n})" if n > 1 else head for head, n in groups.items()]
    more = f", ... {len(parts) - limit} more groups" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def rename_keys(state_dict: dict, prefixes: dict[str, str]) -> dict:
    """Renames keys by prefix (first match wins); keys with no matching prefix are kept as they are."""
    out = {}
    for key, value in state_dict.items():
        for old, new in prefixes.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out
