"""Frame pseudo-labels from a frozen DINO teacher: per query frame, its most and least similar target frames."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.video_video.config import topk_count


@torch.no_grad()
def pseudo_labels(features: torch.Tensor, top_rate: float = 0.35,
                  bottom_rate: float = 0.35) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO frame features (N, T, D) -> (positives, negatives), binary float (N, N, T, T): for video pair (a, b)
    and frame i of a, the topk_count(T, rate) frames j of b of highest / lowest cosine similarity (fp32)."""
    if not (top_rate > 0 and bottom_rate > 0 and top_rate + bottom_rate <= 1):
        raise ValueError(f"pseudo-label rates must be positive and sum to at most 1, got top {top_rate}, "
                         f"bottom {bottom_rate}")
    features = F.normalize(features.float(), p=2, dim=-1)
    num, frames, dims = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        sim = (features.reshape(-1, dims) @ features.reshape(-1, dims).T).view(num, frames, num, frames)
    sim = sim.permute(0, 2, 1, 3)
    positives = torch.zeros_like(sim).scatter_(-1, sim.topk(topk_count(frames, top_rate), -1).indices, 1.0)
    negatives = torch.zeros_like(sim).scatter_(
        -1, sim.topk(topk_count(frames, bottom_rate), -1, largest=False).indices, 1.0)
    return positives, negatives
