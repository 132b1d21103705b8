"""HAP-VR's two views of a training clip (S2VS's datasets/augmentations.py): a weak and a strong augmentation.

Input: a clip (T, C, H, W), uint8 in 0..255 or float in 0..1, of any length T >= 1 (the training loader reads
2 * window_sz frames at 1 fps, short side 256, as the reference); output: (window_sz, C, frame_sz, frame_sz), same
dtype. Every random draw comes from the numpy Generator passed in (`augmentation_rng` makes one per sample).

Weak: a random window of window_sz frames (looped if shorter), RandomResizedCrop(frame_sz, scale 0.8-1, ratio
3/4-4/3), horizontal flip with p 0.5; crop and flip drawn once per clip, as torchvision does on the reference's
(T, C, H, W) tensor.
Strong, in the reference's order: TT on the whole input (`temporal.temporal_transform`), the window, RandomResizedCrop
(scale 0.5-1) and flip per clip, GT = RandAugment(num_ops=n_raug, magnitude=m_raug) with ONE draw of ops and
magnitudes for the whole clip (the reference applies torchvision's RandAugment to the (T, C, H, W) tensor, so every
frame gets the same ops), FT per frame (`frame_transforms`). ViV mixes strong views across a batch
(`video_in_video`, applied by the collate function in `pairs`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from dataloaders.video_video.frame_transforms import frame_transforms
from dataloaders.video_video.temporal import temporal_crop, temporal_transform
from dataloaders.video_video.video_in_video import video_in_video

AUGMENTATION_NAMES = ("GT", "FT", "TT", "ViV")
WEAK_SCALE = (0.8, 1.0)  # RandomResizedCrop area shares of the reference's weak and strong views
STRONG_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
_AUGMENTATION_STREAM = 1  # SeedSequence key that separates augmentation draws from the loader's window draws


@dataclass(frozen=True)
class AugmentationOptions:
    """The reference train.py's augmentation flags (same names, same defaults; train.sh sets window_sz 28), and
    frame_sz, the views' output side (the reference's Augmentations argument, 224; not a flag there)."""
    window_sz: int = 32
    frame_sz: int = 224
    augmentations: str = "GT,FT,TT,ViV"
    n_raug: int = 2
    m_raug: int = 9
    p_overlay: float = 0.3
    p_blur: float = 0.5
    p_tsd: float = 0.5
    p_ff: float = 0.1
    p_sm: float = 0.1
    p_rev: float = 0.1
    p_pau: float = 0.1
    p_shuffle: float = 0.5
    p_dropout: float = 0.3
    p_content: float = 0.5
    p_viv: float = 0.3
    lambda_viv: tuple[float, float] = (0.3, 0.7)

    def __post_init__(self) -> None:
        if isinstance(self.lambda_viv, str):  # "0.3,0.7", as the flag is written
            object.__setattr__(self, "lambda_viv", tuple(float(v) for v in self.lambda_viv.split(",")))
        object.__setattr__(self, "lambda_viv", tuple(float(v) for v in self.lambda_viv))
        unknown = set(self.enabled) - set(AUGMENTATION_NAMES)
        if unknown:
            raise ValueError(f"--augmentations: unknown {sorted(unknown)}; expected names from {AUGMENTATION_NAMES}")
        if self.window_sz < 1 or self.frame_sz < 1 or self.n_raug < 0 or not 0 <= self.m_raug <= 30:
            raise ValueError(f"--window_sz and frame size must be >= 1, --n_raug >= 0, --m_raug in 0..30, got "
                             f"{self.window_sz}, {self.frame_sz}, {self.n_raug}, {self.m_raug}")
        for name in ("p_overlay", "p_blur", "p_tsd", "p_ff", "p_sm", "p_rev", "p_pau", "p_shuffle", "p_dropout",
                     "p_content", "p_viv"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.p_tsd + self.p_ff + self.p_sm + self.p_rev + self.p_pau > 1 + 1e-9:
            raise ValueError("--p_tsd + --p_ff + --p_sm + --p_rev + --p_pau must not exceed 1 (one is applied)")
        if len(self.lambda_viv) != 2 or not 0.0 <= self.lambda_viv[0] <= self.lambda_viv[1] < 1.0:
            raise ValueError(f"--lambda_viv must be two numbers 0 <= low <= high < 1, got {self.lambda_viv}")

    @property
    def enabled(self) -> frozenset[str]:
        """The strong view's transformation groups named in `augmentations` (comma-separated)."""
        return frozenset(name.strip() for name in self.augmentations.split(",") if name.strip())

    @classmethod
    def from_flags(cls, flags: argparse.Namespace | Mapping[str, Any]) -> AugmentationOptions:
        """The options among `flags` (a parsed namespace or a dict); others are ignored, missing ones default."""
        values = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags)
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if values.get(f.name) is not None})


def augmentation_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The Generator of sample `index` in `epoch`: a function of (seed, epoch, index) alone.

    The index is the dataset index a DistributedSampler hands out, unique across ranks and workers, so the streams
    of ranks and workers already differ; leaving rank and worker out keeps a sample's views the same whatever the
    number of processes and workers, and lets a resumed run replay them.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, index, _AUGMENTATION_STREAM])))


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], rng: np.random.Generator,
                            ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """(top, left, h, w) of torchvision's RandomResizedCrop rule: up to 10 tries of an area share ~ U(scale) and a
    log-uniform aspect ratio that fit, else the largest centred box within `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_and_flip(clip: torch.Tensor, size: int, scale: tuple[float, float], rng: np.random.Generator) -> torch.Tensor:
    """(T, C, H, W) -> (T, C, size, size): one random resized crop (bilinear, antialiased) and a horizontal flip
    with p 0.5, the same for every frame."""
    top, left, h, w = random_resized_crop_box(clip.shape[-2], clip.shape[-1], scale, rng)
    out = F.resized_crop(clip, top, left, h, w, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if out.dtype.is_floating_point:  # float rounding can step just past 1
        out = out.clamp_(0, 1)
    return out.flip(-1) if rng.random() < 0.5 else out


def rand_augment(clip: torch.Tensor, num_ops: int, magnitude: int, rng: np.random.Generator) -> torch.Tensor:
    """(T, C, H, W) -> (T, C, H, W): torchvision's RandAugment (default bins, nearest, no fill) with one draw of
    ops and magnitudes for the whole clip. RandAugment draws from torch's global RNG, so it runs in a forked RNG
    seeded from `rng`: the caller's global state is untouched and `rng` alone decides the draw."""
    seed = int(rng.integers(0, 2**63 - 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return v2.RandAugment(num_ops=num_ops, magnitude=magnitude)(clip)


def _check_clip(clip: torch.Tensor) -> None:
    if clip.ndim != 4 or clip.shape[1] not in (1, 3) or clip.shape[0] < 1:
        raise ValueError(f"expected a clip (T, C, H, W) with T >= 1 and C in (1, 3), got {tuple(clip.shape)}")
    if not (clip.dtype == torch.uint8 or clip.dtype.is_floating_point):
        raise ValueError(f"expected a uint8 (0..255) or float (0..1) clip, got {clip.dtype}")


class WeakAugmentations:
    """The weak view: (T, C, H, W) -> (window_sz, C, frame_sz, frame_sz), same dtype (see the module docstring)."""

    def __init__(self, options: AugmentationOptions = AugmentationOptions()) -> None:
        self.options = options

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _check_clip(clip)
        clip = temporal_crop(clip, self.options.window_sz, rng)
        return crop_and_flip(clip, self.options.frame_sz, WEAK_SCALE, rng)

    def __repr__(self) -> str:
        return f"WeakAugmentations(window_sz={self.options.window_sz}, frame_sz={self.options.frame_sz})"


class StrongAugmentations:
    """The strong view: (T, C, H, W) -> (window_sz, C, frame_sz, frame_sz), same dtype; `mix` is the batch-level
    ViV step (see the module docstring)."""

    def __init__(self, options: AugmentationOptions = AugmentationOptions()) -> None:
        self.options = options

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _check_clip(clip)
        o, enabled = self.options, self.options.enabled
        if "TT" in enabled:
            clip = temporal_transform(clip, rng, o.window_sz, o.p_tsd, o.p_ff, o.p_sm, o.p_rev, o.p_pau,
                                      o.p_shuffle, o.p_dropout, o.p_content)
        clip = crop_and_flip(temporal_crop(clip, o.window_sz, rng), o.frame_sz, STRONG_SCALE, rng)
        if "GT" in enabled:
            clip = rand_augment(clip, o.n_raug, o.m_raug, rng)
        if "FT" in enabled:
            clip = frame_transforms(clip, rng, o.p_overlay, o.p_blur)
        return clip

    def mix(self, videos: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Strong views (B, T, C, H, W) -> (mixed views, labels (B, B)); the identity when ViV is off."""
        if "ViV" not in self.options.enabled:
            return videos, torch.eye(videos.shape[0])
        return video_in_video(videos, rng, self.options.p_viv, self.options.lambda_viv)

    def __repr__(self) -> str:
        return f"StrongAugmentations({self.options})"


def make_pair(clip: torch.Tensor, weak: WeakAugmentations, strong: StrongAugmentations,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(weak view, strong view) of one clip (T, C, H, W), each (window_sz, C, frame_sz, frame_sz).

    Each view draws from its own child of `rng`, so changing one view's options leaves the other's draws alone.
    """
    weak_rng, strong_rng = rng.spawn(2)
    return weak(clip, weak_rng), strong(clip, strong_rng)
