"""Region features of the HAP-VR benchmarks from the published HDF5 files: one dataset per video id, (T, R, D)
float (T frames at 1 fps, R = 9 regional L3-iMAC vectors of D = 512).

A feature that is missing or cannot be read is never dropped here: `read` raises `FeatureError` with the id, the
file and the reason, and the evaluation decides (stop, or `--allow_missing`: score without it and list it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from dataloaders.errors import DataError


class FeatureError(Exception):
    """One video's features could not be used: `video_id`, `reason` (missing, unreadable, malformed)."""

    def __init__(self, path: Path, video_id: str, reason: str):
        super().__init__(f"{path}: video {video_id!r}: {reason}")
        self.video_id, self.reason = video_id, reason


class FeatureFile:
    """An HDF5 feature file, opened lazily in each process: an h5py handle does not survive a fork, so every
    DataLoader worker opens its own."""

    def __init__(self, path: str | Path, regions: int = 9, dims: int = 512):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such feature file (--dataset_hdf5: an HDF5 file with one (T, "
                            f"{regions}, {dims}) dataset per video id)")
        self.regions, self.dims = regions, dims
        self._handle: h5py.File | None = None
        self._pid = -1

    def _file(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as err:
                raise DataError(f"{self.path}: not a readable HDF5 file ({err})") from None
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict:  # workers reopen the file themselves
        return {**self.__dict__, "_handle": None, "_pid": -1}

    def ids(self) -> set[str]:
        return set(self._file().keys())

    def read(self, video_id: str) -> np.ndarray:
        """(T, R, D) float32 features of `video_id`; FeatureError when missing, unreadable or malformed."""
        handle = self._file()
        if video_id not in handle:
            raise FeatureError(self.path, video_id, "missing from the file")
        try:
            features = np.asarray(handle[video_id][()], dtype=np.float32)
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise FeatureError(self.path, video_id, f"unreadable ({err})") from None
        expected = f"(T, {self.regions}, {self.dims})"
        if features.ndim != 3 or features.shape[1:] != (self.regions, self.dims):
            raise FeatureError(self.path, video_id, f"shape {features.shape}, expected {expected}")
        if features.shape[0] == 0:
            raise FeatureError(self.path, video_id, f"no frames, expected {expected}")
        if not np.isfinite(features).all():
            raise FeatureError(self.path, video_id, "non-finite values")
        return features


class FeatureVideos(Dataset):
    """`ids` of a feature file as samples `(id, features (T, R, D) tensor or None, reason or None)`."""

    def __init__(self, file: FeatureFile, ids: Sequence[str]):
        self.file, self.ids = file, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | None, str | None]:
        video_id = self.ids[index]
        try:
            return video_id, torch.from_numpy(self.file.read(video_id)), None
        except FeatureError as err:
            return video_id, None, err.reason


def _single(sample):
    return sample


def _worker_init(_: int) -> None:
    info = get_worker_info()
    info.dataset.file._handle = None  # opened again in this process on first read


def read_videos(file: FeatureFile, ids: Sequence[str], workers: int) -> Iterator[tuple[str, torch.Tensor | None,
                                                                                        str | None]]:
    """The features of `ids` in order, read by `workers` background processes (0: in this one)."""
    loader = DataLoader(FeatureVideos(file, ids), batch_size=None, collate_fn=_single, num_workers=workers,
                        worker_init_fn=_worker_init if workers else None,
                        prefetch_factor=8 if workers else None)
    yield from loader
