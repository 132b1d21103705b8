"""Synthetic raw videos for the HAP-VR training demo: textured shapes moving over a textured background, written as
frame folders (`<root>/<split>/<video>/<000000>.jpg`, the layout scripts/extract_frames.py writes at 1 fps).

- `train/`: unlabeled training videos, each its own scene;
- `eval/`: a FIVR-style benchmark made of raw videos: per query, near duplicates (ND: the query's frames cropped,
  mirrored, recoloured, blurred, noisy and shifted by up to 3 frames; the first untouched but for light noise is an
  "easy duplicate"), duplicate-scene videos (DS: the same scene at another stretch of time, edited alike) and
  distractors (the queries' backgrounds with shapes of their own), with
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


def scene(rng: np.random.Generator, length: int, size: int, background: np.ndarray | None = None) -> np.ndarray:
    """(length, size, size, 3) uint8: 2-4 textured discs and squares bouncing over a textured background (a new one
    unless given)."""
    background = _texture(rng, size, 4) if background is None else background
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


def _copy(rng: np.random.Generator, frames: np.ndarray, noise: float, crop: float, shift: int,
          flip: bool = False) -> np.ndarray:
    """A near-duplicate edit: a temporal shift, an off-centre crop resized back, a mirror, a colour gain and
    offset, a blur, pixel noise."""
    frames = np.roll(frames, shift, axis=0)
    size = frames.shape[1]
    margin = int(round(crop * size))
    if margin:
        top, left = rng.integers(0, 2 * margin + 1, 2)
        frames = np.stack([cv2.resize(f[top:top + size - 2 * margin, left:left + size - 2 * margin], (size, size))
                           for f in frames])
    if flip:
        frames = frames[:, :, ::-1]
    if noise > 2:
        frames = np.stack([cv2.GaussianBlur(f, (3, 3), 1.0) for f in frames])
    gain, offset = rng.uniform(0.7, 1.3, 3), rng.uniform(-25, 25, 3)
    out = frames.astype(np.float32) * gain + offset + rng.normal(0, noise, frames.shape)
    return out.clip(0, 255).astype(np.uint8)


def _write(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def _benchmark(p: dict, root: Path) -> None:
    queries, annotation, easy, database, backgrounds = [], {}, [], [], []
    frames, size = p["frames"], p["size"]
    for i in range(p["num_queries"]):
        rng = np.random.default_rng([p["seed"], 1, i])
        backgrounds.append(_texture(rng, size, 4))
        timeline = scene(rng, 3 * frames, size, backgrounds[-1])
        query = f"q{i:02d}"
        _write(root / query, timeline[:frames])
        queries.append(query)
        annotation[query] = {"ND": [], "DS": []}
        for j in range(p["per_label"]):
            nd = f"{query}_nd{j}"
            edit = (2.0, 0.0, 0) if j == 0 else (12.0, 0.15, int(rng.integers(-3, 4)), True)
            _write(root / nd, _copy(rng, timeline[:frames], *edit))
            if j == 0:
                easy.append(nd)
            ds = f"{query}_ds{j}"
            start = int(rng.integers(frames // 2, 2 * frames))
            _write(root / ds, _copy(rng, timeline[start:start + frames], 12.0, 0.12, 0, bool(j % 2)))
            annotation[query]["ND"].append(nd)
            annotation[query]["DS"].append(ds)
            database += [nd, ds]
    for k in range(p["num_distractors"]):  # the queries' backgrounds with shapes of their own: not told by the scenery
        rng = np.random.default_rng([p["seed"], 2, k])
        _write(root / f"x{k:03d}", _copy(rng, scene(rng, frames, size, backgrounds[k % len(backgrounds)]), 6.0,
                                         0.05, 0))
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
