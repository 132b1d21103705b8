"""Average precision of one ranked list, in the three forms the HAP-VR reference uses, with ties made well defined.

A `Ranking` sorts scores once (high to low) and finds the groups of exactly tied scores; each AP form then takes a
relevance vector in the original order, so several relevance sets (FIVR's three tasks) share one sort.

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

    def __init__(self, scores: np.ndarray):
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if np.isnan(scores).any():
            raise ValueError("scores contain NaN; the ranking is undefined")
        self.order = np.argsort(-scores, kind="stable")
        ranked = scores[self.order]
        first = np.ones(ranked.size, dtype=bool)
        first[1:] = ranked[1:] != ranked[:-1]
        self.group_starts = np.flatnonzero(first)  # (G,) 0-based position of each group's first item
        self.group_sizes = np.diff(np.append(self.group_starts, ranked.size))  # (G,)
        self.group = np.cumsum(first) - 1  # (N,) group of each ranked position
        self.rank = np.arange(1, ranked.size + 1, dtype=np.float64)  # (N,) 1-based rank k

    def __len__(self) -> int:
        return self.order.size

    def _expected_hits(self, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per ranked position: P(relevant), E[relevant items before it | it is relevant], and hits per group."""
        rel = np.asarray(relevant, dtype=bool).reshape(-1)
        if rel.size != len(self):
            raise ValueError(f"relevance has {rel.size} entries, the ranking {len(self)}")
        hits = np.add.reduceat(rel[self.order].astype(np.int64), self.group_starts)  # (G,) t
        before = np.cumsum(hits) - hits  # (G,) T
        t, n = hits[self.group].astype(np.float64), self.group_sizes[self.group].astype(np.float64)
        p = self.rank - self.group_starts[self.group]  # 1-based position inside the group
        others = before[self.group] + (p - 1) * (t - 1) / np.maximum(n - 1, 1)
        return t / n, others, hits

    def average_precision(self, relevant: np.ndarray, num_relevant: int | None = None) -> float:
        """Sum of precision@k over relevant ranks / num_relevant (default: the relevant items in the list)."""
        prob, others, hits = self._expected_hits(relevant)
        total = int(hits.sum()) if num_relevant is None else num_relevant
        if total <= 0:
            raise ValueError("average precision with no relevant item is undefined")
        return float(np.sum(prob * (others + 1) / self.rank) / total)

    def trapezoid_ap(self, relevant: np.ndarray, num_relevant: int | None = None) -> float:
        """EVVE's trapezoidal AP (0.0 when num_relevant is 0 or nothing relevant is ranked)."""
        prob, others, hits = self._expected_hits(relevant)
        total = int(hits.sum()) if num_relevant is None else num_relevant
        if total <= 0:
            return 0.0
        after = (others + 1) / self.rank  # precision including the item
        before = np.where(self.rank == 1, 1.0, others / np.maximum(self.rank - 1, 1))  # precision just before it
        return float(np.sum(prob * (before + after) / 2) / total)

    def step_ap(self, relevant: np.ndarray) -> float:
        """scikit-learn's average_precision_score: tied scores as one block; 0.0 without relevant items."""
        _, _, hits = self._expected_hits(relevant)
        total = int(hits.sum())
        if total == 0:
            return 0.0
        ends = self.group_starts + self.group_sizes  # items ranked at or above each group's score
        return float(np.sum(hits / total * np.cumsum(hits) / ends))
