"""Building a CLIP-based model from a weight file: an OpenAI CLIP file or a repository / released checkpoint."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, TypeVar

from torch import nn

from models.clip.adapter import ClipConfig, clip_config_from_state_dict, strip_clip_state_dict
from models.weights import CheckpointError, read_state_dict, rename_keys, split_clip, summarise_keys

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=nn.Module)


def load_weights(path: str | Path, build: Callable[[ClipConfig], Model], what: str) -> Model:
    """Reads a CLIP file or a repository checkpoint and builds the model (`build(config)`) its tensors fit.

    - OpenAI CLIP file (TorchScript archive or state dict): CLIP loaded, the new layers initialised as the
      reference does (`model.init_from_clip`).
    - Repository checkpoint (`clip.*` keys, reference or own names): every weight the model needs must be there;
      keys the model does not use (another model's heads) are reported in the log and in `model.unused_keys`.
    A weight that is missing or has another shape than the model's raises CheckpointError, one line naming the
    file and the key(s) as the file spells them.
    """
    state = read_state_dict(path)
    prefix = "clip." if any(k.startswith("clip.") for k in state) else ""
    clip_state, rest = split_clip(state)
    try:
        config = clip_config_from_state_dict(clip_state)
    except KeyError as error:
        raise CheckpointError(f"{path}: {error.args[0]}") from None
    net = build(config)
    clip_state = strip_clip_state_dict(clip_state)
    _check_clip(path, net, clip_state, prefix)
    if rest:
        _check_copied_shapes(path, net, clip_state, rest, prefix)
    try:
        # A checkpoint's own new layers replace what CLIP would start them from.
        net.init_from_clip(clip_state, new_layers=not rest)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    net.unused_keys = []
    if rest:
        _check_shapes(path, net, rest)
        missing, unexpected = net.load_reference_state_dict(rest)
        missing = [k for k in missing if not k.startswith("clip.")]
        if missing:
            raise CheckpointError(f"{path}: checkpoint lacks weights {what} needs: {list_keys(missing)}")
        net.unused_keys = unexpected
        if unexpected:
            log.warning("%s: %d keys not used by %s: %s", path, len(unexpected), what, summarise_keys(unexpected))
    return net


def list_keys(keys: list[str], prefix: str = "", limit: int = 5) -> str:
    """The first `limit` keys (with `prefix`), and how many there are when that is not all of them."""
    shown = ", ".join(prefix + k for k in keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, ... ({len(keys)} in all)"


def _check_clip(path: str | Path, net: nn.Module, clip_state: dict, prefix: str) -> None:
    """The CLIP weights of the file against the backbone their sizes give: nothing missing, nothing extra, every
    shape the backbone's (some sizes are read off one tensor only, so another can disagree)."""
    expected = net.clip.state_dict()
    missing = [k for k in expected if k not in clip_state]
    if missing:
        raise CheckpointError(f"{path}: lacks {len(missing)} CLIP weight(s) the model needs: "
                              f"{list_keys(missing, prefix)}")
    unexpected = [k for k in clip_state if k not in expected]
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} CLIP key(s) that a ViT CLIP does not have: "
                              f"{list_keys(unexpected, prefix)}")
    for key, value in clip_state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: {prefix}{key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)} (from the file's other CLIP weights)")


def _check_copied_shapes(path: str | Path, net: nn.Module, clip_state: dict, rest: dict, prefix: str) -> None:
    """A weight that starts as a copy of a CLIP weight (`net.clip_copies`) must have that weight's shape in a
    checkpoint too. The model's sizes are read off the CLIP weight, so when the two differ it is the CLIP
    weight that is named, with the shape its copy in the same file gives."""
    own = rename_keys(rest, {new: old for old, new in net.reference_prefixes.items()})
    spelled = dict(zip(own, rest))  # own name -> the file's name (rename_keys keeps the order)
    for key, clip_key in getattr(net, "clip_copies", {}).items():
        if key in own and clip_key in clip_state and own[key].shape != clip_state[clip_key].shape:
            raise CheckpointError(f"{path}: {prefix}{clip_key} has shape {tuple(clip_state[clip_key].shape)}, "
                                  f"expected {tuple(own[key].shape)} as {spelled[key]} in the same file, which "
                                  f"starts as a copy of it")


def _check_shapes(path: str | Path, net: nn.Module, state: dict) -> None:
    expected = net.reference_state_dict()
    for key, value in rename_keys(state, net.reference_prefixes).items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)}")
