"""The video files of a folder, and their frames as the model's evaluation reads them.

A video's id is its path relative to the folder (with `/`); a file is "unchanged" while its size and
modification time are. Frames are sampled by the "stride" rule of MSR-VTT (dataloaders/video/reader.py) with
the index's --max_frames --video_framerate --slice_framepos, resized and normalised as evaluation does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders.errors import DataError
from dataloaders.video.reader import DEFAULT_SAMPLER, read_frames
from dataloaders.video.transforms import frames_to_tensor, pad_frames

EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
FRAME_SAMPLER = DEFAULT_SAMPLER


@dataclass(frozen=True)
class VideoFile:
    """One file of the folder: id (relative path), absolute path, size in bytes, mtime in ns."""
    id: str
    path: str
    size: int
    mtime_ns: int

    @property
    def stamp(self) -> tuple[int, int]:
        return self.size, self.mtime_ns


def find_videos(root: str | Path) -> list[VideoFile]:
    """Every file under `root` (recursively, symlinked folders not followed) with a video extension, sorted by id."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--videos {root}: folder not found")
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.lower().endswith(EXTENSIONS):
                continue
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:  # a dangling link: it is not a readable video, listed as such by the reader
                stat = None
            found.append(VideoFile(path.relative_to(root).as_posix(), str(path.resolve() if stat else path),
                                   stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1))
    return sorted(found, key=lambda v: v.id)


class FolderVideos(Dataset):
    """One sample per file: video (F, 3, S, S) float32, video_mask (F,) int64, times (F,) float32 seconds of
    the frames read (-1 on padding), index () int64, error (str, "" when read). An unreadable file gives a
    zero video and mask and its one-line reason, so one bad file does not stop the others."""

    def __init__(self, files: list[VideoFile], max_frames: int, video_framerate: float, slice_framepos: str,
                 video_backend: str, image_size: int) -> None:
        self.files = files
        self.max_frames, self.video_framerate = max_frames, video_framerate
        self.slice_framepos, self.backend, self.image_size = slice_framepos, video_backend, image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        picked = {}
        times = torch.full((self.max_frames,), -1.0)
        try:
            frames = read_frames(self.files[index].path, self.video_framerate, self.max_frames, self.slice_framepos,
                                 backend=self.backend, sampler=FRAME_SAMPLER,
                                 on_positions=lambda positions, fps: picked.update(positions=positions, fps=fps))
            video, mask = pad_frames(frames_to_tensor(frames, self.image_size, train=False), self.max_frames)
        except ValueError as err:  # DataError (the reader's one line) or frames the transforms cannot take
            size = self.image_size
            return {"video": torch.zeros(self.max_frames, 3, size, size), "index": torch.tensor(index),
                    "video_mask": torch.zeros(self.max_frames, dtype=torch.int64), "times": times, "error": str(err)}
        count = len(picked["positions"])
        times[:count] = torch.from_numpy(np.asarray(picked["positions"], dtype=np.float32) / picked["fps"])
        return {"video": video, "video_mask": mask, "times": times, "index": torch.tensor(index), "error": ""}
