"""The HAP-VR similarity network (ViSiL architecture): region features of two videos -> one similarity.

Video x (T, R, D), R = 9 regions of D = 512. A video is indexed once (region attention); a pair is then scored as
region similarities (T1, R, T2, R) -> frame-to-frame top-k Chamfer (T1, T2) -> comparator CNN (T1/4, T2/4) ->
hardtanh -> video-to-video top-k Chamfer -> scalar. Module names give the reference's state-dict keys
(`attention.*`, `comparator_module.{conv1,conv2,conv3,fconv}.*`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.video_video.chamfer import masked_topk_chamfer, region_chamfer, topk_chamfer
from models.video_video.config import MIN_FRAMES, HapvrConfig, pooled_length, topk_count
from models.video_video.layers import RegionAttention, VideoComparator
from models.video_video.losses import similarity_regularization


# Region-similarity elements of one block of the training forward: 2^27 (512 MB in fp32) per block.
TRAINING_BLOCK_ELEMENTS = 1 << 27


class HapvrNetwork(nn.Module):
    """See the module docstring; `config` holds the architecture options (published ones by default)."""

    def __init__(self, config: Optional[HapvrConfig] = None):
        super().__init__()
        self.config = config or HapvrConfig()
        self.attention = RegionAttention(self.config.dims) if self.config.attention else None
        self.comparator_module = VideoComparator()

    def _check(self, name: str, x: torch.Tensor, ndim: int) -> None:
        if x.ndim != ndim or x.shape[-1] != self.config.dims:
            layout = "(N, T, R, D)" if ndim == 4 else "(T, R, D)"
            raise ValueError(f"{name}: expected region features {layout} with D = {self.config.dims}, "
                             f"got shape {tuple(x.shape)}")
        if x.shape[-3] < MIN_FRAMES:
            raise ValueError(f"{name}: {x.shape[-3]} frames, the comparator needs at least {MIN_FRAMES} "
                             "(repeat short videos first: repeat_short_video)")

    def index_video(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-video work, done once: (..., T, R, D) -> the same shape, attention-weighted. With `lengths` (N,)
        for a padded batch (N, T, R, D), frames past each length are zeroed."""
        if x.ndim < 3 or x.shape[-1] != self.config.dims:
            raise ValueError(f"expected region features (..., T, R, D) with D = {self.config.dims}, "
                             f"got shape {tuple(x.shape)}")
        if self.attention is not None:
            x = self.attention(x)
        if lengths is not None:
            valid = torch.arange(x.shape[-3], device=x.device) < lengths.to(x.device)[:, None]
            x = torch.where(valid[:, :, None, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        return x

    def frame_similarity(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Frame-to-frame similarity of every query with every target, both indexed:
        (Q, T1, R, D), (N, T2, R, D) -> (Q, N, T1, T2)."""
        queries, frames1, regions, dims = query.shape
        videos, frames2, target_regions, _ = target.shape
        # One matmul for all pairs: rows are (query, frame, region), columns (target, frame, region).
        sim = (query.reshape(-1, dims) @ target.reshape(-1, dims).T)
        sim = sim.view(queries, frames1, regions, videos, frames2, target_regions)
        sim = region_chamfer(sim, topk_count(target_regions, self.config.f_topk_rate))
        return sim.permute(0, 2, 1, 3)

    def training_forward(self, x: torch.Tensor, max_elements: int = TRAINING_BLOCK_ELEMENTS
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All N x N pairs of a training batch (N, T, R, D) -> (frame_sim (N, N, T, T), video_sim (N, N) in [0, 1],
        the regulariser on comparator outputs outside [-1, 1] (scalar, fp32)).

        With gradients, query rows go in blocks whose region similarities (rows x T x R x N x T x R) stay near
        `max_elements`, each under activation checkpointing: backward recomputes a block instead of keeping the
        (N T R)^2 region similarities and the comparator's activations of every pair (tens of GB at the published
        batch), so memory grows with N^2 T^2 (the frame maps), not with N^2 T^2 R^2."""
        self._check("training batch", x, 4)
        num, frames, regions = x.shape[:3]
        x = self.index_video(x)
        rows = max(1, max_elements // (frames * regions) ** 2 // num)
        if not torch.is_grad_enabled() or rows >= num:
            frame_sim, video_sim, reg = self._pair_rows(x, x)
        else:
            parts = [checkpoint(self._pair_rows, x[start:start + rows], x, use_reentrant=False)
                     for start in range(0, num, rows)]
            frame_sim, video_sim = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            reg = torch.stack([p[2] for p in parts]).sum()
        return frame_sim, video_sim, reg

    def _pair_rows(self, rows: torch.Tensor, videos: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Indexed query rows (r, T, R, D) against indexed videos (N, T, R, D): (r, N, T, T), (r, N), reg."""
        frame_sim = self.frame_similarity(rows, videos)
        out = self.comparator_module(frame_sim.flatten(0, 1).unsqueeze(1)).squeeze(1)
        reg = similarity_regularization(out)
        sim = F.hardtanh(out) / 2.0 + 0.5
        video_sim = topk_chamfer(sim, topk_count(sim.shape[-1], self.config.v_topk_rate))
        return frame_sim, video_sim.view(rows.shape[0], videos.shape[0]), reg

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.training_forward(x)

    def indexed_similarity(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The evaluation score of one pair of indexed videos (T1, R, D), (T2, R, D) -> scalar in [-1, 1]."""
        self._check("query", query, 3)
        self._check("target", target, 3)
        frame_sim = self.frame_similarity(query[None], target[None])
        out = F.hardtanh(self.comparator_module(frame_sim).squeeze(1))
        return topk_chamfer(out, topk_count(out.shape[-1], self.config.v_topk_rate))[0]

    def video_similarity(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The evaluation score of one pair of raw region features (T1, R, D), (T2, R, D) -> scalar in [-1, 1]."""
        self._check("query", query, 3)
        self._check("target", target, 3)
        return self.indexed_similarity(self.index_video(query), self.index_video(target))

    def score_grid(self, query: torch.Tensor, query_lengths: torch.Tensor, target: torch.Tensor,
                   target_lengths: torch.Tensor) -> torch.Tensor:
        """Evaluation scores of every query with every target, both indexed and padded by length:
        (Q, T1, R, D), (Q,), (N, T2, R, D), (N,) -> (Q, N). Padding cannot change a score: each pair equals
        `indexed_similarity` of its unpadded videos."""
        self._check("queries", query, 4)
        self._check("targets", target, 4)
        query_lengths = query_lengths.to(query.device)
        target_lengths = target_lengths.to(query.device)
        shortest = min(int(query_lengths.min()), int(target_lengths.min()))
        if shortest < MIN_FRAMES:
            raise ValueError(f"a video has {shortest} frames, the comparator needs at least {MIN_FRAMES} "
                             "(repeat short videos first: repeat_short_video)")
        queries, videos = query.shape[0], target.shape[0]
        rows = query_lengths.repeat_interleave(videos)
        cols = target_lengths.repeat(queries)
        frame_sim = self.frame_similarity(query, target).flatten(0, 1).unsqueeze(1)
        out = F.hardtanh(self.comparator_module(frame_sim, rows, cols).squeeze(1))
        scores = masked_topk_chamfer(out, pooled_length(rows), pooled_length(cols), self.config.v_topk_rate)
        return scores.view(queries, videos)
