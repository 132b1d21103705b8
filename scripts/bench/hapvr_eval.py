"""HAP-VR evaluation throughput: the streamed, batched scorer against the reference's way, in one run.

Workload: 10 queries against 2,000 and 8,000 database videos of 30 frames (9 regions, 512-d, float32) read from an
HDF5 file on disk (written once into --workdir, 4.4 GB for 8,000 videos). Each size runs in its own process, so its
peak memory (max RSS) is its own: it should be flat in the database size. The reference's way (each database video
read alone, indexed, then scored against each query in turn, one pair per call) is timed on the first
--reference_videos videos, and its scores are compared with ours there; the batched scorer alone (videos read and
indexed beforehand) is timed on the same videos. The work is bound by the region-similarity matrix products
(30*9 x 512 x 30*9 per pair: 74.6 MFLOP), so the achieved rate of those products is printed beside a plain 4096^3
matmul's on this machine.
Usage: python -m scripts.bench.hapvr_eval [--workdir /tmp/hapvr_bench] [--sizes 2000 8000] [--workers 0]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from dataloaders.video_video.features import FeatureFile
from models.video_video import HapvrNetwork, index_videos, repeat_short_video, similarity_matrix
from modules.engine.distributed import DistInfo
from modules.evaluation.video_video import ScoringOptions, score_feature_file

QUERIES, FRAMES, REGIONS, DIMS = 10, 30, 9, 512
PAIR_FLOP = 2 * (FRAMES * REGIONS) ** 2 * DIMS  # the region-similarity product of one pair


def network() -> HapvrNetwork:
    torch.manual_seed(0)
    return HapvrNetwork().eval()


def write_features(path: Path, videos: int) -> None:
    """`videos` database videos and QUERIES queries of random L2-normalised region features, unless present."""
    if path.is_file():
        with h5py.File(path, "r") as f:
            if len(f) == videos + QUERIES:
                return
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        for i in tqdm(range(videos + QUERIES), desc=f"write {path.name}", unit="video"):
            x = rng.standard_normal((FRAMES, REGIONS, DIMS), dtype=np.float32)
            f.create_dataset(f"q{i}" if i < QUERIES else f"v{i - QUERIES}", data=x / np.linalg.norm(x, axis=-1,
                                                                                                  keepdims=True))
    tmp.rename(path)


def ids(size: int) -> tuple[list[str], list[str]]:
    return [f"q{i}" for i in range(QUERIES)], [f"v{i}" for i in range(size)]


def run_ours(path: Path, size: int, workers: int) -> dict:
    """Our scorer on the first `size` database videos (run in a child process: its max RSS is this run's)."""
    queries, database = ids(size)
    dist = DistInfo(0, 1, 0, torch.device("cpu"), True)
    start = time.perf_counter()
    scored = score_feature_file(network(), FeatureFile(path), queries, database, ScoringOptions(workers=workers),
                                dist)
    seconds = time.perf_counter() - start
    head = np.array([[scored.similarities[q][v] for v in database[:200]] for q in queries])
    return {"size": size, "seconds": seconds, "pairs_per_s": QUERIES * size / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "head": head.tolist()}


def run_reference(path: Path, videos: int) -> tuple[float, np.ndarray]:
    """The reference's way on the first `videos` database videos: pairs per second and the scores."""
    net, file = network(), FeatureFile(path)
    queries, database = ids(videos)
    with torch.no_grad():
        indexed = [net.index_video(repeat_short_video(torch.from_numpy(file.read(q)))) for q in queries]
        scores = np.zeros((QUERIES, videos))
        start = time.perf_counter()
        for j, video_id in enumerate(database):
            target = net.index_video(repeat_short_video(torch.from_numpy(file.read(video_id))))
            for i, query in enumerate(indexed):
                scores[i, j] = float(net.indexed_similarity(query, target))
        seconds = time.perf_counter() - start
    return QUERIES * videos / seconds, scores


def run_scorer_alone(path: Path, videos: int) -> float:
    """Pairs per second of the batched scorer on videos already read and indexed (no I/O, no attention)."""
    net, file = network(), FeatureFile(path)
    queries, database = ids(videos)
    with torch.no_grad():
        packed_queries = index_videos(net, [torch.from_numpy(file.read(q)) for q in queries])
        packed_targets = index_videos(net, [torch.from_numpy(file.read(v)) for v in database])
        similarity_matrix(net, packed_queries, packed_targets)
        start = time.perf_counter()
        similarity_matrix(net, packed_queries, packed_targets)
    return QUERIES * videos / (time.perf_counter() - start)


def matmul_gflops(size: int = 4096, repeats: int = 3) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9


def child(args: argparse.Namespace) -> None:
    print(json.dumps(run_ours(Path(args.child_file), args.child_size, args.workers)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/hapvr_bench"))
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    p.add_argument("--workers", type=int, default=0,
                   help="feature-reading processes of our scorer (0: read inline; on 2 cores reader processes take "
                        "the scorer's CPU)")
    p.add_argument("--reference_videos", type=int, default=200)
    p.add_argument("--child_file", help=argparse.SUPPRESS)
    p.add_argument("--child_size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_file:
        return child(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"bench_{max(args.sizes)}.hdf5"
    write_features(path, max(args.sizes))
    runs = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, "-m", "scripts.bench.hapvr_eval", "--child_file", str(path),
                              "--child_size", str(size), "--workers", str(args.workers)],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    reference_rate, reference_scores = run_reference(path, args.reference_videos)
    alone_rate = run_scorer_alone(path, args.reference_videos)
    ours_head = np.array(runs[0]["head"])[:, :args.reference_videos]
    max_diff = float(np.abs(ours_head - reference_scores[:, :ours_head.shape[1]]).max())
    peak = matmul_gflops()
    print(f"threads {torch.get_num_threads()}; plain 4096^3 matmul: {peak:.1f} GFLOP/s")
    print(f"reference's way (one pair per call, {args.reference_videos} videos): {reference_rate:.0f} pairs/s")
    alone_gflops = alone_rate * PAIR_FLOP / 1e9
    print(f"ours, scoring alone (read and indexed beforehand, {args.reference_videos} videos): {alone_rate:.0f} pairs/s "
          f"({alone_rate / reference_rate:.2f}x), region products {alone_gflops:.1f} GFLOP/s "
          f"({alone_gflops / peak:.0%} of the matmul)")
    for run in runs:
        gflops = run["pairs_per_s"] * PAIR_FLOP / 1e9
        print(f"ours, {run['size']} videos: {run['pairs_per_s']:.0f} pairs/s ({run['pairs_per_s'] / reference_rate:.2f}x "
              f"the reference), region products {gflops:.1f} GFLOP/s ({gflops / peak:.0%} of the matmul), "
              f"{run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB")
    print(f"max |ours - reference| over {QUERIES} x {args.reference_videos} pairs: {max_diff:.2e}")
    summary = {"matmul_gflops": peak, "reference_pairs_per_s": reference_rate, "max_abs_diff": max_diff,
               "scorer_alone_pairs_per_s": alone_rate,
               "runs": [{k: v for k, v in run.items() if k != "head"} for run in runs]}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
