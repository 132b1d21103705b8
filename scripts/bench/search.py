"""Two-stage search against exhaustive scoring, on synthetic token features with the structure of real ones.

The collection: clips of 12 frames (512-d), in topics of about 50 near-duplicate clips; a clip's frames come from
two scenes near the clip, the clip near its topic, and every vector shares one common direction, as CLIP features
do. A query is a caption of 12 tokens written from one clip: 7 words each a noisy copy of one of its frames, 3
function words from a small shared vocabulary, a start token shared by all captions and an end token near the clip.
The noise is set so that exhaustive scoring finds the caption's own clip at rank 1 about half the time at 100k
clips, the clips of its topic close behind: the top 10 are separated by small score differences, as in real data.
The scorer is a WTI head (random weights, seed 0) exactly as `search.py query` re-ranks with it.

Each size runs in its own process (so its peak memory is its own), through the real code: the index is written as
`search.py index` writes one (shards on disk, read memory-mapped), the first stages are built by the same functions,
and every query is answered alone as `search.py query` answers it. Measured per size, first stage and --rerank:
queries/s, the top-10 overlap and the rank-1 agreement with exhaustive scoring of every clip by the same scorer
(computed in the same run, timed: the plain implementation), and the own clip's R@1 of both. The collection (its
features, not any result) is kept in --workdir and reused by a later run with the same size and seed; the first
stages are built again every run and their build time reported.
Usage: python -m scripts.bench.search [--workdir /tmp/search_bench] [--sizes 10000 100000 1000000] [--queries 100]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.text_video.interaction import TokenInteraction
from modules.search import first_stage_files
from modules.search.encode import entity_tokens, stored_arrays
from modules.search.first_stage import FIRST_STAGE_FOLDER, resolve_kind
from modules.search.index import SearchIndex
from modules.search.rerank import text_scores
from modules.search.searcher import two_stage
from modules.search.videos import VideoFile

FRAMES, DIM, WORDS, CONTENT_WORDS, FUNCTION_WORDS = 12, 512, 12, 7, 3
CLIPS_PER_TOPIC, CHUNK = 50, 4096
RERANKS = (50, 200, 1000)
SPEC = {"generator": "bench-search-v2", "frames": FRAMES, "dim": DIM, "words": WORDS, "seed": 0}


class HeadModel(nn.Module):
    """A WTI head standing for a trained model: what the index stores and the re-rank scores go through it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.interaction = TokenInteraction(DIM, weighted=True).eval()  # all that encode and text_scores use


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _noise(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal((*shape, DIM), dtype=np.float32) / np.sqrt(DIM)


class Collection:
    """The seeded generator: shared vectors, then clips chunk by chunk (each chunk from its own seed)."""

    def __init__(self, clips: int) -> None:
        rng = np.random.default_rng([SPEC["seed"], 0])
        self.clips = clips
        self.common = _unit(_noise(rng, 1))[0]
        self.topics = _unit(_noise(rng, max(1, clips // CLIPS_PER_TOPIC)))
        self.function_words = _unit(_noise(rng, 20))
        self.start = _unit(_noise(rng, 1))[0]

    def _shared(self, content: np.ndarray) -> np.ndarray:
        return _unit(0.8 * self.common + _unit(content)).astype(np.float32)

    def chunk(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """Clips [number * CHUNK, ...): frame features (n, F, D) and the clip centres (n, D)."""
        n = min(CHUNK, self.clips - number * CHUNK)
        rng = np.random.default_rng([SPEC["seed"], 1, number])
        clip = _unit(self.topics[rng.integers(len(self.topics), size=n)] + 0.3 * _noise(rng, n))
        scenes = _unit(clip[:, None] + 0.6 * _noise(rng, n, 2))
        frames = scenes[:, np.repeat([0, 1], FRAMES // 2)] + 0.5 * _noise(rng, n, FRAMES)
        return self._shared(frames), clip

    def caption(self, frames: np.ndarray, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(WORDS, D) tokens of a caption of one clip: start, content words, function words, end."""
        content = frames[rng.integers(FRAMES, size=CONTENT_WORDS)] + 4.0 * _noise(rng, CONTENT_WORDS)
        function = self.function_words[rng.integers(len(self.function_words), size=FUNCTION_WORDS)]
        function = function + 0.3 * _noise(rng, FUNCTION_WORDS)
        end = clip + 2.0 * _noise(rng, 1)[0]
        return self._shared(np.concatenate([self.start[None], content, function, end[None]]))


def write_collection(folder: Path, clips: int, queries: int, model: HeadModel) -> np.ndarray:
    """The collection as an index in `folder` (reused when it is there with the same spec); returns the query
    tokens (Q, WORDS, D), whose own clips are evenly spread: clip q * clips // Q."""
    spec = {**SPEC, "clips": clips, "queries": queries}
    done = folder / "bench.json"
    if done.is_file() and json.loads(done.read_text()) == spec:
        print(f"{clips} clips: reusing the collection in {folder} (same generator, size and seed)", flush=True)
        return np.load(folder / "queries.npy")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    collection = Collection(clips)
    own = np.arange(queries) * clips // queries
    tokens = np.zeros((queries, WORDS, DIM), np.float32)
    index = SearchIndex.new(folder, folder, {"init_model": "bench", "sha256": "-", "flags": {"model": "wti"},
                                             "rate": [1, 0, 0]},
                            {"max_frames": FRAMES, "video_framerate": 1.0, "slice_framepos": "uniform",
                             "video_backend": "synthetic", "frame_sampler": "synthetic", "image_size": 0})
    times = np.broadcast_to(np.arange(FRAMES, dtype=np.float32), (CHUNK, FRAMES))
    for number in tqdm(range(-(-clips // CHUNK)), desc=f"write {clips} clips", unit="chunk"):
        frames, centres = collection.chunk(number)
        first = number * CHUNK
        for q in np.flatnonzero((own >= first) & (own < first + len(frames))):
            tokens[q] = collection.caption(frames[own[q] - first], centres[own[q] - first],
                                           np.random.default_rng([SPEC["seed"], 2, q]))
        files = [VideoFile(f"clip{i:07d}", f"clip{i:07d}", 0, 0) for i in range(first, first + len(frames))]
        with torch.no_grad():
            arrays = stored_arrays(model, torch.from_numpy(frames), torch.ones(frames.shape[:2], dtype=torch.int64),
                                   times[:len(frames)])
        index.add_shard(files, arrays)
    index.save()
    np.save(folder / "queries.npy", tokens)
    done.write_text(json.dumps(spec))
    return tokens


@torch.no_grad()
def exhaustive(gallery, model: HeadModel, query: torch.Tensor, mask: torch.Tensor, top: int = 10) -> np.ndarray:
    """(Q, top) gallery rows by the head's score of every clip (the re-rank's computation: stored frame weights,
    all queries at once), best first (ties: lower row)."""
    head = model.interaction
    text = head.prepare_text(query, mask)
    best_scores = torch.full((len(query), 0), -np.inf)
    best_rows = torch.zeros((len(query), 0), dtype=torch.int64)
    for rows, feats, video_mask in tqdm(gallery.chunks(CHUNK), total=-(-len(gallery) // CHUNK),
                                        desc="exhaustive", unit="chunk"):
        scores = head.score(text, head.prepare_video(feats, video_mask, gallery.weights(rows)))
        best_scores = torch.cat([best_scores, scores], 1)
        best_rows = torch.cat([best_rows, torch.from_numpy(rows).expand(len(query), -1)], 1)
        keep = torch.stack([torch.from_numpy(np.lexsort((r.numpy(), -s.numpy()))[:top])
                            for s, r in zip(best_scores, best_rows)])
        best_scores, best_rows = best_scores.gather(1, keep), best_rows.gather(1, keep)
    return best_rows.numpy()


class AnonymousPeak:
    """The peak of this process's anonymous resident memory (RssAnon), sampled every 0.2 s in a thread: what the
    machine must hold. ru_maxrss also counts the pages of memory-mapped shards, which the kernel can drop."""

    def __init__(self) -> None:
        self.peak_kb, self.running = 0, True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(0.2)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@torch.no_grad()
def run_size(args: argparse.Namespace) -> dict:
    """One size, in this process: write (or reuse) the collection, score exhaustively, then every configuration."""
    memory = AnonymousPeak()
    folder = Path(args.workdir) / f"clips{args.clips}"
    model = HeadModel()
    query_tokens = write_collection(folder, args.clips, args.queries, model)
    index = SearchIndex.load(folder)
    gallery = index.gallery()
    own = np.arange(args.queries) * args.clips // args.queries
    query = torch.from_numpy(query_tokens)
    mask = torch.ones(query.shape[:2], dtype=torch.int64)
    start = time.perf_counter()
    truth = exhaustive(gallery, model, query, mask)
    exhaustive_s = (time.perf_counter() - start) / args.queries
    tokens = entity_tokens(model, query, mask, "text")
    result = {"clips": args.clips, "exhaustive_ms": 1e3 * exhaustive_s,
              "exhaustive_R1": float(np.mean(truth[:, 0] == own)), "features_bytes": folder_bytes(folder),
              "rows": []}
    for mode in ("pooled", "tokens"):
        rows = first_stage_files.live_rows(gallery, mode)
        kinds = ["flat"] if args.clips <= args.exact_upto else []
        kinds += [kind for kind in [resolve_kind("auto", rows)] if kind not in kinds]
        for kind in kinds:
            result["rows"] += measure(args, index, gallery, mode, kind, query, mask, tokens, truth, own, model)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["peak_anon_mb"] = memory.peak_kb / 1024
    memory.running = False
    return result


def measure(args, index, gallery, mode, kind, query, mask, tokens, truth, own, model) -> list[dict]:
    """One first stage: built (timed), then every --rerank value over every query, one query at a time (latency),
    and all queries in one call (throughput: what `query --queries FILE` does; faiss scans each list once for every
    query vector that probes it)."""
    folder, score, out = index.folder, text_scores(model, None), []
    prepare = lambda feats, m: entity_tokens(model, feats, m, "video").feats.numpy()  # noqa: E731
    start = time.perf_counter()
    index.manifest["first_stage"] = {}
    said = first_stage_files.update(index, mode, kind, prepare, 1)
    search = first_stage_files.open_search(index, gallery, mode, kind, prepare, args.nprobe)
    build_s = time.perf_counter() - start
    print(f"{args.clips} clips, {mode}: first stage {said} ({build_s:.0f} s)", flush=True)
    stage_bytes = folder_bytes(folder / FIRST_STAGE_FOLDER) if kind == "ivfpq" else 0
    probes = [search.nprobe] if kind != "ivfpq" or args.nprobe else [max(1, search.nprobe // 4), search.nprobe]
    for nprobe, count in [(n, c) for n in probes for c in RERANKS]:
        search.nprobe = nprobe
        hits, start = [], time.perf_counter()
        for q in range(args.queries):
            hits += two_stage(search, gallery, score, query[q:q + 1], mask[q:q + 1], tokens[q:q + 1], 10, count)
        seconds = (time.perf_counter() - start) / args.queries
        start = time.perf_counter()
        together = two_stage(search, gallery, score, query, mask, tokens, 10, count)
        batch_seconds = (time.perf_counter() - start) / args.queries
        got = np.array([[h.row for h in found] for found in hits])
        batch = np.array([[h.row for h in found] for found in together])
        out.append({"mode": mode, "kind": kind, "rerank": count, "ms": 1e3 * seconds,
                    "batch_ms": 1e3 * batch_seconds, "batch_same": float(np.mean(batch == got)),
                    "top10": float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)])),
                    "r1_agree": float(np.mean(got[:, 0] == truth[:, 0])), "R1": float(np.mean(got[:, 0] == own)),
                    "first_stage_bytes": stage_bytes, "build_s": build_s, "nprobe": search.nprobe})
        print(json.dumps(out[-1]), flush=True)
    shutil.rmtree(folder / FIRST_STAGE_FOLDER, ignore_errors=True)
    return out


def table(results: list[dict]) -> str:
    lines = ["| clips | first stage | index | nprobe | rerank | ms/query | batched | top-10 overlap | "
             "R@1 agreement | R@1 (exhaustive) | first-stage index | features on disk | peak memory |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            stage = f"{row['first_stage_bytes'] / 2**20:.0f} MB" if row["first_stage_bytes"] else "in memory"
            lines.append(f"| {r['clips']:,} | {row['mode']} | {row['kind']} | {row['nprobe'] or '-'} | "
                         f"{row['rerank']} | {row['ms']:.1f} | {row['batch_ms']:.1f} | "
                         f"{row['top10']:.3f} | {row['r1_agree']:.3f} | "
                         f"{row['R1']:.2f} ({r['exhaustive_R1']:.2f}) | {stage} | "
                         f"{r['features_bytes'] / 2**30:.2f} GB | {r['peak_anon_mb'] / 1024:.1f} GB |")
        lines.append(f"| {r['clips']:,} | exhaustive | - | - | all | | {r['exhaustive_ms']:.1f} | 1 | 1 | "
                     f"{r['exhaustive_R1']:.2f} | - | | |")
    lines.append("ms/query: each query alone; batched: all queries in one call, per query")
    lines.append("peak memory: anonymous resident memory of the size's process (its largest RSS, which also counts "
                 "the memory-mapped shards' pages: " + ", ".join(f"{r['peak_rss_mb'] / 1024:.1f} GB" for r in results)
                 + ")")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="/tmp/search_bench")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--exact_upto", type=int, default=100_000,
                   help="sizes up to this also run the exact (flat) first stages, besides the automatic choice")
    p.add_argument("--nprobe", type=int, default=None)
    p.add_argument("--clips", type=int, default=None, help=argparse.SUPPRESS)  # one size, in a child process
    args = p.parse_args()
    if args.clips is not None:
        print("RESULT " + json.dumps(run_size(args)), flush=True)
        return
    results = []
    for size in args.sizes:
        command = [sys.executable, "-m", "scripts.bench.search", "--clips", str(size), "--workdir", args.workdir,
                   "--queries", str(args.queries), "--exact_upto", str(args.exact_upto)]
        if args.nprobe:
            command += ["--nprobe", str(args.nprobe)]
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        print("\n".join(line for line in out.splitlines() if not line.startswith("RESULT ")), flush=True)
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    print(f"\n{torch.get_num_threads()} threads; {args.queries} queries a size\n" + table(results))


if __name__ == "__main__":
    main()
