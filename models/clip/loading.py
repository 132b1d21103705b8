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
    """
    state = read_state_dict(path)
    clip_state, rest = split_clip(state)
    try:
        config = clip_config_from_state_dict(clip_state)
    except KeyError as error:
        raise CheckpointError(f"{path}: {error.args[0]}") from None
    net = build(config)
    net.init_from_clip(strip_clip_state_dict(clip_state))
    net.unused_keys = []
    if rest:
        _check_shapes(path, net, rest)
        missing, unexpected = net.load_reference_state_dict(rest)
        missing = [k for k in missing if not k.startswith("clip.")]
        if missing:
            raise CheckpointError(f"{path}: checkpoint lacks weights {what} needs: {', '.join(missing)}")
        net.unused_keys = unexpected
        if unexpected:
            log.warning("%s: %d keys not used by %s: %s", path, len(unexpected), what, summarise_keys(unexpected))
    return net


def _check_shapes(path: str | Path, net: nn.Module, state: dict) -> None:
    expected = net.reference_state_dict()
    for key, value in rename_keys(state, net.reference_prefixes).items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)}")
