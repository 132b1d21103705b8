"""The Banzhaf-interaction estimator: a small conv + attention network from a word-frame similarity map to the
map of Banzhaf interactions of its word-frame pairs (the reference's BanzhafModule)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BanzhafEstimator(nn.Module):
    """(B, T, V) similarity maps -> (B, T, V) estimated Banzhaf interactions.

    3x3 conv 1 -> `planes` with ReLU, single-head attention over all T*V cells with (planes, planes) matrices
    Q, K, V and no 1/sqrt(d) scaling, residual, 3x3 conv back to 1 channel. Reference keys: `cnn1.*`, `bn.*`,
    `cnn2.*`, `Q`, `K`, `V`.
    """

    def __init__(self, planes: int = 64):
        super().__init__()
        self.cnn1 = nn.Conv2d(1, planes, kernel_size=3, padding=1)
        # The reference builds a BatchNorm but never applies it; it stays so that its checkpoints load unchanged,
        # frozen, so that multi-process training (DDP) does not wait for gradients it never gets.
        self.bn = nn.BatchNorm2d(planes).requires_grad_(False)
        self.cnn2 = nn.Conv2d(planes, 1, kernel_size=3, padding=1)
        self.Q = nn.Parameter(torch.empty(planes, planes))
        self.K = nn.Parameter(torch.empty(planes, planes))
        self.V = nn.Parameter(torch.empty(planes, planes))
        for matrix in (self.Q, self.K, self.V):
            nn.init.xavier_uniform_(matrix, gain=1.414)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, T, V) -> (B, T, V)."""
        batch, t, v = maps.shape
        x = F.relu(self.cnn1(maps[:, None]))  # (B, P, T, V)
        cells = x.flatten(2).transpose(1, 2)  # (B, T*V, P)
        attended = F.scaled_dot_product_attention(cells @ self.Q, cells @ self.K, cells @ self.V, scale=1.0)
        x = x + attended.transpose(1, 2).reshape_as(x)
        return self.cnn2(x).view(batch, t, v)
