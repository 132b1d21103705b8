"""Synthetic MSR-VTT-format demo data: one coloured shape moving across a plain background per clip.

6 colours x 3 shapes x 4 motions = 72 captionable combinations. Training clips cycle through all
combinations with random start position, size, speed and background shade, each with several paraphrased
captions; test clips are distinct combinations, so no two test clips share a caption.
Writes root/MSRVTT_data.json, root/MSRVTT_train.9k.csv, root/MSRVTT_JSFUSION_test.csv, root/videos/*.mp4
and, last, root/demo_meta.json; a call with the same parameters on a complete folder rewrites nothing.
Usage: python -m dataloaders.synthetic.clips --root data/demo
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dataloaders.errors import DataError
from dataloaders.video.reader import BACKENDS, decord, read_frames

FORMAT_VERSION = 2
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240),
           "yellow": (240, 220, 40), "purple": (160, 60, 200), "orange": (250, 140, 20)}  # RGB
SHAPES = ("circle", "square", "triangle")
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy) in image coordinates
COMBOS = list(itertools.product(COLOURS, SHAPES, MOTIONS))
_PHRASES = {"left": ("moves to the left", "going left", "moves left"),
            "right": ("moves to the right", "going right", "moves right"),
            "up": ("moves upward", "going up", "moves up"),
            "down": ("moves downward", "going down", "moves down")}


def captions_for(colour: str, shape: str, motion: str) -> list[str]:
    """Paraphrases of one combination; the first is the canonical (test) caption."""
    a, b, c = _PHRASES[motion]
    article = "an" if colour[0] in "aeiou" else "a"
    return [f"{article} {colour} {shape} {a}", f"{colour} {shape} {b}", f"the {shape} is {colour} and {c}",
            f"a {shape} in {colour} {a}"]


def render_clip(colour: str, shape: str, motion: str, frames: int, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """uint8 (frames, size, size, 3) BGR frames of one shape moving in a straight line, with a fading trail."""
    radius = rng.uniform(0.09, 0.16) * size
    travel = rng.uniform(0.4, 1.0) * (size - 2 * radius - 2)  # total distance, kept inside the frame
    dx, dy = MOTIONS[motion]
    lo, hi = radius + 1, size - radius - 1
    # Start far enough from the edge the shape moves towards; the other coordinate is free.
    along = rng.uniform(lo + travel, hi) if (dx or dy) < 0 else rng.uniform(lo, hi - travel)
    across = rng.uniform(lo, hi)
    x0, y0 = (along, across) if dx else (across, along)
    shade = int(rng.integers(20, 110))
    bgr = tuple(int(v) for v in COLOURS[colour][::-1])
    video = np.full((frames, size, size, 3), shade, dtype=np.uint8)
    step = travel / max(frames - 1, 1)
    gap = 0.7 * radius  # spacing of the fading trail, so one frame alone shows the direction of motion
    for t in range(frames):
        cx, cy = x0 + dx * step * t, y0 + dy * step * t
        for ghost, alpha in ((3, 0.2), (2, 0.35), (1, 0.55), (0, 1.0)):
            tint = tuple(int(round(alpha * c + (1 - alpha) * shade)) for c in bgr)
            _draw_shape(video[t], shape, cx - dx * gap * ghost, cy - dy * gap * ghost, radius, tint)
    return video


def _draw_shape(image: np.ndarray, shape: str, cx: float, cy: float, radius: float, bgr: tuple) -> None:
    if shape == "circle":
        cv2.circle(image, (round(cx), round(cy)), round(radius), bgr, -1, cv2.LINE_AA)
    elif shape == "square":
        h = radius * 0.85
        cv2.rectangle(image, (round(cx - h), round(cy - h)), (round(cx + h), round(cy + h)), bgr, -1)
    else:
        pts = np.array([[cx, cy - radius], [cx - radius * 0.95, cy + radius * 0.8],
                        [cx + radius * 0.95, cy + radius * 0.8]]).round().astype(np.int32)
        cv2.fillPoly(image, [pts], bgr, cv2.LINE_AA)


def _write_mp4(path: Path, video: np.ndarray, fps: int) -> None:
    size = video.shape[2], video.shape[1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise DataError(f"{path}: OpenCV cannot write mp4v video")
    for frame in video:
        writer.write(frame)
    writer.release()


def clip_plan(num_train: int, num_test: int, seed: int) -> list[tuple[str, str, str, str]]:
    """(video_id, split, ...combo) for every clip: training cycles through shuffled combos, test ones are distinct."""
    rng = np.random.default_rng([seed, 0])
    cycles = math.ceil(num_train / len(COMBOS))
    train = np.concatenate([rng.permutation(len(COMBOS)) for _ in range(cycles)])[:num_train]
    test = rng.choice(len(COMBOS), size=num_test, replace=False)
    splits = ["train"] * num_train + ["test"] * num_test
    return [(f"video{i}", split, *COMBOS[c]) for i, (split, c) in enumerate(zip(splits, [*train, *test]))]


def _is_complete(root: Path, meta: dict) -> bool:
    meta_path = root / "demo_meta.json"
    if not meta_path.is_file():
        return False
    try:
        stored = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    count = meta["num_train"] + meta["num_test"]
    return stored == meta and all((root / "videos" / f"video{i}.mp4").is_file() for i in range(count))


def _verify(path: Path, frames: int, fps: int) -> None:
    """Both decoders must read a written clip back in full (catches a broken OpenCV / codec install)."""
    for backend in BACKENDS:
        if backend == "decord" and decord is None:
            continue
        got = read_frames(str(path), framerate=fps, max_frames=frames, backend=backend)
        if len(got) != frames:
            raise DataError(f"{path}: {backend} read {len(got)} frames back, expected {frames}")


def generate_demo_data(root: str | Path, num_train: int = 600, num_test: int = 60, frames: int = 24,
                       fps: int = 8, size: int = 64, seed: int = 0) -> dict:
    """Write the demo set under `root` (deterministic from `seed`); returns its metadata and whether it was reused."""
    if num_test > len(COMBOS):
        raise DataError(f"num_test={num_test} exceeds the {len(COMBOS)} distinct colour/shape/motion combinations")
    root = Path(root)
    meta = {"version": FORMAT_VERSION, "num_train": num_train, "num_test": num_test, "frames": frames,
            "fps": fps, "size": size, "seed": seed}
    if _is_complete(root, meta):
        return {**meta, "root": str(root), "reused": True}
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "demo_meta.json").unlink(missing_ok=True)  # marks the folder incomplete until the end
    plan = clip_plan(num_train, num_test, seed)
    videos, sentences, test_rows = [], [], []
    for i, (vid, split, colour, shape, motion) in enumerate(tqdm(plan, desc="demo clips", unit="clip")):
        video = render_clip(colour, shape, motion, frames, size, np.random.default_rng([seed, 1, i]))
        _write_mp4(root / "videos" / f"{vid}.mp4", video, fps)
        texts = captions_for(colour, shape, motion)
        videos.append({"video_id": vid, "split": split, "category": 0, "id": i})
        sentences += [{"caption": t, "video_id": vid, "sen_id": len(sentences) + k} for k, t in enumerate(texts)]
        if split == "test":
            test_rows.append([f"ret{len(test_rows)}", f"msr{i}", vid, texts[0]])
    if plan:
        _verify(root / "videos" / f"{plan[-1][0]}.mp4", frames, fps)
    (root / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    with open(root / "MSRVTT_train.9k.csv", "w", newline="") as f:
        csv.writer(f).writerows([["video_id"], *([v[0]] for v in plan if v[1] == "train")])
    with open(root / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
        csv.writer(f).writerows([["key", "vid_key", "video_id", "sentence"], *test_rows])
    (root / "demo_meta.json").write_text(json.dumps(meta))
    return {**meta, "root": str(root), "reused": False}


def clip_parser(description: str) -> argparse.ArgumentParser:
    """The demo clip flags (`generate_demo_data`'s parameters), shared with the synthetic questions' CLI."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", required=True, help="output folder, e.g. data/demo")
    parser.add_argument("--num_train", type=int, default=600)
    parser.add_argument("--num_test", type=int, default=60)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> None:
    args = clip_parser("Write the synthetic MSR-VTT-format demo data set.").parse_args()
    info = generate_demo_data(args.root, args.num_train, args.num_test, args.frames, args.fps, args.size, args.seed)
    state = "already complete" if info["reused"] else "written"
    print(f"demo data {state} at {info['root']}: {info['num_train']} train / {info['num_test']} test clips")


if __name__ == "__main__":
    main()
