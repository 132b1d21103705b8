"""X-Pool-style cross-attention pooling of a music clip's beat track, with a video's beat pool as the query.

The reference's `beat_pool.*` keys: `cross_attn.{q,k,v,out}_proj` (D x D each, multi-head, no dropout),
`linear_proj` (D x D), `layer_norm1..3`. For a query q (a video's beat pool, D) and a music clip's encoded beats
K (S, D):

    q', K' = layer_norm1(q), layer_norm1(K)
    a      = out_proj(multi-head attention of q_proj(q') over k_proj(K'), v_proj(K'); softmax over the S segments)
    a      = layer_norm2(a)
    pooled = layer_norm3(a + dropout(linear_proj(a)))

Pooling depends on the pair, so the per-clip projections (`prepare_keys`, `prepare_queries`) are computed once per
clip and `pool` combines chunks of music clips with every video.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class CrossAttention(nn.Module):
    """Multi-head attention of Nq queries over each of Nk key sequences (keys `q_proj k_proj v_proj out_proj`)."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., H, D/H)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim))

    def attend(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Projected, head-split queries (Nq, H, d), keys and values (Nk, S, H, d) -> (Nk, Nq, D) after out_proj."""
        logits = torch.einsum("qhd,kshd->khqs", queries, keys) / math.sqrt(self.head_dim)
        weights = logits.softmax(dim=-1)                                  # over the S segments
        out = torch.einsum("khqs,kshd->kqhd", weights, values)
        return self.out_proj(out.flatten(-2))


class BeatPool(nn.Module):
    """Pools every music clip's beats (Nm, S, D) once per video query (Nv, D) -> (Nm, Nv, D)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.3):
        super().__init__()
        self.cross_attn = CrossAttention(embed_dim, num_heads)
        self.linear_proj = nn.Linear(embed_dim, embed_dim)
        self.layer_norm1 = nn.LayerNorm(embed_dim)
        self.layer_norm2 = nn.LayerNorm(embed_dim)
        self.layer_norm3 = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """X-Pool's start: identity projections, zero biases, unit layer norms."""
        for linear in (self.cross_attn.q_proj, self.cross_attn.k_proj, self.cross_attn.v_proj,
                       self.cross_attn.out_proj, self.linear_proj):
            nn.init.eye_(linear.weight)
            nn.init.zeros_(linear.bias)

    def prepare_queries(self, video_beat_pool: torch.Tensor) -> torch.Tensor:
        """(Nv, D) video beat pools -> (Nv, H, D/H) projected queries (once per video)."""
        return self.cross_attn.split_heads(self.cross_attn.q_proj(self.layer_norm1(video_beat_pool)))

    def prepare_keys(self, music_beat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Nm, S, D) encoded music beats -> keys, values (Nm, S, H, D/H) (once per music clip)."""
        normed = self.layer_norm1(music_beat)
        return (self.cross_attn.split_heads(self.cross_attn.k_proj(normed)),
                self.cross_attn.split_heads(self.cross_attn.v_proj(normed)))

    def pool(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Prepared queries (Nv, H, d), keys and values (Nm, S, H, d) -> pooled music beats (Nm, Nv, D)."""
        attended = self.layer_norm2(self.cross_attn.attend(queries, keys, values))
        return self.layer_norm3(attended + self.dropout(self.linear_proj(attended)))

    def forward(self, music_beat: torch.Tensor, video_beat_pool: torch.Tensor) -> torch.Tensor:
        """(Nm, S, D) encoded music beats, (Nv, D) video beat pools -> (Nm, Nv, D) (the golden
        `music_beats_pooled_test`): every pair at once; see `pool` for chunks."""
        return self.pool(self.prepare_queries(video_beat_pool), *self.prepare_keys(music_beat))
