"""The on-disk search index: `manifest.json` and shard folders `shard-NNNNN/` in one folder.

manifest.json  format; root (the video folder, absolute); model {init_model (absolute path), sha256, flags (the
               model flags it is built with), rate}; input {max_frames, video_framerate, slice_framepos,
               video_backend, image_size, frame_sampler}; next_key; shards [{name, rows}];
               videos [{id, key, path, size, mtime_ns, shard, row}]; unreadable [{id, path, size, mtime_ns, reason}];
               first_stage (modules/search/first_stage.py: the trained faiss indexes, if any)
shard-*/       one `.npy` per array, read memory-mapped: feats (n, F, D) float16 per-frame features, mask (n, F)
               uint8, pooled (n, D) float16 unit vectors, times (n, F) float32 seconds of each frame (-1 on padding),
               weights (n, F) float32 the entity head's frame weights
A video's `key` is its number for life in this index (faiss ids are made of it, see first_stage.py): kept when its
shard is compacted, a new one when the file changes. An index answers only to the model (same sha256) and input
flags it was built with. Updating it appends shards for new and changed files and drops the entries of removed
ones; `compact` rewrites shards that are at least half dropped rows; a shard no entry points into is deleted. The
manifest is rewritten, atomically, after every shard: a run that is stopped keeps the shards written so far.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from modules.engine.checkpoint import atomic_write
from modules.engine.errors import RunError
from modules.search.videos import VideoFile

FORMAT = "hbi-search-index-v2"
MANIFEST = "manifest.json"
ARRAYS = ("feats", "mask", "pooled", "times", "weights")
SHARD_PREFIX = "shard-"


def _differences(recorded: dict, wanted: dict) -> list[str]:
    return [f"{key} {recorded.get(key)!r} (now {wanted.get(key)!r})" for key in sorted(set(recorded) | set(wanted))
            if recorded.get(key) != wanted.get(key)]


def _read_shard(folder: Path, name: str) -> dict[str, np.ndarray]:
    """The arrays of one shard, memory-mapped (nothing is read until used)."""
    try:
        return {k: np.load(folder / name / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
    except (OSError, ValueError) as err:
        raise RunError(f"{folder / name}: unreadable index shard ({err}): re-run `search.py index`") from None


class Gallery:
    """The indexed videos in manifest (id) order, their features read on demand from the memory-mapped shards:
    ids, paths, keys (N,) int64; `take(rows)` gives what the re-rank scores."""

    def __init__(self, folder: Path, videos: list[dict], shard_names: list[str]) -> None:
        self.ids = [v["id"] for v in videos]
        self.paths = [v["path"] for v in videos]
        self.keys = np.array([v["key"] for v in videos], dtype=np.int64)
        number = {name: i for i, name in enumerate(shard_names)}
        self.shard = np.array([number[v["shard"]] for v in videos], dtype=np.int64)
        self.row = np.array([v["row"] for v in videos], dtype=np.int64)
        self.shards = [_read_shard(folder, name) for name in shard_names]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        """D of the stored features (and of the first stages' vectors)."""
        return int(self.shards[0]["feats"].shape[-1])

    @property
    def frames(self) -> int:
        """F, the frame slots of every video."""
        return int(self.shards[0]["mask"].shape[1])

    def array(self, key: str, rows: np.ndarray) -> np.ndarray:
        """`key` of the gallery rows `rows`, in that order (only those rows are read from disk)."""
        rows = np.asarray(rows, dtype=np.int64)
        first = self.shards[0][key]
        out = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
        shard = self.shard[rows]
        for s in np.unique(shard):
            where = np.flatnonzero(shard == s)
            out[where] = self.shards[s][key][self.row[rows[where]]]
        return out

    def take(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """feats (n, F, D) float32, mask (n, F) int64 and times (n, F) float32 of gallery rows `rows`."""
        return (torch.from_numpy(self.array("feats", rows).astype(np.float32)),
                torch.from_numpy(self.array("mask", rows).astype(np.int64)), self.array("times", rows))

    def weights(self, rows: np.ndarray) -> torch.Tensor:
        """(n, F) float32 entity-head frame weights of gallery rows `rows`."""
        return torch.from_numpy(self.array("weights", rows))

    def chunks(self, size: int):
        """(rows, feats (n, F, D) float32, mask (n, F) int64) over the whole gallery, `size` rows at a time."""
        for start in range(0, len(self), size):
            rows = np.arange(start, min(start + size, len(self)))
            feats, mask, _ = self.take(rows)
            yield rows, feats, mask


class SearchIndex:
    """A manifest in memory and the folder it lives in; `save()` writes the manifest."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        self.folder, self.manifest = Path(folder), manifest

    @classmethod
    def new(cls, folder: str | Path, root: Path, model: dict, inputs: dict) -> "SearchIndex":
        return cls(Path(folder), {"format": FORMAT, "root": str(root), "model": model, "input": inputs,
                                  "next_key": 0, "shards": [],
                                  "videos": [], "unreadable": [], "first_stage": {}})

    @classmethod
    def load(cls, folder: str | Path) -> "SearchIndex":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise RunError(f"{path}: no search index here (build one with `search.py index`)")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunError(f"{path}: unreadable index manifest ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise RunError(f"{path}: not a search index of format {FORMAT} (found {found!r}): build a new one with "
                           "`search.py index` in an empty folder")
        return cls(Path(folder), manifest)

    def check_matches(self, root: Path, model: dict, inputs: dict) -> None:
        """RunError unless this index was built from `root` with the same model file and input flags."""
        where = self.folder / MANIFEST
        if self.manifest["root"] != str(root):
            raise RunError(f"{where}: index of {self.manifest['root']}, not of --videos {root}: use another --index")
        recorded = self.manifest["model"]
        if recorded["sha256"] != model["sha256"] or recorded["flags"] != model["flags"]:
            changed = _differences({"sha256": recorded["sha256"], **recorded["flags"]},
                                   {"sha256": model["sha256"], **model["flags"]})
            raise RunError(f"{where}: built with another model ({'; '.join(changed)}): use another --index")
        if self.manifest["input"] != inputs:
            changed = _differences(self.manifest["input"], inputs)
            raise RunError(f"{where}: built with other input flags ({'; '.join(changed)}): use another --index")

    def plan(self, files: list[VideoFile]) -> tuple[list[VideoFile], list[str], list[str], list[str]]:
        """(files to encode: new or changed; ids unchanged; ids changed; ids removed from the folder). A file that
        was unreadable and is unchanged stays listed as unreadable without another try; the entries of changed and
        removed files are dropped here."""
        indexed = {v["id"]: v for v in self.manifest["videos"]}
        failed = {v["id"]: v for v in self.manifest["unreadable"]}
        present = {f.id for f in files}
        todo, kept, changed = [], [], []
        for f in files:
            known = indexed.get(f.id) or failed.get(f.id)
            if known is not None and (known["size"], known["mtime_ns"]) == f.stamp:
                kept.append(f.id)
                continue
            todo.append(f)
            if known is not None:
                changed.append(f.id)
        redo = {f.id for f in todo}
        removed = [i for i in (*indexed, *failed) if i not in present]
        self.manifest["videos"] = [v for v in self.manifest["videos"] if v["id"] in present and v["id"] not in redo]
        self.manifest["unreadable"] = [v for v in self.manifest["unreadable"]
                                       if v["id"] in present and v["id"] not in redo]
        return todo, kept, changed, removed

    def _write_shard(self, arrays: dict[str, np.ndarray]) -> str:
        """Writes the arrays as a new shard folder; returns its name (listed by the caller)."""
        names = [s["name"] for s in self.manifest["shards"]]
        number = 1 + max([int(name[len(SHARD_PREFIX):]) for name in names], default=-1)
        name = f"{SHARD_PREFIX}{number:05d}"
        for key in ARRAYS:
            atomic_write(self.folder / name / f"{key}.npy", lambda f, a=arrays[key]: np.save(f, a))
        self.manifest["shards"].append({"name": name, "rows": int(len(arrays["feats"]))})
        return name

    def add_shard(self, files: list[VideoFile], arrays: dict[str, np.ndarray]) -> None:
        """Writes one shard of `files` (in row order) with `ARRAYS` and lists its videos, each with a new key."""
        name = self._write_shard(arrays)
        first = self.manifest["next_key"]
        self.manifest["next_key"] = first + len(files)
        self.manifest["videos"] += [{"id": f.id, "key": first + row, "path": f.path, "size": f.size,
                                     "mtime_ns": f.mtime_ns, "shard": name, "row": row}
                                    for row, f in enumerate(files)]

    def add_unreadable(self, file: VideoFile, reason: str) -> None:
        self.manifest["unreadable"].append({"id": file.id, "path": file.path, "size": file.size,
                                            "mtime_ns": file.mtime_ns, "reason": reason})

    def compact(self, shard_size: int) -> int:
        """Rewrites the live rows of every shard that is at least half dropped rows into new shards of up to
        `shard_size` rows (keys kept); returns the number of rows moved. The old shards go at `save()`."""
        live: dict[str, list[dict]] = {}
        for v in self.manifest["videos"]:
            live.setdefault(v["shard"], []).append(v)
        sparse = [s["name"] for s in self.manifest["shards"] if 0 < len(live.get(s["name"], ())) <= s["rows"] // 2]
        moving = sorted((v for name in sparse for v in live[name]), key=lambda v: v["key"])
        for start in range(0, len(moving), shard_size):
            part = moving[start:start + shard_size]
            gallery = Gallery(self.folder, part, sorted({v["shard"] for v in part}))
            rows = np.arange(len(part))
            name = self._write_shard({key: gallery.array(key, rows) for key in ARRAYS})
            for row, v in enumerate(part):
                v["shard"], v["row"] = name, row
        return len(moving)

    def save(self) -> None:
        """Sorts the entries by id, writes the manifest (atomically), then deletes the shard folders no entry uses
        and any left by a run stopped while writing one."""
        self.manifest["videos"].sort(key=lambda v: v["id"])
        self.manifest["unreadable"].sort(key=lambda v: v["id"])
        used = {v["shard"] for v in self.manifest["videos"]}
        self.manifest["shards"] = [s for s in self.manifest["shards"] if s["name"] in used]
        text = json.dumps(self.manifest, indent=1)
        atomic_write(self.folder / MANIFEST, lambda f: f.write(text.encode()))
        for path in self.folder.glob(f"{SHARD_PREFIX}*"):
            if path.is_dir() and path.name not in used:
                shutil.rmtree(path)

    def gallery(self) -> Gallery:
        """The indexed videos, in manifest (id) order."""
        if not self.manifest["videos"]:
            raise RunError(f"{self.folder / MANIFEST}: the index holds no readable video")
        return Gallery(self.folder, self.manifest["videos"], [s["name"] for s in self.manifest["shards"]])
