"""The two trainable parts of the ViSiL-style similarity network: region attention and the comparator CNN."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class RegionAttention(nn.Module):
    """Weights each region vector by sigmoid(context_vector . tanh(transform x)); (..., D) -> (..., D).

    The reference's default (`attention_norm=False`) path: the weighted vectors are not renormalised."""

    def __init__(self, dims: int = 512):
        super().__init__()
        self.transform = nn.Linear(dims, dims)
        self.context_vector = nn.Linear(dims, 1, bias=False)
        nn.init.xavier_uniform_(self.context_vector.weight)
        nn.init.xavier_uniform_(self.transform.weight)
        nn.init.zeros_(self.transform.bias)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., 1) attention weights in (0, 1)."""
        return torch.sigmoid(self.context_vector(torch.tanh(self.transform(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


def _keep(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Zeroes every cell of (P, C, H, W) outside the top-left rows[p] x cols[p] block of its pair."""
    height, width = x.shape[-2:]
    valid_rows = torch.arange(height, device=x.device) < rows[:, None]
    valid_cols = torch.arange(width, device=x.device) < cols[:, None]
    valid = (valid_rows[:, :, None] & valid_cols[:, None, :])[:, None]
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


class VideoComparator(nn.Module):
    """ViSiL's 4-layer CNN over a frame-to-frame similarity map; (P, 1, H, W) -> (P, 1, H // 4, W // 4).

    conv3x3 (zero padding 1) + ReLU + 2x2 max-pool, twice; conv3x3 + ReLU; a 1x1 conv. Without lengths every map
    is whole (the reference). With per-pair lengths (`rows`, `cols`) the maps are padded: cells past a pair's
    lengths are zeroed before each convolution, so its border sees the zeros that plain padding would give, and a
    pooled cell that would straddle the end of an odd length is dropped as floor pooling drops it. A padded pair
    then scores exactly as the same pair alone; cells outside `pooled_length` of the output are garbage."""

    def __init__(self, channels: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels[0], kernel_size=3)
        self.conv2 = nn.Conv2d(channels[0], channels[1], kernel_size=3)
        self.conv3 = nn.Conv2d(channels[1], channels[2], kernel_size=3)
        self.fconv = nn.Conv2d(channels[2], 1, kernel_size=1)
        for conv in (self.conv1, self.conv2, self.conv3, self.fconv):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, sim: torch.Tensor, rows: Optional[torch.Tensor] = None,
                cols: Optional[torch.Tensor] = None) -> torch.Tensor:
        masked = rows is not None
        if masked:
            sim = _keep(sim, rows, cols)
        for conv in (self.conv1, self.conv2):
            sim = F.max_pool2d(F.relu(conv(F.pad(sim, (1, 1, 1, 1)))), kernel_size=2, stride=2)
            if masked:
                rows, cols = rows // 2, cols // 2
                sim = _keep(sim, rows, cols)
        sim = F.relu(self.conv3(F.pad(sim, (1, 1, 1, 1))))
        return self.fconv(sim)
