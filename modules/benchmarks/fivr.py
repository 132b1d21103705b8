"""FIVR-5K and FIVR-200K: duplicate / complementary / incident scene video retrieval (mAP) and detection (uAP).

Reference semantics (HAP-VR / S2VS `datasets/fivr.py`), reproduced:
- the relevant videos of a task are the union of its labels: DSV = ND + DS, CSV = ND + DS + CS,
  ISV = ND + DS + CS + IS, intersected with the database, less the query itself;
- a query is ranked against the database less itself (FIVR-5K holds one query in its database, FIVR-200K all);
- retrieval (`DSVR`, `CSVR`, `ISVR`): AP per query, averaged over the queries that have a relevant video
  (a query with none is left out, not counted as 0);
- detection (`DSVD`, `CSVD`, `ISVD`): one AP over the pooled (query, video) pairs of all queries (uAP),
  every scored query included;
- `_h` variants: the same on the "hard" database, the easy duplicates (`fivr_easy_duplicates.txt`) removed;
- AP is the reference's sum of precision@k over relevant ranks / number relevant; tied scores averaged
  (see `ranking`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dataloaders.errors import DataError
from dataloaders.video_video.annotations import (DEFAULT_DIR, FivrAnnotations, load_easy_duplicates,
                                                 load_fivr)
from modules.benchmarks.base import Benchmark, BenchmarkResult, Row, Similarities, mean, read_rows
from modules.benchmarks.ranking import Ranking

TASKS = {"DSV": ("ND", "DS"), "CSV": ("ND", "DS", "CS"), "ISV": ("ND", "DS", "CS", "IS")}
VARIANTS = ("", "_h")  # the full database, the hard one


class FivrBenchmark(Benchmark):
    """FIVR `version` ('5k' or '200k') from its annotations and the easy-duplicates list."""

    def __init__(self, annotations: FivrAnnotations, easy_duplicates: frozenset[str], version: str):
        if version not in annotations.splits:
            raise DataError(f"{annotations.path}: no FIVR version {version!r} (it has {sorted(annotations.splits)})")
        split = annotations.splits[version]
        self.name = f"FIVR-{version.upper()}"
        self.queries, self.database = split.queries, split.database
        self.annotation = {q: annotations.annotation[q] for q in self.queries}
        self.easy_duplicates = easy_duplicates
        self._index = {video: i for i, video in enumerate(self.database)}
        self._hard = np.fromiter((v not in easy_duplicates for v in self.database), bool, len(self.database))

    @classmethod
    def from_dir(cls, annotations_dir: str | Path = DEFAULT_DIR, version: str = "5k") -> "FivrBenchmark":
        return cls(load_fivr(annotations_dir), load_easy_duplicates(annotations_dir), version)

    def relevant(self, query: str, labels: tuple[str, ...]) -> np.ndarray:
        """(D,) bool: database videos with one of `labels` for `query`, the query itself excluded."""
        mask = np.zeros(len(self.database), dtype=bool)
        ids = set().union(*(self.annotation[query].get(label, ()) for label in labels)) - {query}
        mask[[self._index[v] for v in ids if v in self._index]] = True
        return mask

    def _ranked(self, query: str, row: Row) -> np.ndarray:
        """(D,) bool: the database videos `query` is ranked against (those scored, itself excluded)."""
        keep = row.present.copy()
        if query in self._index:
            keep[self._index[query]] = False
        return keep

    def score(self, similarities: Similarities, allow_missing: bool = False) -> BenchmarkResult:
        """mAP / uAP of every task, full and hard database (module docstring), per-query APs of the mAPs."""
        own = {q: self._index[q] for q in self.queries if q in self._index}
        rows, missing_queries, missing_videos = read_rows(self.name, similarities, self.queries,
                                                          lambda q: self.database, allow_missing, own)
        metrics, per_query = {}, {}
        kept = {q: self._ranked(q, row) for q, row in rows.items()}
        ranked = {q: Ranking(rows[q].scores[keep]) for q, keep in kept.items()}
        pooled = Ranking(np.concatenate([np.zeros(0)] + [rows[q].scores[keep] for q, keep in kept.items()]))
        for variant in VARIANTS:
            if variant == "_h":  # the hard lists are the full ones less the easy duplicates: no new sort
                hard = {q: self._hard[keep] for q, keep in kept.items()}
                ranked = {q: ranked[q].subset(hard[q]) for q in kept}
                pooled = pooled.subset(np.concatenate([np.zeros(0, dtype=bool), *hard.values()]))
                kept = {q: keep & self._hard for q, keep in kept.items()}
            for task, labels in TASKS.items():
                relevant = {q: self.relevant(q, labels)[keep] for q, keep in kept.items()}
                aps = {q: ranked[q].average_precision(rel) for q, rel in relevant.items() if rel.any()}
                per_query[f"{task}R{variant}"] = aps
                metrics[f"{task}R{variant}"] = mean(aps)
                pooled_relevant = np.concatenate([np.zeros(0, dtype=bool), *relevant.values()])
                metrics[f"{task}D{variant}"] = (pooled.average_precision(pooled_relevant) if pooled_relevant.any()
                                                else float("nan"))
        order = [f"{t}{kind}{v}" for v in VARIANTS for kind in "RD" for t in TASKS]
        result = BenchmarkResult({k: metrics[k] for k in order}, per_query, missing_queries, missing_videos)
        return self._with_missing(result, allow_missing)
