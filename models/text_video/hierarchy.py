"""Token merging of HBI's action and event levels: DPC-KNN clustering, score-weighted merging, cross-attention.

One `MergeStage` turns the N tokens of one caption or one video into ceil(N * ratio) merged tokens:
`TokenMerge` (the reference's CTM) refines the tokens, scores them, clusters them and averages each cluster with
the exp-score weights; `CrossAttentionBlock` (the reference's TCBlock) lets every merged token attend to the
refined tokens it came from. Everything here depends on one item only, so a batch gives the same numbers as
its items one by one (with `jitter=False`; the jitter is random).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.weights import CheckpointError

# The reference adds uniform noise of this size to the densities so that no two tokens tie.
_DENSITY_JITTER = 1e-6
# Added to every cluster's total weight before normalising, as the reference does.
_WEIGHT_EPS = 1e-6


class Refined(NamedTuple):
    """TokenMerge's outputs: `merged` (B, M, D) cluster averages; `tokens` (B, N, D) refined tokens;
    `scores` (B, N) token scores, -inf at padded tokens (the cross-attention adds them to its logits)."""

    merged: torch.Tensor
    tokens: torch.Tensor
    scores: torch.Tensor


def num_centres(num_tokens: int, ratio: float) -> int:
    """ceil(N * ratio), at least 1."""
    return max(math.ceil(num_tokens * ratio), 1)


@torch.no_grad()
def dpc_knn_assign(x: torch.Tensor, mask: torch.Tensor | None, centres: int, k: int,
                   jitter: bool = False) -> torch.Tensor:
    """DPC-KNN clustering of each item's tokens; (B, N, D), (B, N) or None -> (B, N) cluster index in [0, centres).

    Density: exp(-mean squared distance to the k nearest tokens). A token's "distance to a denser token" is the
    smallest distance to any denser token (the item's largest distance for the densest one). The `centres`
    tokens with the largest density x distance become centres, and every token joins its nearest centre.
    Padded tokens have zero density and score: they become centres only when fewer real tokens than centres
    score above zero (few real tokens, or duplicates, whose distance to a denser token is 0).
    """
    batch, n, dim = x.shape
    dist = torch.cdist(x, x) / math.sqrt(dim)
    if mask is not None:
        valid = mask > 0
        # Padded columns get a distance larger than any real one, so they are nobody's near neighbour. The reference
        # uses the largest distance of the whole batch; the item's own largest gives the same ranks and clusters,
        # and keeps items independent of their batch.
        far = dist.amax(dim=(1, 2), keepdim=True) + 1
        dist = torch.where(valid[:, None, :], dist, far)
    nearest = torch.topk(dist, k=min(k, n), dim=-1, largest=False).values
    density = (-(nearest ** 2).mean(dim=-1)).exp()
    if jitter:
        density = density + torch.rand(density.shape, device=x.device, dtype=density.dtype) * _DENSITY_JITTER
    if mask is not None:
        density = density * valid
    denser = density[:, None, :] > density[:, :, None]  # [b, i, j]: token j is denser than token i
    dist_max = dist.flatten(1).amax(dim=-1)[:, None, None]
    to_denser = torch.where(denser, dist, dist_max).amin(dim=-1)
    centre_index = torch.topk(to_denser * density, k=centres, dim=-1).indices  # (B, M)
    to_centres = dist.gather(1, centre_index[:, :, None].expand(batch, centres, n))  # (B, M, N)
    assign = to_centres.argmin(dim=1)
    # A centre always belongs to its own cluster, even when it is as close to an earlier centre.
    own = torch.arange(centres, device=x.device).expand(batch, centres)
    return assign.scatter(1, centre_index, own)


def merge_clusters(x: torch.Tensor, assign: torch.Tensor, weights: torch.Tensor, centres: int) -> torch.Tensor:
    """Weighted average of each cluster: (B, N, D), (B, N) index, (B, N) weights -> (B, M, D)."""
    members = F.one_hot(assign, centres).to(x.dtype).transpose(1, 2)  # (B, M, N)
    totals = members @ weights[..., None] + _WEIGHT_EPS  # (B, M, 1)
    norm = weights / totals.squeeze(-1).gather(1, assign)
    return members @ (x * norm[..., None])


class _ResidualTokenConv(nn.Module):
    """x + Conv1d over the token axis (kernel 3, zero padding, no bias); (B, N, D) -> (B, N, D)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x.transpose(1, 2)).transpose(1, 2)


class TokenMerge(nn.Module):
    """The reference's CTM: token conv with residual, layer norm, a score per token, DPC-KNN clustering into
    ceil(N * ratio) clusters and exp(score)-weighted merging. Reference parameter names: `conv.conv`, `norm`, `score`.

    `jitter` adds the reference's 1e-6 random noise to the densities in training (the reference also adds it
    in evaluation; here evaluation is deterministic).
    """

    def __init__(self, width: int, ratio: float, k: int = 3, jitter: bool = True):
        super().__init__()
        self.ratio = ratio
        self.k = k
        self.jitter = jitter
        self.conv = _ResidualTokenConv(width)
        self.norm = nn.LayerNorm(width)
        self.score = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> Refined:
        """(B, N, D) tokens, (B, N) mask or None (merged tokens carry none) -> Refined."""
        # The conv also reads padded tokens: they shape their real neighbours, as in the reference.
        tokens = self.norm(self.conv(x))
        scores = self.score(tokens).squeeze(-1).float()
        if mask is not None:
            scores = scores.masked_fill(mask == 0, float("-inf"))
        centres = num_centres(x.shape[1], self.ratio)
        # Clustering and merging in fp32 even under autocast: the weights are exp(score) with no max-subtraction
        # (the reference's, which the +1e-6 in each cluster total depends on), and would overflow in fp16.
        with torch.autocast(device_type=x.device.type, enabled=False):
            # Noise only in training: evaluation must not depend on the RNG or on how items are sharded.
            assign = dpc_knn_assign(tokens.float(), mask, centres, self.k, self.jitter and self.training)
            merged = merge_clusters(tokens.float(), assign, scores.exp(), centres)
        return Refined(merged.to(tokens.dtype), tokens, scores)


class _TokenAttention(nn.Module):
    """Multi-head attention of merged tokens (queries) over refined tokens (keys, values), each key's logits
    shifted by its token score. Reference parameter names: `q`, `kv`, `proj`."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise CheckpointError(f"HBI's merge blocks split the CLIP text width {width} into {heads} heads: "
                                  f"the width must be a multiple of {heads}")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_scores: torch.Tensor) -> torch.Tensor:
        """(B, M, D), (B, N, D), (B, N) -> (B, M, D)."""
        batch, m, width = queries.shape
        head_dim = width // self.heads
        q = self.q(queries).view(batch, m, self.heads, head_dim).transpose(1, 2)
        k, v = self.kv(keys).view(batch, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        # The additive bias is the key's score; padded keys carry -inf and drop out of the softmax.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_scores[:, None, None, :].to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(batch, m, width))


class CrossAttentionBlock(nn.Module):
    """The reference's TCBlock (without its MLP, which the reference leaves out): merged + attention(norm1(merged),
    norm1(refined), scores). One layer norm `norm1` serves queries and keys. Reference names: `norm1`, `attn.*`."""

    def __init__(self, width: int, heads: int = 8):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = _TokenAttention(width, heads)
        self.apply(_init_block)

    def forward(self, refined: Refined) -> torch.Tensor:
        """Refined -> (B, M, D) merged tokens after attention."""
        attended = self.attn(self.norm1(refined.merged), self.norm1(refined.tokens), refined.scores)
        return refined.merged + attended


def _init_block(module: nn.Module) -> None:
    """The reference's TCBlock initialisation: truncated N(0, 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


class MergeStage(nn.Module):
    """TokenMerge then CrossAttentionBlock: (B, N, D), (B, N) mask or None -> (B, ceil(N * ratio), D)."""

    def __init__(self, width: int, ratio: float, k: int = 3, heads: int = 8, jitter: bool = True):
        super().__init__()
        self.merge = TokenMerge(width, ratio, k, jitter)
        self.block = CrossAttentionBlock(width, heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.block(self.merge(x, mask))
