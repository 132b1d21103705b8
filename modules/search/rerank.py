"""Second stage: the candidates of a query re-scored with the model's own similarity, as test.py scores pairs.

Text queries: `model.similarity` on the stored per-frame features (WTI / mean-max / meanP; HBI with the level
weights `rate`, its merged levels computed here for the candidates only). Video queries: the entity head's own
token-wise score with the video side's preparation on both sides (`video_scores`). The best-matching frame is the
real frame whose feature has the highest cosine with any real query token's, reported as its time in the video.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from models.text_video.interaction import TokenInteraction
from modules.engine.precision import autocast_context


@dataclass
class Hit:
    """One result: row into the gallery, the model's score, and the time (s) of its best frame (None if unknown)."""
    row: int
    score: float
    time: float | None


@dataclass
class Candidates:
    """What the first stage nominated for one query: gallery rows (n,) and their stored feats (n, F, D), mask
    (n, F), frame times (n, F) and entity-head frame weights (n, F)."""
    rows: np.ndarray
    feats: torch.Tensor
    mask: torch.Tensor
    times: np.ndarray
    weights: torch.Tensor


# (query (1, L, D), query mask (1, L), feats (n, F, D), mask (n, F), stored weights (n, F)) -> (n,) scores
Score = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def text_scores(model: nn.Module, rate: tuple[float, float, float] | None) -> Score:
    """A caption's scores: `model.similarity`; for a single token-wise head (WTI, mean-max) its own score with the
    stored frame weights, which saves the weight MLP on every candidate frame (the same numbers)."""
    head = model.interaction
    if rate is None and isinstance(head, TokenInteraction):
        return lambda q, qm, v, vm, w: head.score(head.prepare_text(q, qm), head.prepare_video(v, vm, w))[0]
    options = {} if rate is None else {"rate": rate}
    return lambda q, qm, v, vm, w: model.similarity(q, qm, v, vm, **options)[0]


def video_scores(model: nn.Module) -> Score:
    """A query video's scores: the entity head's, the query prepared as a video (WTI, mean-max or meanP)."""
    head = model.interaction
    return lambda q, qm, v, vm, w: head.score(head.prepare_video(q, qm), head.prepare_video(v, vm))[0]


@torch.no_grad()
def rerank(score: Score, query: torch.Tensor, query_mask: torch.Tensor, found: Candidates, top_k: int,
           precision: str) -> list[Hit]:
    """One query, (1, L, D) with mask (1, L): the `top_k` best candidates by `score`, best first (ties: lower row)."""
    device = query.device
    video, video_mask = found.feats.to(device), found.mask.to(device)
    with autocast_context(device, precision):
        scores = score(query, query_mask, video, video_mask, found.weights.to(device)).float().cpu()
    order = np.lexsort((np.asarray(found.rows), -scores.numpy().astype(np.float64)))[:top_k]
    words = _unit(query[0][query_mask[0] != 0])
    hits = []
    for i in order:
        cos = (_unit(video[i]) @ words.T).amax(1)  # (F,) best query token per frame
        frame = int(cos.masked_fill(video_mask[i] == 0, -np.inf).cpu().argmax())
        time = float(found.times[i, frame])
        hits.append(Hit(int(found.rows[i]), float(scores[i]), time if time >= 0 else None))
    return hits


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
