"""Synthetic raw videos for the HAP-VR training demo: textured shapes moving over a textured background, written as
frame folders (`<root>/<split>/<video>/<000000>.jpg`, the layout scripts/extract_frames.py writes at 1 fps).

- `train/`: unlabeled training videos, each its own scene;
- `eval/`: a FIVR-style benchmark made of raw videos: per query, near duplicates (ND: the query's frames, slightly
  cropped, recoloured and shifted by a frame or two; the first untouched but for noise is an "easy duplicate"),
  duplicate-scene videos (DS: the same scene, another stretch of time) and distractors (scenes of their own), with
  `fivr.pickle` (the published layout, split '5k') and `fivr_easy_duplicates.txt` beside the frame folders.
A call with the same parameters on a complete folder rewrites nothing.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np

DEFAULTS = dict(num_train=32, num_queries=4, per_label=2, num_distractors=12, frames=16, size=64, seed=0)
META_FILE = "moving_shapes_meta.json"


def _texture(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """(size, size, 3) float in [0, 1]: smooth colour noise (upsampled random grid)."""
    grid = rng.random((scale, scale, 3)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def scene(rng: np.random.Generator, length: int, size: int) -> np.ndarray:
    """(length, size, size, 3) uint8: 2-4 textured discs and squares bouncing over a textured background."""
    background = _texture(rng, size, 4)
    shapes = []
    for _ in range(int(rng.integers(2, 5))):
        radius = int(rng.integers(size // 10, size // 4))
        shapes.append(dict(texture=_texture(rng, size, 6), radius=radius, square=bool(rng.random() < 0.5),
                           pos=rng.uniform(radius, size - radius, 2), vel=rng.uniform(-3, 3, 2)))
    yy, xx = np.mgrid[:size, :size]
    frames = np.empty((length, size, size, 3), np.uint8)
    for t in range(length):
        frame = background.copy()
        for s in shapes:
            dy, dx = yy - s["pos"][0], xx - s["pos"][1]
            inside = (np.maximum(abs(dy), abs(dx)) if s["square"] else np.hypot(dy, dx)) < s["radius"]
            frame[inside] = s["texture"][inside]
            s["pos"] += s["vel"]
            for axis in range(2):  # bounce off the borders
                if not s["radius"] <= s["pos"][axis] <= size - s["radius"]:
                    s["vel"][axis] *= -1
        frames[t] = (frame * 255).astype(np.uint8)
    return frames


def _copy(rng: np.random.Generator, frames: np.ndarray, noise: float, crop: float, shift: int) -> np.ndarray:
    """A near-duplicate edit: a temporal shift, a central crop resized back, a colour gain, pixel noise."""
    frames = np.roll(frames, shift, axis=0)
    size = frames.shape[1]
    margin = int(round(crop * size))
    if margin:
        frames = np.stack([cv2.resize(f[margin:size - margin, margin:size - margin], (size, size)) for f in frames])
    gain = rng.uniform(0.85, 1.15, 3)
    out = frames.astype(np.float32) * gain + rng.normal(0, noise, frames.shape)
    return out.clip(0, 255).astype(np.uint8)


def _write(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def _benchmark(p: dict, root: Path) -> None:
    queries, annotation, easy, database = [], {}, [], []
    frames, size = p["frames"], p["size"]
    for i in range(p["num_queries"]):
        rng = np.random.default_rng([p["seed"], 1, i])
        timeline = scene(rng, 3 * frames, size)
        query = f"q{i:02d}"
        _write(root / query, timeline[:frames])
        queries.append(query)
        annotation[query] = {"ND": [], "DS": []}
        for j in range(p["per_label"]):
            nd = f"{query}_nd{j}"
            edit = (2.0, 0.0, 0) if j == 0 else (6.0, 0.08, int(rng.integers(-2, 3)))
            _write(root / nd, _copy(rng, timeline[:frames], *edit))
            if j == 0:
                easy.append(nd)
            ds = f"{query}_ds{j}"
            start = int(rng.integers(frames // 2, 2 * frames))
            _write(root / ds, _copy(rng, timeline[start:start + frames], 6.0, 0.05, 0))
            annotation[query]["ND"].append(nd)
            annotation[query]["DS"].append(ds)
            database += [nd, ds]
    for k in range(p["num_distractors"]):
        rng = np.random.default_rng([p["seed"], 2, k])
        _write(root / f"x{k:03d}", scene(rng, frames, size))
        database.append(f"x{k:03d}")
    dataset = {"5k": {"queries": queries, "database": set(database) | {queries[0]}}, "annotation": annotation}
    (root / "fivr.pickle").write_bytes(pickle.dumps(dataset, protocol=4))
    (root / "fivr_easy_duplicates.txt").write_text("".join(f"{v}\n" for v in easy))


def generate_moving_shapes(root: str | Path, **options) -> dict:
    """Write the demo's `train/` and `eval/` folders under `root` (see the module docstring); returns the
    parameters and whether a complete folder was reused."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p, root = {**DEFAULTS, **options}, Path(root)
    meta = root / META_FILE
    if meta.is_file() and json.loads(meta.read_text()) == p:
        return {**p, "reused": True}
    for split in ("train", "eval"):
        shutil.rmtree(root / split, ignore_errors=True)
    meta.unlink(missing_ok=True)  # the folder is incomplete until the end
    for v in range(p["num_train"]):
        _write(root / "train" / f"t{v:03d}", scene(np.random.default_rng([p["seed"], 0, v]), p["frames"], p["size"]))
    _benchmark(p, root / "eval")
    meta.write_text(json.dumps(p))
    return {**p, "reused": False}
