"""Retrieval metrics (R@K, median and mean rank) with averaged ties.

Ranks follow the official QB-Norm / collaborative-experts ``t2v_metrics`` and ``v2t_metrics`` with
``break_ties="averaging"``: when the true item ties with other items, its 0-based rank is the mean of the
positions the tie group occupies, i.e. ``greater + (equal - 1) / 2`` where ``greater`` counts items scored
strictly higher and ``equal`` counts items scored exactly the same (the true item included). R@1 counts
rank == 0 (a true item tied for first place gets rank >= 0.5 and does not count), R@K for K > 1 counts
rank < K, MdR = median(rank) + 1, MnR = mean(rank) + 1.

The HBI code instead counts a tied query once per tied position, which inflates the number of queries;
the tests pin that difference down with the golden ``ties`` case.

Ranks are computed by counting (no sort): memory is bounded by processing ``chunk`` queries at a time.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from modules.engine.tables import markdown_table

ArrayLike = Union[np.ndarray, torch.Tensor]

RECALL_KS = (1, 5, 10, 50)
DEFAULT_CHUNK = 1024


def _as_tensor(sims: ArrayLike) -> torch.Tensor:
    """Return ``sims`` (num_texts, num_videos) as a CPU tensor in its own dtype.

    The dtype is kept on purpose: casting float64 scores down could create ties that are not there.
    """
    tensor = torch.as_tensor(sims).detach().cpu()
    if tensor.ndim != 2:
        raise ValueError(f"expected a 2-D similarity matrix (texts x videos), got shape {tuple(tensor.shape)}")
    if tensor.is_floating_point() and bool(torch.isnan(tensor).any()):
        raise ValueError("similarity matrix contains NaN; ranks are undefined")
    return tensor


def _ground_truth(num_texts: int, num_videos: int, queries_per_video: int,
                  text_to_video: Optional[Sequence[int]]) -> torch.Tensor:
    """Video index of every text, shape (num_texts,), int64.

    Explicit ``text_to_video`` wins; otherwise text i belongs to video i // queries_per_video.
    """
    if text_to_video is not None:
        mapping = torch.as_tensor(np.asarray(text_to_video), dtype=torch.int64).reshape(-1)
        if mapping.numel() != num_texts:
            raise ValueError(f"text_to_video has {mapping.numel()} entries, expected one per text ({num_texts})")
        if mapping.numel() and (int(mapping.min()) < 0 or int(mapping.max()) >= num_videos):
            raise ValueError(f"text_to_video must index videos in [0, {num_videos}), "
                             f"got values in [{int(mapping.min())}, {int(mapping.max())}]")
        return mapping
    if queries_per_video < 1 or num_texts != queries_per_video * num_videos:
        raise ValueError(f"{num_texts} texts do not split into {num_videos} videos x {queries_per_video} "
                         f"queries per video; pass text_to_video for an irregular layout")
    return torch.arange(num_texts) // queries_per_video


def _averaged_rank(scores: torch.Tensor, true_scores: torch.Tensor, dim: int) -> torch.Tensor:
    """Averaged 0-based rank of ``true_scores`` among ``scores`` along ``dim``, as float64.

    ``true_scores`` is broadcastable against ``scores`` (it keeps ``dim`` with size 1).
    """
    greater = (scores > true_scores).sum(dim, dtype=torch.int64)
    equal = (scores == true_scores).sum(dim, dtype=torch.int64)
    return greater.double() + (equal.double() - 1.0) / 2.0


def _text_ranks(sims: torch.Tensor, gt: torch.Tensor, chunk: int) -> torch.Tensor:
    """Rank of the true video for every text query, shape (num_texts,)."""
    ranks = []
    for start in range(0, sims.shape[0], chunk):  # chunks bound memory; each chunk is vectorised
        block = sims[start:start + chunk]
        rows = torch.arange(block.shape[0])
        true = block[rows, gt[start:start + chunk]].unsqueeze(1)
        ranks.append(_averaged_rank(block, true, dim=1))
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.float64)


def _caption_ranks(sims: torch.Tensor, gt: torch.Tensor, chunk: int) -> torch.Tensor:
    """Rank of every caption among all captions for its own video (video as query), shape (num_texts,)."""
    ranks = []
    for start in range(0, sims.shape[0], chunk):
        idx = torch.arange(start, min(start + chunk, sims.shape[0]))
        columns = sims.index_select(1, gt[idx])            # (num_texts, c): the column of each caption's video
        true = sims[idx, gt[idx]].unsqueeze(0)              # (1, c)
        ranks.append(_averaged_rank(columns, true, dim=0))
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.float64)


def ranks_to_metrics(ranks: ArrayLike) -> Dict[str, float]:
    """R1/R5/R10/R50 (percent), MdR and MnR from 0-based (possibly half-integer) ranks of shape (Q,)."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64).reshape(-1)
    if ranks.numel() == 0:
        raise ValueError("no queries to score")
    metrics = {"R1": 100.0 * float((ranks == 0).double().mean())}  # a tie for first place is not a hit
    for k in RECALL_KS[1:]:
        metrics[f"R{k}"] = 100.0 * float((ranks < k).double().mean())
    metrics["MdR"] = float(np.median(ranks.numpy())) + 1.0  # numpy's median averages the middle pair
    metrics["MnR"] = float(ranks.mean()) + 1.0
    return metrics


def retrieval_metrics(sims: ArrayLike, queries_per_video: int = 1,
                      text_to_video: Optional[Sequence[int]] = None,
                      chunk: int = DEFAULT_CHUNK) -> Dict[str, float]:
    """Text-to-video metrics of ``sims`` (num_texts, num_videos); rows are text queries.

    Text i belongs to video ``text_to_video[i]`` if given, else to ``i // queries_per_video``.
    Returns {"R1","R5","R10","R50" (percent), "MdR", "MnR"}.
    """
    tensor = _as_tensor(sims)
    gt = _ground_truth(tensor.shape[0], tensor.shape[1], queries_per_video, text_to_video)
    return ranks_to_metrics(_text_ranks(tensor, gt, chunk))


def v2t_metrics(sims: ArrayLike, queries_per_video: int = 1,
                text_to_video: Optional[Sequence[int]] = None,
                chunk: int = DEFAULT_CHUNK) -> Dict[str, float]:
    """Video-to-text metrics of ``sims`` (num_texts, num_videos); each column is a video query.

    A video's rank is the best (smallest) averaged rank among its own captions, as in the official code.
    Every video needs at least one caption. Returns the same keys as :func:`retrieval_metrics`.
    """
    tensor = _as_tensor(sims)
    num_videos = tensor.shape[1]
    gt = _ground_truth(tensor.shape[0], num_videos, queries_per_video, text_to_video)
    caption_ranks = _caption_ranks(tensor, gt, chunk)
    best = torch.full((num_videos,), math.inf, dtype=torch.float64)
    best = best.scatter_reduce(0, gt, caption_ranks, reduce="amin")
    if bool(torch.isinf(best).any()):
        missing = torch.nonzero(torch.isinf(best)).reshape(-1)[:5].tolist()
        raise ValueError(f"videos without any caption cannot be scored as queries (e.g. video indices {missing})")
    return ranks_to_metrics(best)


def geometric_mean(metrics: Dict[str, float]) -> float:
    """Geometric mean of R1, R5 and R10 of a metrics dict (0 when any of them is 0)."""
    values = [metrics["R1"], metrics["R5"], metrics["R10"]]
    if min(values) <= 0:
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


# --metric name -> metrics of a (texts, videos) matrix in that direction
DIRECTIONS = {"t2v": retrieval_metrics, "v2t": v2t_metrics}
RANKING_COLUMNS = ("R1", "R5", "R10", "R50", "MdR", "MnR")


def direction_metrics(sims: ArrayLike, metric: str, queries_per_video: int = 1,
                      text_to_video: Optional[Sequence[int]] = None) -> Dict[str, float]:
    """Metrics of (texts, videos) ``sims`` in direction ``metric`` with the geometric mean of R1/R5/R10 as ``GM``."""
    metrics = DIRECTIONS[metric](sims, queries_per_video=queries_per_video, text_to_video=text_to_video)
    metrics["GM"] = geometric_mean(metrics)
    return metrics


def ranking_table(rows: Dict[str, Dict[str, float]], columns: Sequence[str] = (*RANKING_COLUMNS, "GM")) -> str:
    """A Markdown table, one line per named metrics dict (e.g. "t2v", "after QB-Norm")."""
    return markdown_table(rows, columns)


def retrieval_table(metrics: Dict[str, float]) -> str:
    """Both directions of an evaluation's metrics (keys `t2v_R1`, `v2t_R1`, ...)."""
    rows = {d: {k: metrics[f"{d}_{k}"] for k in RANKING_COLUMNS} for d in DIRECTIONS}
    return ranking_table(rows, RANKING_COLUMNS)
