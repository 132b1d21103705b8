"""Video-in-video (ViV, from S2VS): a batch-level mix of strong views, where a downscaled clip plays inside
another, as the reference's datasets/transforms/video_in_video.py does in the collate function.

For each clip i of the batch, with probability p: a partner j != i and lambda ~ U(lambda_viv) are drawn; a box of
side ratio sqrt(1 - lambda) of the frame is centred at a uniform pixel and cut at the borders, and clip i, resized
to the box (every frame the same box), replaces that region of clip j; the result takes clip i's place and
labels[i, j] = lambda. Clip i is read from the input batch, so one mix never feeds another.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F


def viv_box(height: int, width: int, mix_lambda: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the inner clip: sides int(side * sqrt(1 - lambda)), centred at a uniform
    pixel, cut at the frame's borders (so a box near an edge is smaller, and its aspect may change)."""
    ratio = math.sqrt(1.0 - mix_lambda)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def place_inside(host: torch.Tensor, inner: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """New (T, C, H, W) copy of `host` with `inner` (T, C, H', W') resized (bilinear, antialiased) into `box`."""
    top, bottom, left, right = box
    out = host.clone()
    if bottom > top and right > left:
        out[..., top:bottom, left:right] = F.resize(inner, [bottom - top, right - left],
                                                    interpolation=InterpolationMode.BILINEAR, antialias=True)
    return out


def video_in_video(videos: torch.Tensor, rng: np.random.Generator, p: float = 0.3,
                   lambda_viv: tuple[float, float] = (0.3, 0.7)) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, C, H, W) -> (mixed (B, T, C, H, W), labels (B, B) float32): labels is the identity with
    labels[i, j] = lambda where clip i was put inside clip j. A batch of one clip has no partner and is returned as is.
    """
    count = videos.shape[0]
    labels = torch.eye(count)
    if count < 2:
        return videos, labels
    height, width = videos.shape[-2:]
    mixed = []
    for i in range(count):
        if rng.random() < p:
            j = int(rng.choice([k for k in range(count) if k != i]))
            mix_lambda = float(rng.uniform(*lambda_viv))
            mixed.append(place_inside(videos[j], videos[i], viv_box(height, width, mix_lambda, rng)))
            labels[i, j] = mix_lambda
        else:
            mixed.append(videos[i])
    return torch.stack(mixed), labels
