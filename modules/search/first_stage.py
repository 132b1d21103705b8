"""First stage: a short list of candidate videos per query, from faiss inner-product indexes.

Two modes. "pooled": one unit vector per video (faiss id = the video's key) against the query's pooled vector.
"tokens" (PLAID-style): every real frame token of the gallery is one row (id = key * F + frame); each real word of
the query fetches its `per_word` nearest frame tokens, every hit votes for its video, and a video scores the
(text-weighted) sum over words of its best hit for that word; the list is the `count` best of the union.

Two kinds of faiss index. "flat" (`IndexFlatIP`): exact, built in memory when the index is opened. "ivfpq": an
inverted file of `nlist` k-means lists trained on the collection, each row compressed to D/2 4-bit product-quantizer
codes (faiss fast-scan: D/4 bytes a row, 128 for 512 dims; coarser codes lose the small score differences that
rank a topic's clips, scripts/bench/search.py); `nprobe` lists are searched per query vector. It is trained by
`search.py index` and saved, because training and adding millions of rows takes minutes. "auto" is flat up to
`FLAT_MAX_ROWS` rows and ivfpq beyond. Ids of videos dropped since an ivfpq index was built stay in it and are
skipped (keys are never reused); `search.py index` retrains it once they outnumber the live ones or the collection
outgrows its `nlist`. Either kind can be split into shards of disjoint videos (key modulo the shard count), searched
in parallel threads and merged by faiss (`IndexShards`): the unit to put on other machines.
"""
from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

MODES = ("auto", "pooled", "tokens")
KINDS = ("auto", "flat", "ivfpq")
# Exact search reads every row once per query: memory-bandwidth bound, 2^17 rows of 512 float32 (256 MB) take
# ~50 ms on this project's two-core machine (scripts/bench/search.py), about the budget of one query.
FLAT_MAX_ROWS = 2 ** 17
TRAINING_ROWS_PER_LIST = 64
# The fewest lists, and the 16 centroids of 4-bit codes, each need a training row: below this ivfpq is not built.
MIN_IVFPQ_ROWS = 16
# Nearest frame tokens a query word fetches at least: fewer leave the vote short of the true best videos when few
# are re-ranked (scripts/bench/search.py: top-10 agreement at 10k clips and --rerank 50, 0.86 with 50, 0.99 with 200).
DEFAULT_PER_WORD = 1024
FIRST_STAGE_FOLDER = "first_stage"


def resolve_mode(mode: str, model_name: str) -> str:
    """`auto`: pooled for meanP (one vector per video is all it scores), tokens for the token-wise models."""
    if mode not in MODES:
        raise ValueError(f"--first_stage {mode!r}: expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    return "pooled" if model_name == "meanp" else "tokens"


def resolve_kind(kind: str, rows: int) -> str:
    if kind not in KINDS:
        raise ValueError(f"--first_stage_index {kind!r}: expected one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if rows <= FLAT_MAX_ROWS else "ivfpq"


def lists_for(rows: int) -> int:
    """The number of IVF lists for `rows` rows: the power of two nearest sqrt(rows), from 16 to 65536."""
    return int(2 ** min(16, max(4, round(math.log2(max(1.0, math.sqrt(rows)))))))


def default_nprobe(nlist: int) -> int:
    """A 16th of the lists: at 100k clips a 64th lost top-10 agreement (scripts/bench/search.py)."""
    return max(1, nlist // 16)


def token_rows(feats: np.ndarray, mask: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prepared unit frame tokens (n, F, D) with mask (n, F) and video keys (n,) -> the real ones as (m, D) float32
    rows and their (m,) ids key * F + frame."""
    videos, frames = np.nonzero(mask)
    ids = np.asarray(keys, dtype=np.int64)[videos] * mask.shape[1] + frames
    return np.ascontiguousarray(feats[videos, frames], dtype=np.float32), ids


class VectorIndex:
    """Rows of unit vectors with int64 ids in one faiss index of kind flat or ivfpq, or in several shards of disjoint
    videos (a row goes to shard (its video key) modulo the count; `ids_per_key`: F for token rows, 1 for pooled)."""

    def __init__(self, parts: list[faiss.Index], kind: str, ids_per_key: int = 1) -> None:
        self.parts, self.kind, self.ids_per_key = parts, kind, ids_per_key
        if len(parts) == 1:
            self.index = parts[0]
        else:
            self.index = faiss.IndexShards(parts[0].d, True, False)  # searched in threads; ids kept as given
            for part in parts:
                self.index.add_shard(part)

    @classmethod
    def empty(cls, kind: str, dim: int, ids_per_key: int = 1, shards: int = 1, training: np.ndarray | None = None,
              nlist: int | None = None) -> "VectorIndex":
        """An index to `add` to: flat, or ivfpq trained on the rows `training` with `nlist` lists."""
        if kind == "flat":
            return cls([faiss.IndexIDMap(faiss.IndexFlatIP(dim)) for _ in range(shards)], kind, ids_per_key)
        if kind != "ivfpq":
            raise ValueError(f"first-stage index kind {kind!r}: expected flat or ivfpq")
        if training is None or nlist is None:
            raise ValueError("an ivfpq index needs training rows and nlist")
        if dim % 4:
            raise ValueError(f"an ivfpq index needs a dimension divisible by 4, not {dim}")
        trained = faiss.index_factory(dim, f"IVF{nlist},PQ{dim // 2}x4fs", faiss.METRIC_INNER_PRODUCT)
        trained.train(np.ascontiguousarray(training, dtype=np.float32))
        return cls([faiss.clone_index(trained) for _ in range(shards)], kind, ids_per_key)

    @property
    def ntotal(self) -> int:
        return sum(part.ntotal for part in self.parts)

    @property
    def nlist(self) -> int | None:
        return faiss.extract_index_ivf(self.parts[0]).nlist if self.kind == "ivfpq" else None

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Adds (n, D) rows with their (n,) ids, each to its video's shard."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        shard = (ids // self.ids_per_key) % len(self.parts)
        for s, part in enumerate(self.parts):
            where = shard == s
            if where.all():
                part.add_with_ids(vectors, ids)
            elif where.any():
                part.add_with_ids(vectors[where], ids[where])

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) -> sims (Q, k) and ids (Q, k), best first; id -1 where fewer than k rows exist."""
        if nprobe is not None and self.kind == "ivfpq":
            for part in self.parts:
                faiss.extract_index_ivf(part).nprobe = nprobe
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, max(1, self.ntotal)))

    def save(self, folder: Path, name: str) -> list[str]:
        """Writes one faiss file per shard into `folder` (each through a temporary file); returns their names."""
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"{name}-{s + 1:02d}-of-{len(self.parts):02d}.faiss" for s in range(len(self.parts))]
        for part, file in zip(self.parts, names):
            tmp = folder / f".{file}.tmp"
            faiss.write_index(part, str(tmp))
            tmp.replace(folder / file)
        return names

    @classmethod
    def load(cls, folder: Path, names: list[str], kind: str, ids_per_key: int) -> "VectorIndex":
        return cls([faiss.read_index(str(folder / name)) for name in names], kind, ids_per_key)


class PooledSearch:
    """One vector per video: `index` rows have the video keys as ids; `row_of_key` maps a key to its gallery row
    (-1: dropped)."""

    def __init__(self, index: VectorIndex, row_of_key: np.ndarray, nprobe: int | None = None) -> None:
        self.index, self.row_of_key, self.nprobe = index, row_of_key, nprobe
        self.stale = max(0, index.ntotal - int((row_of_key >= 0).sum()))  # rows of dropped videos, skipped

    def candidates(self, queries: np.ndarray, count: int, **_) -> list[np.ndarray]:
        """Per query ((Q, D) unit vectors), the `count` best live gallery rows, best first."""
        _, ids = self.index.search(queries, count + self.stale, self.nprobe)
        out = []
        for found in ids:
            rows = self.row_of_key[found[found >= 0]]
            out.append(rows[rows >= 0][:count])
        return out


class TokenSearch:
    """Frame tokens of the gallery: `index` rows have ids key * `frames` + frame."""

    def __init__(self, index: VectorIndex, row_of_key: np.ndarray, frames: int, num_videos: int,
                 nprobe: int | None = None) -> None:
        self.index, self.row_of_key, self.frames, self.num_videos = index, row_of_key, frames, num_videos
        self.nprobe = nprobe

    def per_word(self, count: int) -> int:
        """Hits fetched per word by default: `count`, at least DEFAULT_PER_WORD; with `count` at least the gallery,
        every row, so that each word reaches each video's frames."""
        if count >= self.num_videos:
            return self.index.ntotal
        return max(count, DEFAULT_PER_WORD)

    def candidates(self, words: list[np.ndarray], count: int, weights: list[np.ndarray] | None = None,
                   per_word: int | None = None) -> list[np.ndarray]:
        """Per query ((L, D) unit word vectors, optional (L,) weights), up to `count` gallery rows, best vote
        first (ties: lower row)."""
        k = min(self.index.ntotal, per_word or self.per_word(count))
        lengths = [len(w) for w in words]
        sims, ids = self.index.search(np.concatenate(words), k, self.nprobe)  # every query's words in one call
        out, start = [], 0
        for q, length in enumerate(lengths):
            weight = np.ones(length) if weights is None else np.asarray(weights[q], dtype=np.float64)
            part = slice(start, start + length)
            out.append(self._vote(sims[part], ids[part], weight)[:count])
            start += length
        return out

    def _vote(self, sims: np.ndarray, ids: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """(L, k) hits of one query -> gallery rows by the weighted sum over words of their best hit's margin over
        the word's last (k-th) hit. A video a word did not reach scores at most that last hit for it, so the margin
        is what the missing score is imputed with (as XTR does); plain sums of raw hits favour videos many words
        reach weakly over the few that some words reach well (scripts/bench/search.py measured it)."""
        cutoff = np.where(ids >= 0, sims, np.inf).min(1, keepdims=True)
        rows = np.where(ids >= 0, self.row_of_key[np.maximum(ids, 0) // self.frames], -1)
        word = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
        live = rows >= 0
        margin = (sims - cutoff)[live].astype(np.float64)
        rows, word = rows[live], word[live]
        pair = rows * len(ids) + word
        order = np.lexsort((-margin, pair))  # by (video, word), best hit first
        first = order[np.r_[True, pair[order][1:] != pair[order][:-1]]] if len(order) else order
        videos, inverse = np.unique(rows[first], return_inverse=True)
        votes = np.bincount(inverse, weights=margin[first] * weight[word[first]], minlength=len(videos))
        return videos[np.argsort(-votes, kind="stable")]
