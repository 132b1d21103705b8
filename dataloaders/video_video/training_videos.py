"""HAP-VR's unlabeled training set: a random window of frames at 1 fps from every video, as uint8 (T, 3, H, W).

The set is one or more folders (a list, or the reference's comma-separated --dataset_path) of either
- frame folders written by scripts/extract_frames.py (or the reference's tools/extract_frames.py), every folder that
  directly holds JPEGs being one video, or
- videos, decoded straight from the file with decord (OpenCV when decord is missing), so extraction is optional.
  The 1 fps frames are the ones the shipped ffmpeg's fps filter keeps (`one_fps_positions`), so both sources give
  the same frames, except that of a video shorter than 0.5 s ffmpeg keeps none and this keeps the last.
Videos are sorted by path and the first `percentage` of them kept (the reference's --percentage).

A sample is `window` consecutive 1 fps frames from a uniformly drawn start, a shorter video looping
(`temporal.window_positions`); the reference's SSLGenerator loads 2 * window_sz frames (`pairs.LOAD_FACTOR`), from
which each view crops its own window_sz. Every frame is resized with OpenCV's bicubic so its short side is `resize`
(256, the reference's utils.load_frames; None keeps the size); there is no centre crop: the views' random resized
crops make the 224 x 224 frames. The draw depends on (seed, epoch, index) only, not on rank or worker.
An unreadable video or frame raises DataError naming the file; with skip_bad_videos, the sample is replaced by the
first readable video in an order drawn from (seed, epoch, index), and `skipped` / `bad_videos` count what was skipped.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders.errors import DataError
from dataloaders.video import reader
from dataloaders.video_video.frame_folders import find_frame_folders, find_videos, frame_files
from dataloaders.video_video.temporal import window_positions

log = logging.getLogger(__name__)
SOURCES = ("auto", "frames", "videos")
_WINDOW_STREAM = 0  # SeedSequence key of the window draws (augmentations use another)


def one_fps_positions(n_frames: int, fps: float, rate: float = 1.0) -> np.ndarray:
    """(K,) int64 frame indices that ffmpeg's `fps=rate` filter keeps from n_frames at `fps` (the shipped ffmpeg):
    K = round(n_frames / fps * rate) ticks (at least 1), tick k keeping the last frame before (k + 0.5) / rate s."""
    count = max(1, int(math.floor(n_frames / fps * rate + 0.5)))
    ticks = np.arange(count, dtype=np.float64)
    return np.clip(np.ceil((ticks + 0.5) * fps / rate - 1e-9).astype(np.int64) - 1, 0, n_frames - 1)


def resize_short_side(frames: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, H', W', 3) with min(H', W') = size: cv2 bicubic at one scale for both sides (the
    reference's utils.resize_frame, sides rounded by OpenCV); unchanged when size is None or already met."""
    if size is None or min(frames.shape[1:3]) == size:
        return frames
    ratio = size / min(frames.shape[1:3])
    return np.stack([cv2.resize(f, dsize=(0, 0), fx=ratio, fy=ratio, interpolation=cv2.INTER_CUBIC) for f in frames])


def _roots(roots: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(roots, (str, Path)):
        roots = [r for r in str(roots).split(",") if r]
    return [Path(r) for r in roots]


class TrainingVideos(Dataset):
    """Windows of `window` frames at 1 fps, uint8 (window, 3, H, W) RGB, short side `resize` (module docstring)."""

    def __init__(self, roots: str | Path | Sequence[str | Path], window: int = 64, seed: int = 0,
                 source: str = "auto", resize: int | None = 256, percentage: float = 1.0,
                 skip_bad_videos: bool = False) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown training source {source!r}; expected one of {SOURCES}")
        if window < 1 or not 0.0 < percentage <= 1.0:
            raise ValueError(f"window must be >= 1 and percentage in (0, 1], got {window} and {percentage}")
        self.window, self.seed, self.resize, self.skip_bad_videos = window, seed, resize, skip_bad_videos
        self.epoch = 0
        self.source, items = self._discover(_roots(roots), source)
        self.items = items[:int(len(items) * percentage)]
        if not self.items:
            raise DataError(f"{roots}: --percentage {percentage} of {len(items)} videos keeps none")
        self.skipped = 0  # samples replaced in this process
        self.bad_videos: list[str] = []  # distinct unreadable videos met in this process

    @staticmethod
    def _discover(roots: list[Path], source: str) -> tuple[str, list[Path]]:
        if not roots:
            raise DataError("no training folder given (--dataset_path)")
        for root in roots:
            if not root.is_dir():
                raise DataError(f"{root}: training folder not found (expected frame folders or videos)")
        folders = sorted(f for r in roots for f in find_frame_folders(r)) if source != "videos" else []
        videos = sorted(v for r in roots for v in find_videos(r)) if source != "frames" else []
        if source == "auto" and folders and videos:
            raise DataError(f"{','.join(map(str, roots))}: holds both frame folders ({len(folders)}) and videos "
                            f"({len(videos)}); say which to train on (source 'frames' or 'videos')")
        kind = "frames" if folders else "videos"
        found = folders or videos
        if not found:
            wanted = {"auto": "frame folders or videos", "frames": "frame folders", "videos": "videos"}[source]
            raise DataError(f"{','.join(map(str, roots))}: no {wanted} found")
        return kind, found

    def set_epoch(self, epoch: int) -> None:
        """Change the draws. Call it before iterating the DataLoader each epoch (workers copy the dataset when an
        iterator starts, so not with persistent_workers=True)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def rng(self, index: int, stream: int = _WINDOW_STREAM) -> np.random.Generator:
        """The Generator of sample `index` this epoch: (seed, epoch, index, stream) alone."""
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch, index, stream])))

    def read(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """The window of video `index` drawn from `rng`: uint8 (window, 3, H, W); DataError naming the file."""
        path = self.items[index]
        frames = self._read_frames(path, rng) if self.source == "frames" else self._read_video(path, rng)
        frames = resize_short_side(frames, self.resize)
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()

    def _read_frames(self, folder: Path, rng: np.random.Generator) -> np.ndarray:
        files = frame_files(folder)
        if not files:
            raise DataError(f"{folder}: frame folder has no JPEG frames")
        unique, inverse = np.unique(window_positions(len(files), self.window, rng), return_inverse=True)
        frames = []
        for position in unique.tolist():  # a looped window reads each frame once
            frame = cv2.imread(str(files[position]), cv2.IMREAD_COLOR)
            if frame is None:
                raise DataError(f"{files[position]}: cannot read the JPEG frame (truncated or corrupt file?)")
            frames.append(frame[..., ::-1])  # BGR -> RGB
        if len({f.shape for f in frames}) > 1:
            raise DataError(f"{folder}: frames of different sizes {sorted({f.shape[:2] for f in frames})}")
        return np.stack(frames)[inverse]

    def _read_video(self, path: Path, rng: np.random.Generator) -> np.ndarray:
        if not path.is_file():
            raise DataError(f"{path}: video file not found")
        picked: dict[str, np.ndarray] = {}

        def choose(name: str, n_frames: int, fps: float) -> np.ndarray:
            if n_frames <= 0:
                raise DataError(f"{name}: no decodable frames (frame count {n_frames})")
            if not (fps > 0 and math.isfinite(fps)):
                raise DataError(f"{name}: invalid frame rate {fps} (expected a positive number of frames per second)")
            seconds = one_fps_positions(n_frames, fps)
            unique, picked["inverse"] = np.unique(window_positions(len(seconds), self.window, rng),
                                                  return_inverse=True)
            return seconds[unique]

        backend = "decord" if reader.decord is not None else "opencv"
        return reader.BACKENDS[backend](os.fspath(path), choose)[picked["inverse"]]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.load(index)[0]

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """(clip, index of the video read): `index` itself, or with skip_bad_videos its replacement."""
        try:
            return self.read(index, self.rng(index)), index
        except DataError as exc:
            if not self.skip_bad_videos:
                raise
            self.skipped += 1
            self._mark_bad(index, exc)
        for candidate in self.rng(index, stream=2).permutation(len(self.items)).tolist():
            if str(self.items[candidate]) in self.bad_videos:
                continue
            try:
                return self.read(candidate, self.rng(index)), candidate
            except DataError as exc:
                self._mark_bad(candidate, exc)
        raise DataError(f"{self.items[index]}: unreadable, and no readable video is left to replace it")

    def _mark_bad(self, index: int, exc: DataError) -> None:
        if str(self.items[index]) not in self.bad_videos:
            self.bad_videos.append(str(self.items[index]))
            log.warning("skipping unreadable training video (%d met so far in this process): %s",
                        len(self.bad_videos), exc)
