"""Per-clip encoders of the music-video model: feature and beat projections, the fusion, segment transformers.

Shapes: B clips, S segments (30), D = embed_dim. Module attribute names are the reference's key names.
"""
from __future__ import annotations

import torch
from torch import nn

ATTENTIONS = ("time", "batch")
# nn.TransformerEncoderLayer defaults, which the reference keeps: linear1 of width 2048 (its checkpoints) and ReLU
# (the golden embeddings); dropout 0.1 is the default too, assumed, as the golden is computed in eval mode.
DEFAULT_FFN_WIDTH = 2048
DEFAULT_ENCODER_DROPOUT = 0.1


def beat_projection(beat_dim: int, hidden: int, embed_dim: int) -> nn.Sequential:
    """Linear(beat_dim, hidden) then Linear(hidden, embed_dim), no activation between (keys `.0.*`, `.1.*`)."""
    return nn.Sequential(nn.Linear(beat_dim, hidden), nn.Linear(hidden, embed_dim))


def fuse(features: torch.Tensor, beats: torch.Tensor) -> torch.Tensor:
    """(B, S, D) projected features and (B, S, D) projected beats -> (B, S, 2D) `[x + b, x * b]`."""
    return torch.cat([features + beats, features * beats], dim=-1)


class SegmentEncoder(nn.Module):
    """A stack of post-norm `nn.TransformerEncoderLayer`s (ReLU, no final norm) over (B, S, W) inputs.

    `attention`: "time" -- each clip attends over its own S segments (batch-first); "batch" -- the reference's
    sequence-first reading of a (B, S, W) input, in which each segment position attends across the B clips of the
    batch, so an embedding depends on the other clips of its batch. Keys: `layers.{i}.*` as the reference's
    `nn.TransformerEncoder`.
    """

    def __init__(self, width: int, num_layers: int, num_heads: int, ffn_width: int = DEFAULT_FFN_WIDTH,
                 dropout: float = DEFAULT_ENCODER_DROPOUT, attention: str = "time"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention {attention!r}: expected one of {', '.join(ATTENTIONS)}")
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by {num_heads} heads")
        self.attention = attention
        # Sequence-first layers, as the reference's; "time" transposes its input to (S, B, W).
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(width, num_heads, ffn_width, dropout)
                                    for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, W) -> (B, S, W)."""
        x = x.transpose(0, 1) if self.attention == "time" else x
        for layer in self.layers:
            x = layer(x)
        return x.transpose(0, 1) if self.attention == "time" else x


def encode_branch(features: torch.Tensor, beats: torch.Tensor, feature_linear: nn.Linear,
                  beat_linear: nn.Sequential, feature_encoder: SegmentEncoder,
                  beat_encoder: SegmentEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    """One branch: (B, S, F) features, (B, S, beat_dim) beats -> ((B, S*2D) flat feature embedding, (B, S, D)
    encoded beats)."""
    x = feature_linear(features)
    b = beat_linear(beats)
    data = feature_encoder(fuse(x, b))
    return data.flatten(1), beat_encoder(b)
