"""What every HAP-VR benchmark shares: the result record, reading a query's scores, and reporting what is missing.

Similarities are `{query: {video: score}}`. A benchmark reads, for each of its queries, the scores of the candidates
that query is ranked against (its database, less the query itself). Nothing missing is dropped silently: by default a
query without similarities, or a candidate without a score, stops scoring with one DataError line saying how many and
naming the first. With `allow_missing=True` they are scored as the reference scores them after a feature file lacked
them (the reference's `all_db` holds only the videos it loaded): a missing query is left out of every mean, a missing
candidate is left out of that query's list and of its relevant set. The metrics then carry `missing_queries` and
`missing_videos` (counts of queries and of (query, video) pairs), and `BenchmarkResult` lists them.
Scores of videos outside a query's candidates (other queries, unknown ids) are ignored, as in the reference.
A mean over no query, or a uAP without a relevant pair, is NaN, never 0.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dataloaders.errors import DataError

Similarities = Mapping[str, Mapping[str, float]]


@dataclass
class BenchmarkResult:
    """`metrics` name -> value; `per_query[metric][query]` the AP behind a mean; what was missing, if allowed."""
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    missing_queries: list[str] = field(default_factory=list)
    missing_videos: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Row:
    """One query's scores over its candidates: `scores` (C,) float64, `present` (C,) bool (False: no score)."""
    scores: np.ndarray
    present: np.ndarray


def read_row(name: str, query: str, targets: Mapping[str, float], candidates: Sequence[str]) -> Row:
    """The scores of `candidates` in `targets`; absent ones are NaN with present False, a NaN score is an error."""
    if not isinstance(targets, Mapping):
        raise DataError(f"{name}: similarities of query {query!r} must be a dict video -> score, "
                        f"got {type(targets).__name__}")
    try:
        scores = np.fromiter((targets.get(c, np.nan) for c in candidates), np.float64, len(candidates))
    except (TypeError, ValueError):
        bad = next((c for c in candidates if c in targets and not _is_number(targets[c])), None)
        raise DataError(f"{name}: similarity of query {query!r} to {bad!r} is not a number: "
                        f"{targets.get(bad)!r}") from None
    present = ~np.isnan(scores)
    if not present.all():  # absent, or present as NaN / None, which is an error, not a missing score
        bad = next((c for c, ok in zip(candidates, present) if not ok and c in targets), None)
        if bad is not None:
            raise DataError(f"{name}: similarity of query {query!r} to {bad!r} is not a number: {targets[bad]!r}")
    return Row(scores, present)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))


def read_rows(name: str, similarities: Similarities, queries: Sequence[str],
              candidates: Callable[[str], Sequence[str]], allow_missing: bool,
              self_index: Mapping[str, int] | None = None) -> tuple[dict[str, Row], list[str], dict[str, list[str]]]:
    """Rows of every one of `queries` that `similarities` holds, over `candidates(query)`.

    `self_index[query]`: where the query itself sits among its candidates (its score is not required).
    Returns (rows, missing queries, {query: candidates without a score}); raises DataError on anything missing
    unless `allow_missing`.
    """
    if not isinstance(similarities, Mapping):
        raise DataError(f"{name}: similarities must be a dict query -> {{video: score}}, "
                        f"got {type(similarities).__name__}")
    rows, missing_queries, missing_videos = {}, [], {}
    for query in queries:
        if query not in similarities:
            missing_queries.append(query)
            continue
        ids = candidates(query)
        rows[query] = row = read_row(name, query, similarities[query], ids)
        absent = ~row.present
        if self_index and query in self_index:
            absent[self_index[query]] = False
        if absent.any():
            missing_videos[query] = [ids[i] for i in np.flatnonzero(absent)]
    if not allow_missing and (missing_queries or missing_videos):
        raise DataError(f"{name}: {describe_missing(missing_queries, missing_videos, len(queries))}; "
                        f"pass allow_missing=True to score without them (the result then counts them)")
    return rows, missing_queries, missing_videos


def describe_missing(queries: list[str], videos: dict[str, list[str]], num_queries: int) -> str:
    parts = []
    if queries:
        parts.append(f"{len(queries)} of {num_queries} queries have no similarities (first {queries[0]!r})")
    if videos:
        query, ids = next(iter(videos.items()))
        pairs = sum(map(len, videos.values()))
        parts.append(f"{pairs} (query, video) scores are missing in {len(videos)} queries "
                     f"(first: query {query!r}, video {ids[0]!r})")
    return " and ".join(parts)


def mean(values: Mapping[str, float]) -> float:
    """Mean of the per-query values; NaN when there are none (never silently 0)."""
    return float(np.mean(list(values.values()))) if values else float("nan")


class Benchmark(ABC):
    """A benchmark: `queries` and `database` (the ids it needs features for) and its metrics."""

    name: str
    queries: tuple[str, ...]
    database: tuple[str, ...]

    @abstractmethod
    def score(self, similarities: Similarities, allow_missing: bool = False) -> BenchmarkResult:
        """Metrics, per-query APs and what was missing (see the module docstring for `allow_missing`)."""

    def evaluate(self, similarities: Similarities, allow_missing: bool = False) -> dict[str, float]:
        """The metrics of `score`."""
        return self.score(similarities, allow_missing).metrics

    def per_query_ap(self, similarities: Similarities, allow_missing: bool = False) -> dict[str, dict[str, float]]:
        """metric -> {query: AP} for every mean-AP metric (the queries a mean was taken over)."""
        return self.score(similarities, allow_missing).per_query

    @staticmethod
    def _with_missing(result: BenchmarkResult, allow_missing: bool) -> BenchmarkResult:
        if allow_missing:
            result.metrics["missing_queries"] = len(result.missing_queries)
            result.metrics["missing_videos"] = sum(map(len, result.missing_videos.values()))
        return result

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self.queries)} queries, {len(self.database)} database videos>"
