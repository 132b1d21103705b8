"""Building a music-video model from a reference state dict or checkpoint, its sizes read off the tensors."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Union

import torch

from models.music_video.model import MusicVideoModel
from models.weights import CheckpointError, check_strict, read_state_dict

Source = Union[str, Path, dict]
_LAYER = re.compile(r"music_transformer\.layers\.(\d+)\.")
# key whose tensor gives a size: (key, dim)
_SIZE_KEYS = {
    "embed_dim": ("music_linear.weight", 0),
    "music_dim": ("music_linear.weight", 1),
    "video_dim": ("video_linear.weight", 1),
    "beat_dim": ("music_beat_linear.0.weight", 1),
    "beat_hidden": ("music_beat_linear.0.weight", 0),
    "ffn_width": ("music_transformer.layers.0.linear1.weight", 0),
}


def read_music_video_state(source: Source) -> tuple[str, dict[str, torch.Tensor]]:
    """(name for messages, flat state dict) of a path, a state dict or a reference checkpoint
    `{epoch, state_dict, optimizer}`; a DataParallel `module.` prefix is dropped."""
    if isinstance(source, (str, Path)):
        name, state = str(source), read_state_dict(source)
    elif isinstance(source, dict):
        name, state = "state dict", source
        for wrapper in ("model", "state_dict"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        bad = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{name}: {bad[0]} is not a tensor (expected a state dict or a checkpoint "
                                  "with a 'state_dict' entry)")
    else:
        raise CheckpointError(f"expected a path or a state dict, got {type(source).__name__}")
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return name, state


def infer_sizes(state: dict[str, torch.Tensor], name: str = "state dict") -> dict[str, int]:
    """embed_dim, num_layers and the input widths of a reference state dict."""
    sizes = {}
    for size, (key, dim) in _SIZE_KEYS.items():
        if key not in state:
            raise CheckpointError(f"{name}: missing key {key} (expected a BPVMR music-video state dict)")
        sizes[size] = int(state[key].shape[dim])
    sizes["num_layers"] = 1 + max(int(m.group(1)) for key in state if (m := _LAYER.match(key)))
    return sizes


def load_music_video_model(source: Source, attention: str = "time", num_heads: int = 4,
                           **options) -> MusicVideoModel:
    """A `MusicVideoModel` with the weights of `source` (a path, a state dict or a reference checkpoint), under
    the reference's key names; sizes come from the tensors, `num_heads` (4) and `options` (`num_segments`,
    dropouts, `beat_weight`, `beat_orientation`) from the caller. A missing, unexpected or misshapen key stops
    with a `CheckpointError` naming the source and the key."""
    name, state = read_music_video_state(source)
    sizes = infer_sizes(state, name)
    if sizes["embed_dim"] % num_heads:
        raise CheckpointError(f"{name}: embed_dim {sizes['embed_dim']} (music_linear.weight) is not divisible by "
                              f"{num_heads} heads")
    model = MusicVideoModel(num_heads=num_heads, attention=attention, **sizes, **options)
    load_reference_weights(model, state, name)
    return model


def load_reference_weights(model: MusicVideoModel, state: dict[str, torch.Tensor], name: str) -> None:
    """Strict load: every key of the model present with its shape, nothing else."""
    check_strict(model.reference_state_dict(), state, name, "the model",
                 f"the keys of a {len(model.music_transformer.layers)}-layer BPVMR model")
    model.load_state_dict({key: value.float() for key, value in state.items()})
