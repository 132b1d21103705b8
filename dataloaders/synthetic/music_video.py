"""Synthetic music-video pairs in the published BPVMR layout, small enough to learn from scratch on a CPU.

Each pair has a latent (a unit vector of `latent_dim` values, a second one for its slow drift over the clip), a
tempo and a phase. Music and video features are fixed random projections (shared by every clip) of the latent
drifting over the clip, plus per-frame noise, at different frame rates: video at `video_fps`, music at
`music_fps`, so the two tracks of one pair have different lengths. Beat tracks are 0/1 indicators: music beats
on the pair's tempo grid (`music_beat_fps`), video beats at the same times with jitter, a few dropped and a few
extra (`video_beat_fps`). Clip durations vary (`min_seconds`..`max_seconds`).

The features are narrow by default (`video_dim` 16, `music_dim` 24, against the published 512 and 768) so that
the default 400 / 60 / 100 pairs take about 14 MB (a third of it the .pt containers of the 2240 files); the
widths are recorded in demo_meta.json, and a model (and MusicVideoDataset's video_dim / music_dim) must be
built with them. Pass video_dim=512, music_dim=768 for the published widths (about 20 times the size).

Writes root/{video_feature,music_feature,video_beat,music_beat}/<id>.pt, root/{train,val,test}.txt and, last,
root/demo_meta.json; a call with the same parameters on a complete folder rewrites nothing.
Usage: python -m dataloaders.synthetic.music_video --root data/demo_music_video
(`python -m dataloaders.synthetic` writes the text-video demo clips, as before.)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
FOLDERS = ("video_feature", "music_feature", "video_beat", "music_beat")
DEFAULTS = dict(num_train=400, num_val=60, num_test=100, video_dim=16, music_dim=24, latent_dim=8, video_fps=30.0,
                music_fps=20.0, video_beat_fps=30.0, music_beat_fps=25.0, min_seconds=2.0, max_seconds=6.5,
                noise=2.0, seed=0)


def clip_ids(num_train: int, num_val: int, num_test: int) -> dict[str, list[str]]:
    counts = dict(zip(SPLITS, (num_train, num_val, num_test)))
    out, start = {}, 0
    for split, count in counts.items():
        out[split] = [f"mv{i:05d}" for i in range(start, start + count)]
        start += count
    return out


def _beat_track(times: np.ndarray, seconds: float, fps: float) -> torch.Tensor:
    length = max(int(round(seconds * fps)), 1)
    track = torch.zeros(length)
    frames = np.clip(np.floor(times * fps).astype(np.int64), 0, length - 1)
    track[torch.from_numpy(frames)] = 1.0
    return track


def make_pair(rng: np.random.Generator, proj_video: np.ndarray, proj_music: np.ndarray, p: dict
              ) -> dict[str, dict]:
    """The four file dicts of one pair (see the module docstring)."""
    latent_dim = proj_video.shape[0]
    z0, z1 = rng.standard_normal((2, latent_dim))
    z0, z1 = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
    seconds = rng.uniform(p["min_seconds"], p["max_seconds"])
    period = rng.uniform(0.35, 0.9)  # seconds per beat
    phase = rng.uniform(0, period)

    def feature(fps: float, proj: np.ndarray) -> torch.Tensor:
        frames = max(int(round(seconds * fps)), 1)
        s = (np.arange(frames) + 0.5) / frames  # time fraction of each frame
        latent = np.outer(np.cos(np.pi * s), z0) + np.outer(np.sin(np.pi * s), z1)  # drifts from z0 to z1
        x = latent @ proj + p["noise"] * rng.standard_normal((frames, proj.shape[1]))
        return torch.from_numpy(x.astype(np.float32))

    beats = np.arange(phase, seconds, period)
    video_beats = beats + rng.normal(0, 0.03, beats.shape)
    video_beats = video_beats[rng.random(beats.shape) > 0.1]  # a few dropped
    extra = rng.uniform(0, seconds, rng.integers(0, 3))  # a few spurious
    video_beats = np.clip(np.concatenate([video_beats, extra]), 0, seconds)
    return {
        "video_feature": {"fps": p["video_fps"], "video_clip_feature": feature(p["video_fps"], proj_video)},
        "music_feature": {"fps": p["music_fps"], "music_bert_feature": feature(p["music_fps"], proj_music)},
        "video_beat": {"fps": p["video_beat_fps"],
                       "video_beat": _beat_track(video_beats, seconds, p["video_beat_fps"])},
        "music_beat": {"fps": p["music_beat_fps"], "music_beat": _beat_track(beats, seconds, p["music_beat_fps"])},
    }


def _is_complete(root: Path, meta: dict, ids: dict[str, list[str]]) -> bool:
    try:
        stored = json.loads((root / "demo_meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return stored == meta and all((root / folder / f"{i}.pt").is_file()
                                  for split in ids.values() for i in split for folder in FOLDERS)


def generate_demo_music_video(root: str | Path, num_train: int = 400, num_val: int = 60, num_test: int = 100,
                              seed: int = 0, **options) -> dict:
    """Write the synthetic set under `root` (deterministic from the parameters); returns its metadata, the
    root and whether a complete folder was reused. `options`: any other key of DEFAULTS (widths, frame rates,
    durations, noise, latent_dim)."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    params = {**DEFAULTS, **options, "num_train": num_train, "num_val": num_val, "num_test": num_test,
              "seed": seed}
    if min(num_train, num_val, num_test) < 0 or not 0 < params["min_seconds"] <= params["max_seconds"]:
        raise ValueError(f"clip counts must be >= 0 and 0 < min_seconds <= max_seconds, got {params}")
    root = Path(root)
    meta = {"version": FORMAT_VERSION, **params}
    ids = clip_ids(num_train, num_val, num_test)
    if _is_complete(root, meta, ids):
        return {**meta, "root": str(root), "reused": True}
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "demo_meta.json").unlink(missing_ok=True)  # marks the folder incomplete until the end
    rng = np.random.default_rng([seed, 0])
    latent_dim = params["latent_dim"]
    proj_video = rng.standard_normal((latent_dim, params["video_dim"])) / np.sqrt(latent_dim) * 2
    proj_music = rng.standard_normal((latent_dim, params["music_dim"])) / np.sqrt(latent_dim) * 2
    for i, clip_id in enumerate(i for split in ids.values() for i in split):
        files = make_pair(np.random.default_rng([seed, 1, i]), proj_video, proj_music, params)
        for folder, data in files.items():
            torch.save(data, root / folder / f"{clip_id}.pt")
    for split, names in ids.items():
        (root / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
    (root / "demo_meta.json").write_text(json.dumps(meta, indent=1))
    return {**meta, "root": str(root), "reused": False}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write synthetic music-video pairs in the BPVMR layout.")
    parser.add_argument("--root", required=True, help="output folder (the --videos_dir of the run)")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    info = generate_demo_music_video(args.pop("root"), **args)
    state = "already complete" if info["reused"] else "written"
    print(f"music-video demo data {state} at {info['root']}: {info['num_train']} train / {info['num_val']} val / "
          f"{info['num_test']} test pairs, video_dim {info['video_dim']}, music_dim {info['music_dim']}")


if __name__ == "__main__":
    main()
