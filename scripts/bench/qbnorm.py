"""Benchmark: streamed QB-Norm from a float16 memmap querybank vs a plain dense implementation, in one run.

1. Writes a querybank (--bank-rows x --gallery, float16, with "hub" columns) and a test matrix (--test-rows x
   --gallery) as .npy files in a temporary folder, chunk by chunk.
2. Full size: runs ``qb_norm`` on the memory-mapped files in a subprocess (so creating the files does not count)
   and reports its time and peak resident memory (VmHWM), which must stay under --limit-gb.
3. Sub-problem (the first --dense-rows querybank rows): times ``qb_norm`` and a plain dense version (the official
   algorithm: argsort, exp and sum in float64, the whole matrix in memory) and checks identical per-row rankings
   and equal values (the log of the dense ratio) where finite; prints the ratio of the times.
The temporary files are removed at the end.

    python -m scripts.bench.qbnorm [--bank-rows 200000 --test-rows 10000 --gallery 10000 --dense-rows 20000]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from modules.qbnorm import qb_norm

ROOT = Path(__file__).resolve().parents[2]

WRITE_ROWS = 8192


def write_sims(path: Path, rows: int, hub: np.ndarray, rng: np.random.Generator, diagonal: float) -> None:
    """Write a (rows, G) float16 .npy: noise + per-column hub bias (+ ``diagonal`` on the true pairs).

    Plain file writes rather than a writable memmap, whose dirty pages would all stay resident in this process.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
              "shape": (rows, hub.shape[0])}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, rows, WRITE_ROWS):
            block = rng.standard_normal((min(WRITE_ROWS, rows - start), hub.shape[0]), dtype=np.float32)
            block *= 0.1
            block += hub
            local = np.flatnonzero(np.arange(start, start + block.shape[0]) < hub.shape[0])
            block[local, start + local] += diagonal  # row i's true item is column i
            f.write(block.astype(np.float16).tobytes())


def dense_qb_norm(bank: np.ndarray, test: np.ndarray, k: int, beta: float) -> np.ndarray:
    """The official dynamic inverted softmax, dense and in float64 (stable sorts: lowest index wins ties)."""
    bank = np.asarray(bank, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    active = np.unique(np.argsort(-bank, axis=1, kind="stable")[:, :k])
    rows = np.isin(np.argsort(-test, axis=1, kind="stable")[:, 0], active)
    out = test.copy()
    out[rows] = np.exp(beta * test[rows]) / np.exp(beta * bank).sum(axis=0)
    return out


def peak_rss_gb() -> float:
    """Peak resident memory of this process in GB.

    VmHWM (Linux) is the high-water mark of this process's own memory since exec. ru_maxrss would also carry the
    peak of the parent, whose memory map a forked child copies (here: the parent that wrote the files).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux, fallback only


def worker(bank_path: str, test_path: str, k: int, beta: float, chunk_rows: int) -> None:
    """Subprocess: normalise the memory-mapped files; print time, peak RSS and how many rows were rescored."""
    bank = np.load(bank_path, mmap_mode="r")
    test = np.load(test_path, mmap_mode="r")
    start = time.perf_counter()
    out = qb_norm(bank, test, k=k, beta=beta, chunk_rows=chunk_rows)
    seconds = time.perf_counter() - start
    rescored = int(sum((out[i:i + 1024] != test[i:i + 1024]).any(axis=1).sum() for i in range(0, len(out), 1024)))
    print(json.dumps({"seconds": seconds, "peak_rss_gb": peak_rss_gb(), "rescored_rows": rescored}))


def compare(bank_path: Path, test_path: Path, rows: int, k: int, beta: float, chunk_rows: int) -> None:
    """Streamed vs dense on the first ``rows`` querybank rows: times, ratio, ranking and value agreement."""
    bank = np.load(bank_path, mmap_mode="r")[:rows]
    test = np.load(test_path, mmap_mode="r")
    start = time.perf_counter()
    streamed = qb_norm(bank, test, k=k, beta=beta, chunk_rows=chunk_rows)
    t_streamed = time.perf_counter() - start
    start = time.perf_counter()
    dense = dense_qb_norm(bank, test, k, beta)
    t_dense = time.perf_counter() - start
    rescored = (dense != np.asarray(test, dtype=np.float64)).any(axis=1)
    expected = dense.copy()
    with np.errstate(divide="ignore"):
        expected[rescored] = np.log(dense[rescored])  # streamed rows are log-scores
    finite = np.isfinite(expected)
    max_diff = float(np.abs(streamed[finite] - expected[finite]).max())
    differing = int((np.argsort(-streamed, axis=1, kind="stable") != np.argsort(-dense, axis=1, kind="stable"))
                    .any(axis=1).sum())
    print(f"sub-problem {rows} x {test.shape[1]} querybank, {test.shape[0]} test rows:")
    print(f"  streamed qb_norm      : {t_streamed:8.2f} s")
    print(f"  dense float64 (plain) : {t_dense:8.2f} s")
    print(f"  speed-up: {t_dense / t_streamed:.2f}x   rows with a different ranking: {differing} of {len(dense)}   "
          f"max |log-score difference| (finite): {max_diff:.2e}")
    if differing:
        raise SystemExit("rankings differ between the streamed and the dense implementation")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bank-rows", type=int, default=200_000)
    p.add_argument("--test-rows", type=int, default=10_000)
    p.add_argument("--gallery", type=int, default=10_000)
    p.add_argument("--dense-rows", type=int, default=20_000)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--beta", type=float, default=20.0)
    p.add_argument("--chunk-rows", type=int, default=4096)
    p.add_argument("--limit-gb", type=float, default=3.0)
    p.add_argument("--worker", nargs=2, metavar=("BANK", "TEST"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(*args.worker, args.k, args.beta, args.chunk_rows)
        return
    rng = np.random.default_rng(0)
    hub = np.where(rng.random(args.gallery) < 0.02, 0.15, 0.0).astype(np.float32)  # 2% hub columns
    with tempfile.TemporaryDirectory(prefix="qbnorm_bench_") as tmp:
        bank_path, test_path = Path(tmp) / "querybank.npy", Path(tmp) / "test.npy"
        start = time.perf_counter()
        write_sims(bank_path, args.bank_rows, hub, rng, diagonal=0.0)
        write_sims(test_path, args.test_rows, hub, rng, diagonal=0.3)
        print(f"wrote {args.bank_rows} x {args.gallery} + {args.test_rows} x {args.gallery} float16 "
              f"({(args.bank_rows + args.test_rows) * args.gallery * 2 / 1e9:.1f} GB) in "
              f"{time.perf_counter() - start:.1f} s")
        cmd = [sys.executable, "-m", "scripts.bench.qbnorm", "--worker", str(bank_path), str(test_path), "--k", str(args.k),
               "--beta", str(args.beta), "--chunk-rows", str(args.chunk_rows)]
        full = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout.splitlines()[-1])
        print(f"full size, streamed from the memmap: {full['seconds']:.1f} s, peak RSS {full['peak_rss_gb']:.2f} GB "
              f"(limit {args.limit_gb} GB), {full['rescored_rows']} of {args.test_rows} rows rescored")
        compare(bank_path, test_path, min(args.dense_rows, args.bank_rows), args.k, args.beta, args.chunk_rows)
    if full["peak_rss_gb"] >= args.limit_gb:
        raise SystemExit(f"peak RSS {full['peak_rss_gb']:.2f} GB is over the {args.limit_gb} GB limit")


if __name__ == "__main__":
    main()
