"""Average precision of one ranked list, in the three forms the HAP-VR reference uses, with ties made well defined.

A `Ranking` sorts scores once (high to low) and finds the groups of exactly tied scores; each AP form then takes a
relevance vector in the original order, so several relevance sets (FIVR's three tasks) share one sort, and
`subset` ranks part of the list (FIVR's hard database) without sorting again. Only the tie groups holding a
relevant item are visited, so pooling millions of (query, video) pairs stays cheap.

- `average_precision`: sum over ranks k of precision@k * rel_k / num_relevant (the reference's `calculate_metric`,
  behind FIVR mAP / uAP, EVVE uAP and SVD uAP). `num_relevant` may exceed the relevant items in the list.
- `trapezoid_ap`: EVVE's `score_ap_from_ranks_1`, the area under the precision-recall steps by trapezoids, where
  precision before the first item is 1; 0 when nothing is relevant.
- `step_ap`: scikit-learn's `average_precision_score` (SVD mAP): precision at each distinct score times the recall
  it adds, so a tied group enters as one block; 0 when nothing is relevant.

Ties. The reference orders tied scores by `np.argsort` (an unstable sort whose order varies with the numpy version
and CPU) or by the insertion order of the similarity dict, so its AP under ties is not a property of the scores.
`average_precision` and `trapezoid_ap` return instead the exact expectation over a uniformly random order within
each tie group: for a group of n items with t relevant, after N items with T relevant, the item at position p of
the group (rank k = N + p) is relevant with probability t/n and then has (p-1)(t-1)/(n-1) other relevant items
before it in the group on average, so E[precision@k * rel_k] = t/n * (T + 1 + (p-1)(t-1)/(n-1)) / k (linear in the
count, so the expectation is exact). Without ties every form equals the reference to rounding.
"""
from __future__ import annotations

import numpy as np


class Ranking:
    """`scores` (N,) sorted high to low once; tie groups of exactly equal scores."""

    def __init__(self, scores: np.ndarray, order: np.ndarray | None = None):
        self.scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if np.isnan(self.scores).any():
            raise ValueError("scores contain NaN; the ranking is undefined")
        # the order inside a tie group never matters below, so the sort need not be stable
        self.order = np.argsort(-self.scores) if order is None else order
        ranked = self.scores[self.order]
        first = np.ones(ranked.size, dtype=bool)
        first[1:] = ranked[1:] != ranked[:-1]
        self.group_starts = np.flatnonzero(first)  # (G,) 0-based position of each group's first item
        self.group_sizes = np.diff(np.append(self.group_starts, ranked.size))  # (G,)

    def __len__(self) -> int:
        return self.order.size

    def subset(self, keep: np.ndarray) -> "Ranking":
        """The ranking of `scores[keep]`, without sorting again (a sorted order restricted to a subset stays sorted)."""
        keep = np.asarray(keep, dtype=bool)
        position = np.cumsum(keep) - 1  # index of each kept item among the kept ones
        return Ranking(self.scores[keep], order=position[self.order[keep[self.order]]])

    def _group_hits(self, relevant: np.ndarray) -> np.ndarray:
        """(G,) int64: relevant items per tie group."""
        rel = np.asarray(relevant, dtype=bool).reshape(-1)
        if rel.size != len(self):
            raise ValueError(f"relevance has {rel.size} entries, the ranking {len(self)}")
        ranked = rel[self.order]
        if self.group_starts.size == ranked.size:  # no ties: every group is one item
            return ranked.astype(np.int64)
        return np.add.reduceat(ranked, self.group_starts, dtype=np.int64) if ranked.size else np.zeros(0, np.int64)

    def _expected_hits(self, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over the items of the groups holding a relevant item (the others add nothing): P(relevant),
        E[relevant items ranked before it | it is relevant], and its 1-based rank k."""
        groups = np.flatnonzero(hits)
        sizes = self.group_sizes[groups]
        item_group = np.repeat(groups, sizes)
        p = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1  # 1-based place in its group
        t, n = hits[item_group].astype(np.float64), self.group_sizes[item_group].astype(np.float64)
        before = (np.cumsum(hits) - hits)[item_group]
        others = before + (p - 1) * (t - 1) / np.maximum(n - 1, 1)
        return t / n, others, (self.group_starts[item_group] + p).astype(np.float64)

    def average_precision(self, relevant: np.ndarray, num_relevant: int | None = None) -> float:
        """Sum of precision@k over relevant ranks / num_relevant (default: the relevant items in the list)."""
        hits = self._group_hits(relevant)
        total = int(hits.sum()) if num_relevant is None else num_relevant
        if total <= 0:
            raise ValueError("average precision with no relevant item is undefined")
        prob, others, rank = self._expected_hits(hits)
        return float(np.sum(prob * (others + 1) / rank) / total)

    def trapezoid_ap(self, relevant: np.ndarray, num_relevant: int | None = None) -> float:
        """EVVE's trapezoidal AP (0.0 when num_relevant is 0 or nothing relevant is ranked)."""
        hits = self._group_hits(relevant)
        total = int(hits.sum()) if num_relevant is None else num_relevant
        if total <= 0:
            return 0.0
        prob, others, rank = self._expected_hits(hits)
        after = (others + 1) / rank  # precision including the item
        before = np.where(rank == 1, 1.0, others / np.maximum(rank - 1, 1))  # precision just before it
        return float(np.sum(prob * (before + after) / 2) / total)

    def step_ap(self, relevant: np.ndarray) -> float:
        """scikit-learn's average_precision_score: tied scores as one block; 0.0 without relevant items."""
        hits = self._group_hits(relevant)
        total = int(hits.sum())
        if total == 0:
            return 0.0
        ends = self.group_starts + self.group_sizes  # items ranked at or above each group's score
        return float(np.sum(hits / total * np.cumsum(hits) / ends))
