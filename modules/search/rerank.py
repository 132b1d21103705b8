"""Second stage: the candidates of a query re-scored with the model's own similarity, as test.py scores pairs.

WTI / mean-max / meanP: `model.similarity` on the stored per-frame features; HBI: the same with the level weights
`rate` (the merged levels are computed here, per query, for its candidates only). The best-matching frame is the
real frame whose feature has the highest cosine with any real word's, reported as its time in the video.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from modules.engine.precision import autocast_context


@dataclass
class Hit:
    """One result: row into the gallery, the model's score, and the time (s) of its best frame (None if unknown)."""
    row: int
    score: float
    time: float | None


@torch.no_grad()
def rerank(model: nn.Module, text: torch.Tensor, text_mask: torch.Tensor, feats: torch.Tensor,
           mask: torch.Tensor, times: np.ndarray, rows: np.ndarray, top_k: int, precision: str,
           rate: tuple[float, float, float] | None = None) -> list[Hit]:
    """One query: text (1, Lw, D), text_mask (1, Lw); gallery feats (N, F, D), mask (N, F), times (N, F); `rows`
    the candidate videos. Returns the `top_k` best candidates by the model's score, best first (ties: lower row)."""
    rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    device = text.device
    video, video_mask = feats[rows].to(device), mask[rows].to(device)
    options = {} if rate is None else {"rate": rate}
    with autocast_context(device, precision):
        scores = model.similarity(text, text_mask, video, video_mask, **options)[0].float().cpu()
    order = sorted(range(len(rows)), key=lambda i: (-float(scores[i]), int(rows[i])))[:top_k]
    words = _unit(text[0][text_mask[0] != 0])
    hits = []
    for i in order:
        cos = (_unit(video[i]) @ words.T).amax(1)  # (F,) best word per frame
        cos = cos.masked_fill(video_mask[i] == 0, -np.inf).cpu()
        frame = int(cos.argmax())
        time = float(times[int(rows[i]), frame])
        hits.append(Hit(int(rows[i]), float(scores[i]), time if time >= 0 else None))
    return hits


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
