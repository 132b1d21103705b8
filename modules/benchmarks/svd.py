"""SVD: short-video near-duplicate retrieval; mAP and uAP over each query's labelled candidates.

Reference semantics (HAP-VR `datasets/svd.py`), reproduced:
- a query is ranked against its own labelled candidates of `test_groundtruth` (label 1 relevant, 0 not) and, with
  `unlabeled=True` (the reference's default, `SVD()` = version 'unlabeled'), every id of `unlabeled-data-id` as an
  irrelevant distractor; other queries' candidates are not in its list;
- `mAP`: per query scikit-learn's `average_precision_score` (tied scores as one block), mean over the queries;
- `uAP`: one AP over the pooled (query, candidate) pairs, the reference's `calculate_metric` (ties averaged,
  see `ranking`);
- `database` (the ids to extract features for): every labelled candidate, plus the distractors when unlabeled.
Two cases the published files never hit: the query itself, were it among its candidates, is left out (FIVR's rule;
the reference would rank it), and a query without a relevant scored candidate is left out of mAP (as FIVR does; the
reference's result there depends on the scikit-learn version).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dataloaders.video_video.annotations import DEFAULT_DIR, load_svd_ground_truth, load_svd_unlabeled
from modules.benchmarks.base import Benchmark, BenchmarkResult, Similarities, mean, read_rows
from modules.benchmarks.ranking import Ranking


class SvdBenchmark(Benchmark):
    """SVD from its ground truth {query: {candidate: 0/1}} and, if given, the unlabelled distractor ids."""

    name = "SVD"

    def __init__(self, ground_truth: dict[str, dict[str, int]], unlabeled: list[str] | tuple[str, ...] = ()):
        self.queries = tuple(sorted(ground_truth))
        self.unlabeled = tuple(unlabeled)
        distractors = set(self.unlabeled)
        self._labelled = {}  # query -> (labelled candidate ids, (L,) bool relevant)
        self._distractors = {}  # query -> its distractors, where some must be left out of the shared list
        for query in self.queries:
            ids = [c for c in ground_truth[query] if c != query]
            self._labelled[query] = (ids, np.array([ground_truth[query][c] == 1 for c in ids], dtype=bool))
            clash = (set(ids) | {query}) & distractors  # a labelled id keeps its label, not a second 0
            if clash:
                self._distractors[query] = tuple(c for c in self.unlabeled if c not in clash)
        labelled_ids = {c for truth in ground_truth.values() for c in truth}
        self.database = tuple(sorted(labelled_ids | distractors))

    @classmethod
    def from_dir(cls, annotations_dir: str | Path = DEFAULT_DIR, unlabeled: bool = True) -> "SvdBenchmark":
        """`unlabeled=True` (the reference's default) scores against the distractors too (`unlabeled-data-id`)."""
        distractors = load_svd_unlabeled(annotations_dir) if unlabeled else ()
        return cls(load_svd_ground_truth(annotations_dir), distractors)

    def candidates(self, query: str) -> list[str]:
        """The ids `query` is ranked against: its labelled candidates, then the distractors."""
        return self._labelled[query][0] + list(self._distractors.get(query, self.unlabeled))

    def relevant(self, query: str) -> np.ndarray:
        """(C,) bool over `candidates(query)`: label 1."""
        labels = self._labelled[query][1]
        return np.concatenate([labels, np.zeros(len(self._distractors.get(query, self.unlabeled)), dtype=bool)])

    def score(self, similarities: Similarities, allow_missing: bool = False) -> BenchmarkResult:
        """mAP and uAP (module docstring); per-query APs under "mAP"."""
        rows, missing_queries, missing_videos = read_rows(self.name, similarities, self.queries, self.candidates,
                                                          allow_missing)
        aps, pooled_scores, pooled_relevant = {}, [np.zeros(0)], [np.zeros(0, dtype=bool)]
        for query, row in rows.items():
            scores, relevant = row.scores[row.present], self.relevant(query)[row.present]
            if relevant.any():
                aps[query] = Ranking(scores).step_ap(relevant)
            pooled_scores.append(scores)
            pooled_relevant.append(relevant)
        pooled = np.concatenate(pooled_relevant)
        metrics = {"mAP": mean(aps),
                   "uAP": Ranking(np.concatenate(pooled_scores)).average_precision(pooled) if pooled.any()
                   else float("nan")}
        return self._with_missing(BenchmarkResult(metrics, {"mAP": aps}, missing_queries, missing_videos),
                                  allow_missing)
