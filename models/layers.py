"""Small layers shared by several models."""
from __future__ import annotations

import torch
from torch import nn


class QuickGELU(nn.Module):
    """The GELU approximation OpenAI's CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def token_weight_mlp(width: int) -> nn.Sequential:
    """The 2-layer MLP that gives one weight per token (reference keys `.0.*` and `.2.*`)."""
    return nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(inplace=True), nn.Linear(2 * width, 1))


def init_reference_weights(module: nn.Module) -> None:
    """The reference's initialisation of the layers it adds around CLIP: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
