"""Architecture options of the HAP-VR similarity network and the top-k counts they imply."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Published scripts/train.sh values; the reference ViSiL constructor itself defaults both rates to 0.1.
DEFAULT_F_TOPK_RATE = 0.1
DEFAULT_V_TOPK_RATE = 0.03
# Two 2x2 max-poolings: a map needs 4 frames per side to leave one cell.
MIN_FRAMES = 4


@dataclass(frozen=True)
class HapvrConfig:
    """`dims`: region feature width; `attention`: the region attention layer (the published model has it);
    `f_topk_rate` / `v_topk_rate`: share of target regions / target frames averaged by the frame-to-frame and
    video-to-video top-k Chamfer similarities (0 means plain Chamfer: the single maximum)."""

    dims: int = 512
    attention: bool = True
    f_topk_rate: float = DEFAULT_F_TOPK_RATE
    v_topk_rate: float = DEFAULT_V_TOPK_RATE

    def __post_init__(self):
        if self.dims < 1:
            raise ValueError(f"dims must be positive, got {self.dims}")
        for name in ("f_topk_rate", "v_topk_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


def topk_count(size: int, rate: float) -> int:
    """How many of `size` values the reference averages: max(round(size * rate), 1), Python's half-to-even round."""
    return max(round(size * rate), 1)


def topk_counts(sizes: torch.Tensor, rate: float) -> torch.Tensor:
    """`topk_count` per element of an integer tensor. float64 products and torch.round (half to even) give the same
    integers as Python's `round(size * rate)`."""
    return torch.round(sizes.to(torch.float64) * rate).clamp(min=1).to(sizes.dtype)


def pooled_length(frames: torch.Tensor | int) -> torch.Tensor | int:
    """Side length of the comparator output for `frames` frames: two floor-halvings (2x2 max-pooling, stride 2)."""
    return frames // 2 // 2
