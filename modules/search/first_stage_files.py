"""The first-stage indexes of a search index: built from its gallery, trained ones saved under `first_stage/`.

manifest["first_stage"][mode] (mode "pooled" or "tokens"), only for a trained (ivfpq) index: {kind, nlist, shards,
files, covered_key (every video with a smaller key was added), rows (ids in it)}. A flat index is never saved: it
is built in memory when the index is opened. `prepare(feats, mask)` is the model's entity head on stored features:
(n, F, D) float32 and (n, F) int64 tensors -> (n, F, D) unit token vectors (padding zero), as numpy.
"""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from modules.search.first_stage import (FIRST_STAGE_FOLDER, MIN_IVFPQ_ROWS, TRAINING_ROWS_PER_LIST, PooledSearch,
                                        TokenSearch, VectorIndex, default_nprobe, lists_for, resolve_kind,
                                        token_rows)
from modules.search.index import Gallery, SearchIndex
from modules.search.remote import RemoteShards

Prepare = Callable[[torch.Tensor, torch.Tensor], np.ndarray]
CHUNK_VIDEOS = 4096


def live_rows(gallery: Gallery, mode: str) -> int:
    return len(gallery) if mode == "pooled" else int(gallery.array("mask", np.arange(len(gallery))).sum())


def _rows(gallery: Gallery, mode: str, prepare: Prepare, videos: np.ndarray):
    """(vectors (m, D) float32, ids (m,)) of the gallery rows `videos`, in chunks."""
    for start in range(0, len(videos), CHUNK_VIDEOS):
        part = videos[start:start + CHUNK_VIDEOS]
        if mode == "pooled":
            vectors = gallery.array("pooled", part).astype(np.float32)
            yield vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12), gallery.keys[part]
        else:
            feats, mask, _ = gallery.take(part)
            yield token_rows(prepare(feats, mask), mask.numpy(), gallery.keys[part])


def _training_rows(gallery: Gallery, mode: str, prepare: Prepare, nlist: int) -> np.ndarray:
    """About TRAINING_ROWS_PER_LIST rows per list, from videos drawn at random (seed 0)."""
    wanted = min(len(gallery), -(-TRAINING_ROWS_PER_LIST * nlist // _per_key(gallery, mode)))
    videos = np.sort(np.random.default_rng(0).choice(len(gallery), wanted, replace=False))
    return np.concatenate([vectors for vectors, _ in _rows(gallery, mode, prepare, videos)])


def train_ivfpq(gallery: Gallery, mode: str, prepare: Prepare, shards: int = 1) -> VectorIndex:
    """An IVF-PQ first stage trained on a sample of the gallery, holding every gallery row."""
    nlist = lists_for(live_rows(gallery, mode))
    index = VectorIndex.empty("ivfpq", gallery.dim, _per_key(gallery, mode), shards,
                              _training_rows(gallery, mode, prepare, nlist), nlist)
    add(index, gallery, mode, prepare, np.arange(len(gallery)))
    return index


def add(index: VectorIndex, gallery: Gallery, mode: str, prepare: Prepare, videos: np.ndarray) -> None:
    bar = tqdm(total=len(videos), desc=f"first stage ({mode}, {index.kind})", unit="video",
               disable=len(videos) < CHUNK_VIDEOS)
    for vectors, ids in _rows(gallery, mode, prepare, videos):
        index.add(vectors, ids)
        bar.update(len(np.unique(ids // index.ids_per_key)))
    bar.close()


def _stale(record: dict, kind: str, shards: int, live: int) -> str | None:
    """Why a saved index must be retrained, or None."""
    if record["kind"] != kind or record["shards"] != shards:
        return f"now {kind} in {shards} shard(s)"
    if lists_for(live) != record["nlist"]:
        return f"{live} rows want {lists_for(live)} lists, not {record['nlist']}"
    if record["rows"] - live > live:
        return "more dropped rows than live ones"
    return None


def update(index: SearchIndex, mode: str, kind: str, prepare: Prepare, shards: int) -> str:
    """Brings the saved first stage of `mode` up to date with the index (nothing saved for flat); says what it did."""
    records = index.manifest.setdefault("first_stage", {})
    gallery = index.gallery()
    live = live_rows(gallery, mode)
    kind = resolve_kind(kind, live)
    folder = index.folder / FIRST_STAGE_FOLDER
    record = records.get(mode)
    if kind == "ivfpq" and live < MIN_IVFPQ_ROWS:
        kind, why = "flat", f" (too few rows for ivfpq, at least {MIN_IVFPQ_ROWS})"
    else:
        why = ""
    if kind == "flat":
        for old in records.pop(mode, {}).get("files", []):
            (folder / old).unlink(missing_ok=True)
        return f"{mode}: exact (flat) over {live} rows{why}, built when queried"
    reason = "new" if record is None else _stale(record, kind, shards, live)
    if reason is None:
        new = np.flatnonzero(gallery.keys >= record["covered_key"])
        if not len(new):
            return f"{mode}: {kind} index up to date ({record['rows']} rows, {record['nlist']} lists)"
        vectors = VectorIndex.load(folder, record["files"], kind, _per_key(gallery, mode))
        add(vectors, gallery, mode, prepare, new)
        what = f"{len(new)} videos added"
    else:
        vectors = train_ivfpq(gallery, mode, prepare, shards)
        what = f"trained ({reason})"
    files = vectors.save(folder, mode)
    for old in (record or {}).get("files", []):
        if old not in files:
            (folder / old).unlink(missing_ok=True)
    records[mode] = {"kind": kind, "nlist": vectors.nlist, "shards": shards, "files": files,
                     "covered_key": index.manifest["next_key"], "rows": vectors.ntotal}
    return f"{mode}: {kind} index {what}: {vectors.ntotal} rows, {vectors.nlist} lists, {shards} shard(s)"


def _per_key(gallery: Gallery, mode: str) -> int:
    return 1 if mode == "pooled" else gallery.frames


def _add_missing(vectors: VectorIndex, index: SearchIndex, gallery: Gallery, mode: str, prepare: Prepare,
                 record: dict, part: int | None, parts: int) -> None:
    """Videos indexed after the trained first stage was saved (an `index` run stopped before its end) are added
    to it in memory, and said so: they are searched, and the next `index` run saves them."""
    new = gallery.keys >= record["covered_key"]
    if part is not None:
        new &= gallery.keys % parts == part - 1
    if new.any():
        print(f"search.py: {int(new.sum())} videos are not in the saved {mode} first stage of {index.folder} yet: "
              "added for this run (`search.py index` saves them)", file=sys.stderr, flush=True)
        add(vectors, gallery, mode, prepare, np.flatnonzero(new))


def part_count(index: SearchIndex, mode: str) -> int:
    """Shards of the first stage of `mode`: those of its saved index, or --first_stage_shards for a flat one."""
    record = index.manifest.get("first_stage", {}).get(mode)
    return record["shards"] if record else index.manifest.get("first_stage_shards", 1)


def open_search(index: SearchIndex, gallery: Gallery, mode: str, kind: str, prepare: Prepare,
                nprobe: int | None = None, part: int | None = None,
                remote: list[str] | None = None) -> PooledSearch | TokenSearch:
    """The first stage of `mode` for queries: the saved trained index (kind auto or ivfpq) or an exact one built
    now (flat, or auto when none is saved); only its `part`-th of the index's shards (1-based) for a machine that
    serves one part; or the parts other machines serve (`remote` URLs, modules/search/remote.py)."""
    record = index.manifest.get("first_stage", {}).get(mode)
    per_key = _per_key(gallery, mode)
    parts = part_count(index, mode)
    if part is not None and not 1 <= part <= parts:
        raise ValueError(f"--first_stage_part {part}: the {mode} first stage of {index.folder} has parts 1 to {parts}")
    if remote:
        vectors = RemoteShards(remote, index, mode)
        nprobe = nprobe or (default_nprobe(record["nlist"]) if record else None)
    elif kind == "ivfpq" and record is None:
        raise ValueError(f"--first_stage_index ivfpq: {index.folder} has no trained {mode} index: build one with "
                         "`search.py index ... --first_stage_index ivfpq`")
    elif record is not None and kind != "flat":
        files = record["files"] if part is None else [record["files"][part - 1]]
        vectors = VectorIndex.load(index.folder / FIRST_STAGE_FOLDER, files, record["kind"], per_key)
        nprobe = nprobe or default_nprobe(record["nlist"])
        _add_missing(vectors, index, gallery, mode, prepare, record, part, parts)
    else:
        videos = np.arange(len(gallery)) if part is None else np.flatnonzero(gallery.keys % parts == part - 1)
        vectors = VectorIndex.empty("flat", gallery.dim, per_key,
                                    parts if part is None else 1)
        add(vectors, gallery, mode, prepare, videos)
    row_of_key = np.full(index.manifest["next_key"], -1, dtype=np.int64)
    row_of_key[gallery.keys] = np.arange(len(gallery))
    if mode == "pooled":
        return PooledSearch(vectors, row_of_key, nprobe)
    return TokenSearch(vectors, row_of_key, per_key, len(gallery), nprobe)
