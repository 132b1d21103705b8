"""The frozen DINO teacher of HAP-VR: frames -> the ViT's CLS token, which `pseudo_labels` turns into frame labels.

The reference builds DINO's own ViT (`vit_small`, patch 16, no head) and takes `get_intermediate_layers(x, 1)`'s
CLS token: the last block's output after the final LayerNorm. timm's `vit_small_patch16_224` with
`num_classes=0` computes the same thing, and the official checkpoint `dino_deitsmall16_pretrain.pth` uses timm's
key names as they are (`cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.<i>.{norm1,attn.qkv,attn.proj,
norm2,mlp.fc1,mlp.fc2}.*`, `norm.*`), so it loads without renaming.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import timm
import torch
from torch import nn

from models.video_video.feature_extractor import IMAGENET_MEAN, IMAGENET_STD
from models.video_video.loading import read_checkpoint
from models.weights import CheckpointError, check_strict

FLAG = "--pretrained_DINO_path"
ARCHS = {"vit_small": "vit_small_patch16_224", "vit_base": "vit_base_patch16_224"}  # DINO's --DINO_arch names
WRAPPERS = ("teacher", "student", "state_dict", "model")  # the reference reads 'teacher' from a DINO checkpoint


class DinoTeacher(nn.Module):
    """ImageNet-normalised frames (N, 3, H, W) (224 as DINO was trained; H, W multiples of 16) -> CLS features
    (N, D), D = 384 for vit_small; frozen, eval mode, no gradients.

    `reference_pixels=True` feeds the ViT what the reference's DINO saw: the frames mapped back to raw 0..255
    pixel values (its training loop passes the uint8 frames to DINO without normalising them). Off by default:
    DINO was trained on normalised images."""

    def __init__(self, vit: nn.Module, reference_pixels: bool = False):
        super().__init__()
        self.vit = vit
        self.reference_pixels = reference_pixels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "DinoTeacher":
        return super().train(False)

    @property
    def dims(self) -> int:
        return int(self.vit.num_features)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"expected normalised float frames (N, 3, H, W), got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        if self.reference_pixels:
            frames = (frames * self.std + self.mean) * 255.0
        return self.vit(frames)


def _backbone_state(content: Any, name: str) -> dict[str, torch.Tensor]:
    """The ViT's tensors of a DINO file: the official backbone state dict, or a training checkpoint's
    `teacher` / `student` (or a `state_dict` / `model` wrapper) with `module.` / `backbone.` prefixes removed and
    the DINO projection head (`head.*` beside `backbone.*`) left out, as the reference leaves it."""
    if not isinstance(content, dict):
        raise CheckpointError(f"{name}: expected a state dict or a DINO checkpoint dict, got {type(content).__name__}")
    for wrapper in WRAPPERS:
        if isinstance(content.get(wrapper), dict):
            content = content[wrapper]
            break
    bad = [key for key, value in content.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{name}: {bad[0]} is not a tensor (expected a ViT state dict, or a DINO checkpoint "
                              f"with one of {', '.join(WRAPPERS)})")
    if content and all(key.startswith("module.") for key in content):
        content = {key[len("module."):]: value for key, value in content.items()}
    if any(key.startswith("backbone.") for key in content):
        # DINO's MultiCropWrapper: the ViT under backbone., its projection head under head. (not the features).
        content = {key[len("backbone."):] if key.startswith("backbone.") else key: value
                   for key, value in content.items() if not key.startswith("head.")}
    return content


def load_dino_weights(vit: nn.Module, path: Union[str, Path], flag: str = FLAG) -> None:
    """Strict load of a DINO file into a timm ViT: every key present with its shape, nothing else."""
    name = f"{flag} {path}"
    if not Path(path).is_file():
        raise CheckpointError(f"{name}: DINO weight file not found")
    try:
        content = read_checkpoint(path)
    except CheckpointError as error:
        raise CheckpointError(f"{flag} {error}") from None
    state = _backbone_state(content, name)
    check_strict(vit.state_dict(), state, name, "the ViT",
                 "the DINO ViT backbone, e.g. dino_deitsmall16_pretrain.pth", hint=" (another --DINO_arch?)")
    vit.load_state_dict({key: value.float() for key, value in state.items()})


def build_dino_teacher(path: Optional[Union[str, Path]] = None, arch: str = "vit_small", random_init: bool = False,
                       reference_pixels: bool = False, seed: int = 0) -> DinoTeacher:
    """The DINO teacher from a local weight file (`--pretrained_DINO_path`); nothing is downloaded. `arch` is the
    reference's `--DINO_arch` (patch size 16). `random_init` without a path: timm's random initialisation drawn
    from `seed`, for demos and tests only."""
    if arch not in ARCHS:
        raise CheckpointError(f"--DINO_arch {arch}: expected one of {', '.join(ARCHS)}")
    if path is None and not random_init:
        raise CheckpointError(f"{FLAG}: no DINO weights given (expected the official {arch} patch-16 checkpoint, "
                              "e.g. dino_deitsmall16_pretrain.pth; nothing is downloaded)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # dynamic_img_size: frames of any size (patch multiple) take the position embedding resized, so the demo's
        # small frames need no upsampling; at 224 it is the plain model.
        vit = timm.create_model(ARCHS[arch], pretrained=False, num_classes=0, dynamic_img_size=True)
    if path is not None:
        load_dino_weights(vit, path)
    return DinoTeacher(vit, reference_pixels)
