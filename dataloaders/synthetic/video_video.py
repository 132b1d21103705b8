"""A synthetic FIVR-style video-to-video benchmark: region features in the published HDF5 layout and annotations in
the published pickle layout, small enough to score on a CPU in a second.

Every query starts an "incident" (a random latent of 9 regions x `dim`). A scene of the incident is the incident
latent mixed with a fresh one; its frames drift over time (a random walk), so crops taken at different times differ.
From the query's scene (A) the related videos are made by temporal crops, shifts, frame drops and noise:
- ND (near duplicate): nearly the query's crop of A, light noise; the first ND of each query is an untouched copy
  (noise only) and is listed as an "easy duplicate";
- DS (duplicate scene): a crop of A shifted by a third of its length, more noise and dropped frames;
- CS (complementary scene): the same moments seen from elsewhere, a scene that mixes A with a fresh one;
- IS (incident scene): another scene of the same incident, sharing only the incident latent;
distractors are scenes of incidents of their own. A mean-frame cosine similarity ranks ND > DS > CS > IS > distractors.
Every region vector is L2-normalised, float32.

Writes root/fivr_5k.hdf5 (one dataset per video id, shape (T, 9, dim)), root/fivr.pickle
(`{'5k': {'queries': [...], 'database': {...}}, 'annotation': {query: {'ND': [...], 'DS', 'CS', 'IS'}}}`, the layout
of the published FIVR pickle, without audio labels), root/fivr_easy_duplicates.txt and, last, root/synthetic_meta.json;
a call with the same parameters on a complete folder rewrites nothing. `load_benchmark("fivr5k", root)` scores it.
Usage: python -m dataloaders.synthetic.video_video --root data/demo_hapvr
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import h5py
import numpy as np

FORMAT_VERSION = 1
REGIONS = 9
LABELS = ("ND", "DS", "CS", "IS")
INCIDENT_SHARE = 0.7  # weight of the incident latent in each of its scenes: scenes of one incident correlate ~0.5
HDF5_FILE, PICKLE_FILE, EASY_FILE, META_FILE = ("fivr_5k.hdf5", "fivr.pickle", "fivr_easy_duplicates.txt",
                                                "synthetic_meta.json")
DEFAULTS = dict(num_queries=5, per_label=2, num_distractors=20, min_frames=20, max_frames=40, dim=512,
                source_frames=80, drift=0.1, seed=0)
# per label: (noise std, share of frames dropped, crop shift as a share of the crop length)
_PERTURB = {"ND": (0.3, 0.05, 0.05), "DS": (0.6, 0.15, 0.35), "CS": (0.6, 0.1, 0.1), "IS": (0.6, 0.1, 0.0)}


def _mix(rng: np.random.Generator, base: np.ndarray, weight: float) -> np.ndarray:
    """`weight` of `base` plus a fresh latent, variance kept at 1."""
    return weight * base + np.sqrt(1 - weight ** 2) * rng.standard_normal(base.shape)


def _timeline(rng: np.random.Generator, scene: np.ndarray, frames: int, drift: float) -> np.ndarray:
    """(frames, 9, dim): the scene plus a random walk over time."""
    steps = drift * rng.standard_normal((frames, *scene.shape))
    return scene[None] + np.cumsum(steps, axis=0)


def _crop(rng: np.random.Generator, timeline: np.ndarray, start: int, length: int, noise: float,
          drop: float) -> np.ndarray:
    """`length` frames from `start` of `timeline`: a crop longer by a `drop` share with that many random frames
    removed (so the video keeps `length` frames), noisy, every region L2-normalised; (length, 9, dim) float32."""
    dropped = int(round(drop * length))
    span = min(length + dropped, len(timeline))
    start = int(np.clip(start, 0, len(timeline) - span))
    kept = np.sort(rng.choice(span, size=length, replace=False)) if span > length else np.arange(length)
    frames = timeline[start + kept]
    frames = frames + noise * rng.standard_normal(frames.shape)
    return (frames / np.linalg.norm(frames, axis=-1, keepdims=True)).astype(np.float32)


def make_videos(params: dict) -> tuple[dict[str, np.ndarray], dict[str, dict[str, list[str]]], list[str], list[str]]:
    """(videos {id: (T, 9, dim)}, annotation {query: {label: ids}}, queries, easy duplicates); deterministic."""
    p = params
    shape = (REGIONS, p["dim"])
    if not 1 <= p["min_frames"] <= p["max_frames"] <= p["source_frames"]:
        raise ValueError(f"need 1 <= min_frames <= max_frames <= source_frames, got {p}")
    videos, annotation, queries, easy = {}, {}, [], []
    for i in range(p["num_queries"]):
        rng = np.random.default_rng([p["seed"], 1, i])
        incident = rng.standard_normal(shape)
        scene_a = _timeline(rng, _mix(rng, incident, INCIDENT_SHARE), p["source_frames"], p["drift"])
        length = int(rng.integers(p["min_frames"], p["max_frames"] + 1))
        start = int(rng.integers(0, p["source_frames"] - length + 1))
        query = f"syn_q{i:02d}"
        videos[query] = _crop(rng, scene_a, start, length, 0.3, 0.0)
        queries.append(query)
        annotation[query] = {label: [] for label in LABELS}
        for label in LABELS:
            noise, drop, shift = _PERTURB[label]
            for j in range(p["per_label"]):
                if label == "CS":  # the same moments from elsewhere: A's timeline mixed with a fresh one
                    source = 0.6 * scene_a + 0.8 * _timeline(rng, rng.standard_normal(shape), p["source_frames"],
                                                            p["drift"])
                elif label == "IS":  # another scene of the incident
                    source = _timeline(rng, _mix(rng, incident, INCIDENT_SHARE), p["source_frames"], p["drift"])
                else:
                    source = scene_a
                sign = 1 if rng.random() < 0.5 else -1
                offset = sign * int(round(shift * length)) + int(rng.integers(-1, 2))
                video_len = int(np.clip(length + rng.integers(-3, 4), p["min_frames"], p["max_frames"]))
                vid = f"{query}_{label.lower()}{j}"
                if label == "ND" and j == 0:  # the easy duplicate: the query's crop with fresh noise only
                    videos[vid] = _crop(rng, scene_a, start, length, 0.3, 0.0)
                    easy.append(vid)
                else:
                    videos[vid] = _crop(rng, source, start + offset, video_len, noise, drop)
                annotation[query][label].append(vid)
    for k in range(p["num_distractors"]):
        rng = np.random.default_rng([p["seed"], 2, k])
        scene = _timeline(rng, rng.standard_normal(shape), p["source_frames"], p["drift"])
        length = int(rng.integers(p["min_frames"], p["max_frames"] + 1))
        videos[f"syn_x{k:03d}"] = _crop(rng, scene, int(rng.integers(0, p["source_frames"] - length + 1)), length,
                                        0.3, 0.1)
    return videos, annotation, queries, easy


def _is_complete(root: Path, meta: dict) -> bool:
    try:
        stored = json.loads((root / META_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return stored == meta and all((root / name).is_file() for name in (HDF5_FILE, PICKLE_FILE, EASY_FILE))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def generate_synthetic_benchmark(out_dir: str | Path, seed: int = 0, **options) -> dict:
    """Write the synthetic benchmark under `out_dir` (see the module docstring); returns its metadata, the paths,
    the query and database ids, and whether a complete folder was reused. `options`: any other key of DEFAULTS."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    params = {**DEFAULTS, **options, "seed": seed}
    root = Path(out_dir)
    meta = {"version": FORMAT_VERSION, **params}
    videos, annotation, queries, easy = make_videos(params)
    database = sorted(set(videos) - set(queries))
    info = {**meta, "root": str(root), "hdf5": str(root / HDF5_FILE), "queries": queries, "database": database}
    if _is_complete(root, meta):
        return {**info, "reused": True}
    root.mkdir(parents=True, exist_ok=True)
    (root / META_FILE).unlink(missing_ok=True)  # marks the folder incomplete until the end

    def write_hdf5(path: Path) -> None:
        with h5py.File(path, "w") as f:
            for vid, feats in videos.items():
                f.create_dataset(vid, data=feats)

    def write_pickle(path: Path) -> None:
        dataset = {"5k": {"queries": list(queries), "database": set(database)}, "annotation": annotation}
        path.write_bytes(pickle.dumps(dataset, protocol=4))

    _atomic(root / HDF5_FILE, write_hdf5)
    _atomic(root / PICKLE_FILE, write_pickle)
    _atomic(root / EASY_FILE, lambda path: path.write_text("".join(f"{vid}\n" for vid in easy)))
    (root / META_FILE).write_text(json.dumps(meta, indent=1))
    return {**info, "reused": False}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic FIVR-style benchmark (HDF5 features + pickle).")
    parser.add_argument("--root", required=True, help="output folder (annotations directory and --dataset_hdf5)")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    info = generate_synthetic_benchmark(args.pop("root"), **args)
    state = "already complete" if info["reused"] else "written"
    print(f"synthetic HAP-VR benchmark {state} at {info['root']}: {len(info['queries'])} queries, "
          f"{len(info['database'])} database videos, features {info['hdf5']}")


if __name__ == "__main__":
    main()
