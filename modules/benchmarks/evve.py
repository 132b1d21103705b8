"""EVVE: event retrieval, 13 events; mAP (trapezoidal AP per query), uAP, and the mAP of every event.

Reference semantics (HAP-VR / ViSiL `datasets/evve.py`), reproduced:
- a query is ranked against the database (the queries are not in it); its relevant videos are its event's
  positives in the database; "null" videos of the event count as irrelevant, like every other database video;
- AP per query is `score_ap_from_ranks_1` (trapezoids; 0 when nothing relevant, and such a query still counts);
- `EVVE_mAP` is the mean over all scored queries (not over events); `EVVE_mAP/<event>` the mean over the event's
  scored queries (the reference prints these); `EVVE_uAP` one AP over the pooled (query, video) pairs, relevant
  count the sum of every query's positives;
- tied scores averaged (see `ranking`).
The reference's `all_db` also admits query-to-query scores if a similarity dict holds them; its own evaluation
scores queries against the database only, and so does this one (other ids in a row are ignored).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dataloaders.video_video.annotations import DEFAULT_DIR, EvveAnnotations, load_evve
from modules.benchmarks.base import Benchmark, BenchmarkResult, Similarities, mean, read_rows
from modules.benchmarks.ranking import Ranking


class EvveBenchmark(Benchmark):
    name = "EVVE"

    def __init__(self, annotations: EvveAnnotations):
        self.queries, self.database = annotations.queries, annotations.database
        self.events = annotations.events
        self.event_of = annotations.event_of()
        index = {video: i for i, video in enumerate(self.database)}
        self._positives = {}  # event -> (D,) bool
        for name, event in self.events.items():
            mask = np.zeros(len(self.database), dtype=bool)
            mask[[index[v] for v in event.positives if v in index]] = True
            self._positives[name] = mask

    @classmethod
    def from_dir(cls, annotations_dir: str | Path = DEFAULT_DIR) -> "EvveBenchmark":
        return cls(load_evve(annotations_dir))

    def score(self, similarities: Similarities, allow_missing: bool = False) -> BenchmarkResult:
        """EVVE_mAP, EVVE_uAP and EVVE_mAP/<event> (module docstring); per-query APs under "EVVE_mAP"."""
        rows, missing_queries, missing_videos = read_rows(self.name, similarities, self.queries,
                                                          lambda q: self.database, allow_missing)
        aps, pooled_scores, pooled_relevant, num_relevant = {}, [np.zeros(0)], [np.zeros(0, dtype=bool)], 0
        for query, row in rows.items():
            keep = row.present
            relevant = self._positives[self.event_of[query]][keep]
            aps[query] = Ranking(row.scores[keep]).trapezoid_ap(relevant)
            pooled_scores.append(row.scores[keep])
            pooled_relevant.append(relevant)
            num_relevant += int(relevant.sum())
        pooled = np.concatenate(pooled_relevant)
        metrics = {"EVVE_mAP": mean(aps),
                   "EVVE_uAP": (Ranking(np.concatenate(pooled_scores)).average_precision(pooled, num_relevant)
                                if num_relevant else float("nan"))}
        for name in sorted(self.events):
            scored = {q: ap for q, ap in aps.items() if self.event_of[q] == name}
            if scored:  # an event none of whose queries was scored has no mAP (reported as missing queries)
                metrics[f"EVVE_mAP/{name}"] = mean(scored)
        result = BenchmarkResult(metrics, {"EVVE_mAP": aps}, missing_queries, missing_videos)
        return self._with_missing(result, allow_missing)
