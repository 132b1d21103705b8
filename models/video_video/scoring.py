"""Evaluation scoring of many videos: each indexed once, then all query-target pairs scored in bounded chunks.

The reference scores one query against one target at a time. Here the indexed videos are concatenated
(`PackedVideos`), sorted by length, and scored block by block (a few queries x many targets, padded to the longest
of the block), with `HapvrNetwork.score_grid` masking the padding so every score equals the pair scored alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from models.video_video.config import MIN_FRAMES
from models.video_video.network import HapvrNetwork

# Elements of the largest per-block intermediates: region similarities (R^2 per frame pair) plus the comparator's
# first activations (32 channels). 2^24 fp32 elements is 64 MiB: on a 2-core CPU, 10 x 200 pairs of 30 frames ran at
# 670, 1270, 1420 and 860 pairs/s with 2^18, 2^22, 2^24 and 2^26 (the comparator's maps fall out of cache).
DEFAULT_MAX_ELEMENTS = 1 << 24
COMPARATOR_WIDTH = 32


def repeat_short_video(features: torch.Tensor, min_frames: int = MIN_FRAMES) -> torch.Tensor:
    """Doubles a video (T, ...) along time until it has at least `min_frames` frames, as the reference's evaluation
    does (its HDF5 reader uses min_frames=8, its frame extractor 4); longer videos are returned as they are."""
    if features.shape[0] == 0:
        raise ValueError("a video with no frames cannot be scored")
    while features.shape[0] < min_frames:
        features = torch.cat([features, features], 0)
    return features


@dataclass
class PackedVideos:
    """Indexed videos concatenated along time: `frames` (sum T, R, D), per-video `offsets` and `lengths` (N,)."""

    frames: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def from_videos(cls, videos: Sequence[torch.Tensor]) -> "PackedVideos":
        return cls.packed(torch.cat(list(videos), 0), [v.shape[0] for v in videos])

    @classmethod
    def packed(cls, frames: torch.Tensor, lengths: Sequence[int]) -> "PackedVideos":
        """Videos already concatenated along time (sum T, R, D), with their lengths."""
        lengths_t = torch.tensor(list(lengths), dtype=torch.long)
        offsets = torch.cumsum(lengths_t, 0) - lengths_t
        return cls(frames, offsets.to(frames.device), lengths_t.to(frames.device))

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Videos `ids` (B,) -> (zero-padded (B, T_max, R, D), lengths (B,))."""
        lengths = self.lengths[ids]
        steps = torch.arange(int(lengths.max()), device=lengths.device)
        valid = steps < lengths[:, None]
        index = torch.where(valid, self.offsets[ids, None] + steps, torch.zeros_like(steps))
        padded = self.frames[index]
        return torch.where(valid[:, :, None, None], padded, torch.zeros_like(padded)), lengths


@torch.no_grad()
def index_videos(network: HapvrNetwork, videos: Sequence[torch.Tensor],
                 min_frames: int = MIN_FRAMES) -> PackedVideos:
    """Raw region features (T_i, R, D) -> packed indexed videos; short videos are repeated first."""
    device = next(network.parameters()).device
    return PackedVideos.from_videos([network.index_video(repeat_short_video(v.to(device).float(), min_frames))
                                     for v in videos])


def _blocks(lengths: list[int], budget: float) -> list[tuple[int, int]]:
    """Consecutive [start, end) blocks of ascending `lengths` with (end - start) * lengths[end - 1] <= budget
    (at least one item each)."""
    blocks, start = [], 0
    while start < len(lengths):
        end = start + 1
        while end < len(lengths) and (end + 1 - start) * lengths[end] <= budget:
            end += 1
        blocks.append((start, end))
        start = end
    return blocks


@torch.no_grad()
def similarity_matrix(network: HapvrNetwork, queries: PackedVideos, targets: PackedVideos,
                      max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """Evaluation scores of every query with every target (Q, N), on the network's device, in blocks whose
    intermediates stay near `max_elements` (a single pair of very long videos may exceed it)."""
    device = next(network.parameters()).device
    regions = queries.frames.shape[1]
    per_cell = regions * targets.frames.shape[1] + COMPARATOR_WIDTH
    q_order = torch.argsort(queries.lengths)
    t_order = torch.argsort(targets.lengths)
    q_lengths, t_lengths = queries.lengths[q_order].tolist(), targets.lengths[t_order].tolist()
    out = torch.empty(len(queries), len(targets), device=device)
    # Query blocks may take a share of the budget as if paired with the longest target; target blocks fill the rest.
    for q_start, q_end in _blocks(q_lengths, max_elements / (per_cell * t_lengths[-1])):
        q_ids = q_order[q_start:q_end]
        query, query_lengths = (t.to(device) for t in queries.padded(q_ids))
        cost = per_cell * (q_end - q_start) * q_lengths[q_end - 1]
        for t_start, t_end in _blocks(t_lengths, max_elements / cost):
            t_ids = t_order[t_start:t_end]
            target, target_lengths = (t.to(device) for t in targets.padded(t_ids))
            scores = network.score_grid(query, query_lengths, target, target_lengths)
            out[q_ids.to(device)[:, None], t_ids.to(device)[None, :]] = scores.float()
    return out
