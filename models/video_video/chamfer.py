"""Top-k Chamfer similarity: for every query element, the mean of its k best matches; then the mean over queries."""
from __future__ import annotations

import torch

from models.video_video.config import topk_counts


def top_mean(sim: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Mean of the k largest values along `dim` (dropped); k == 1 is the plain maximum."""
    if k == 1:
        return sim.amax(dim)
    return sim.topk(k, dim=dim).values.mean(dim)


def region_chamfer(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Frame-to-frame similarity from region similarities (Q, T1, R, N, T2, R) -> (Q, T1, N, T2): top-k over the
    target regions, mean over the query regions."""
    return top_mean(sim, k, dim=-1).mean(2)


def topk_chamfer(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Video-to-video similarity of whole maps (P, H, W) -> (P,): top-k over target cells, mean over query rows."""
    return top_mean(sim, k, dim=-1).mean(-1)


def masked_topk_chamfer(sim: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, rate: float) -> torch.Tensor:
    """`topk_chamfer` of padded maps (P, H, W) -> (P,), pair p using only its top-left rows[p] x cols[p] block
    and its own k = topk_count(cols[p], rate), so it equals the score of the unpadded map. Every pair needs at
    least one row and column."""
    height, width = sim.shape[-2:]
    valid_cols = torch.arange(width, device=sim.device) < cols[:, None]
    sim = sim.masked_fill(~valid_cols[:, None, :], float("-inf"))
    k = topk_counts(cols, rate)
    k_max = int(k.max())
    top = sim.topk(k_max, dim=-1).values if k_max > 1 else sim.amax(-1, keepdim=True)
    # where, not a product: entries past a short pair's k can be -inf.
    in_k = torch.arange(k_max, device=sim.device) < k[:, None]
    per_row = torch.where(in_k[:, None, :], top, torch.zeros((), dtype=top.dtype, device=top.device)).sum(-1)
    per_row = per_row / k[:, None].to(per_row.dtype)
    valid_rows = torch.arange(height, device=sim.device) < rows[:, None]
    per_row = torch.where(valid_rows, per_row, torch.zeros((), dtype=per_row.dtype, device=per_row.device))
    return per_row.sum(-1) / rows.to(per_row.dtype)
