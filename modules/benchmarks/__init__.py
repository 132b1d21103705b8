"""The HAP-VR benchmarks (EVVE, FIVR-5K, FIVR-200K, SVD): which ids need features, and their metrics.

    bench = load_benchmark("fivr5k", "data/hapvr")       # also "FIVR-5K", the reference's --dataset spelling
    bench.queries, bench.database                         # ids to extract features for
    bench.evaluate(similarities)                          # {query: {video: score}} -> {"DSVR": ..., "DSVD_h": ...}
    bench.score(similarities).per_query                   # metric -> {query: AP}, for the run folder

Metrics: FIVR `DSVR CSVR ISVR` (mAP) and `DSVD CSVD ISVD` (uAP), each also `_h` (hard database); EVVE `EVVE_mAP`,
`EVVE_uAP` and `EVVE_mAP/<event>`; SVD `mAP`, `uAP`. Each module's docstring states the reference semantics it
reproduces; `base` how missing queries and scores are handled (an error unless `allow_missing=True`), `ranking`
how ties are.
"""
from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from dataloaders.errors import DataError
from dataloaders.video_video.annotations import DEFAULT_DIR
from modules.benchmarks.base import Benchmark, BenchmarkResult, Similarities
from modules.benchmarks.evve import EvveBenchmark
from modules.benchmarks.fivr import FivrBenchmark
from modules.benchmarks.svd import SvdBenchmark

# name -> factory(annotations_dir, **options); names are lower case without separators (see canonical_name)
BENCHMARKS: dict[str, Callable[..., Benchmark]] = {
    "evve": EvveBenchmark.from_dir,
    "fivr5k": partial(FivrBenchmark.from_dir, version="5k"),
    "fivr200k": partial(FivrBenchmark.from_dir, version="200k"),
    "svd": SvdBenchmark.from_dir,
}


def canonical_name(name: str) -> str:
    """'FIVR-5K', 'fivr_5k', 'fivr5k' -> 'fivr5k'."""
    return re.sub(r"[\s_-]", "", name.lower())


def load_benchmark(name: str, annotations_dir: str | Path = DEFAULT_DIR, **options) -> Benchmark:
    """The benchmark `name` (a key of BENCHMARKS, any case, '-' / '_' ignored) from the files in `annotations_dir`.

    `options` go to its factory: SVD takes `unlabeled` (True, the reference's default: rank against the unlabelled
    distractors too; False: the labelled candidates only).
    """
    key = canonical_name(name)
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[key](annotations_dir, **options)


def scores_from_json(path: str | Path) -> dict[str, dict[str, float]]:
    """A similarity dictionary {query: {video: score}} from a `.json` or `.json.gz` file (gzip detected by content)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: similarity file not found")
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if compressed else open(path, encoding="utf-8")) as f:
            data = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a JSON similarity file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object {{query: {{video: score}}}}, got {type(data).__name__}")
    for query, row in data.items():
        if not isinstance(row, dict):
            raise DataError(f"{path}: query {query!r}: expected an object {{video: score}}, got {type(row).__name__}")
        bad = next((v for v, s in row.items() if type(s) not in (int, float)), None)
        if bad is not None:
            raise DataError(f"{path}: query {query!r}, video {bad!r}: score {row[bad]!r} is not a number")
    return data


__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkResult", "EvveBenchmark", "FivrBenchmark", "Similarities",
           "SvdBenchmark", "canonical_name", "load_benchmark", "scores_from_json"]
