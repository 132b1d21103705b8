"""The on-disk search index: `manifest.json` and shards `shard-NNNNN.npz` in one folder.

manifest.json  format; root (the video folder, absolute); model {init_model (absolute path), sha256, flags (the
               model flags it is built with)}; input {max_frames, video_framerate, slice_framepos, video_backend,
               image_size, frame_sampler}; dim D; frames F; shards (file names); videos [{id, path, size,
               mtime_ns, shard, row}]; unreadable [{id, path, size, mtime_ns, reason}]
shard-*.npz    feats (n, F, D) float16 per-frame features, mask (n, F) uint8, pooled (n, D) float16 unit
               vectors, times (n, F) float32 seconds of each frame (-1 on padding)
An index answers only to the model (same sha256) and input flags it was built with. Updating it appends shards for
new and changed files and drops the entries of removed ones; a shard no entry points into is deleted. Shard rows of
dropped entries stay until then (no compaction yet). The manifest is rewritten, atomically, after every shard:
a run that is stopped keeps the shards written so far, and the next run encodes only the rest.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modules.engine.checkpoint import atomic_write
from modules.engine.errors import RunError
from modules.search.videos import VideoFile

FORMAT = "hbi-search-index-v1"
MANIFEST = "manifest.json"
ARRAYS = ("feats", "mask", "pooled", "times")


@dataclass
class Gallery:
    """Every indexed video in manifest order: ids, paths, feats (N, F, D) float32, mask (N, F) int64,
    pooled (N, D) float32, times (N, F) float32."""
    ids: list[str]
    paths: list[str]
    feats: torch.Tensor
    mask: torch.Tensor
    pooled: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def _differences(recorded: dict, wanted: dict) -> list[str]:
    return [f"{key} {recorded.get(key)!r} (now {wanted.get(key)!r})" for key in sorted(set(recorded) | set(wanted))
            if recorded.get(key) != wanted.get(key)]


class SearchIndex:
    """A manifest in memory and the folder it lives in; `save()` writes the manifest."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        self.folder, self.manifest = Path(folder), manifest

    @classmethod
    def new(cls, folder: str | Path, root: Path, model: dict, inputs: dict) -> "SearchIndex":
        return cls(Path(folder), {"format": FORMAT, "root": str(root), "model": model, "input": inputs,
                                  "dim": None, "frames": inputs["max_frames"], "shards": [], "videos": [],
                                  "unreadable": []})

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
            raise RunError(f"{path}: not a search index manifest of format {FORMAT}")
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

    def add_shard(self, files: list[VideoFile], arrays: dict[str, np.ndarray]) -> None:
        """Writes one shard of `files` (in row order) with `ARRAYS` and lists its videos."""
        number = 1 + max([int(name[6:11]) for name in self.manifest["shards"]], default=-1)
        name = f"shard-{number:05d}.npz"
        atomic_write(self.folder / name, lambda f: np.savez(f, **{k: arrays[k] for k in ARRAYS}))
        self.manifest["shards"].append(name)
        self.manifest["dim"] = int(arrays["feats"].shape[-1])
        self.manifest["videos"] += [{"id": f.id, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns,
                                     "shard": name, "row": row} for row, f in enumerate(files)]

    def add_unreadable(self, file: VideoFile, reason: str) -> None:
        self.manifest["unreadable"].append({"id": file.id, "path": file.path, "size": file.size,
                                            "mtime_ns": file.mtime_ns, "reason": reason})

    def save(self) -> None:
        """Sorts the entries by id, deletes shards no entry uses and writes the manifest (last, atomically)."""
        self.manifest["videos"].sort(key=lambda v: v["id"])
        self.manifest["unreadable"].sort(key=lambda v: v["id"])
        used = {v["shard"] for v in self.manifest["videos"]}
        unused = [name for name in self.manifest["shards"] if name not in used]
        self.manifest["shards"] = [name for name in self.manifest["shards"] if name in used]
        text = json.dumps(self.manifest, indent=1)
        atomic_write(self.folder / MANIFEST, lambda f: f.write(text.encode()))
        for name in unused:
            (self.folder / name).unlink(missing_ok=True)

    def gallery(self) -> Gallery:
        """The features of every indexed video, in manifest (id) order."""
        videos = self.manifest["videos"]
        if not videos:
            raise RunError(f"{self.folder / MANIFEST}: the index holds no readable video")
        shards = {}
        for name in self.manifest["shards"]:
            try:
                with np.load(self.folder / name) as data:
                    shards[name] = {k: data[k] for k in ARRAYS}
            except (OSError, ValueError, KeyError) as err:
                raise RunError(f"{self.folder / name}: unreadable index shard ({err}): re-run `search.py index`")

        def stack(key: str) -> np.ndarray:
            return np.stack([shards[v["shard"]][key][v["row"]] for v in videos])
        return Gallery([v["id"] for v in videos], [v["path"] for v in videos],
                       torch.from_numpy(stack("feats").astype(np.float32)),
                       torch.from_numpy(stack("mask").astype(np.int64)),
                       stack("pooled").astype(np.float32), stack("times"))
