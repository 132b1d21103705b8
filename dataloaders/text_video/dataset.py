"""The text-video dataset every benchmark family shares, and the parsing helpers the families use.

A family's `load_annotations` gives the gallery (`VideoItem`s, fixed order) and every caption
(`CaptionItem`, pointing at its video). The dataset turns them into samples:
  "pairs"  (training, one per caption): text_ids, text_mask, video, video_mask, video_index, caption_index
           (and unreadable_video with skip_bad_videos: the index of the video that could not be read where
           its sample was replaced, -1 elsewhere)
  "texts"  (one per caption):           text_ids, text_mask, caption_index
  "videos" (one per video):             video, video_mask, video_index
with text_* (max_words,) int64, video (max_frames, 3, S, S) float32, video_mask (max_frames,) int64.
Frames are picked by the named rule `frame_sampler` (SAMPLERS of dataloaders/video/reader.py); build_dataset
passes the family's.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders.errors import DataError
from dataloaders.video.reader import BACKENDS, DEFAULT_SAMPLER, check_sampling, read_frames
from dataloaders.video.transforms import frames_to_tensor, pad_frames

log = logging.getLogger(__name__)

MODES = ("pairs", "texts", "videos")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoItem:
    """One gallery video; start / end in seconds select a segment of the file (None: whole video)."""
    video_id: str
    path: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class CaptionItem:
    """One caption and the index of its video in the gallery."""
    text: str
    video_index: int


# ---------------------------------------------------------------- parsing helpers for the families

def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def require_file(path: str | Path) -> str:
    """Return `path` as str, or raise DataError if the annotation file does not exist."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: annotation file not found")
    return os.fspath(path)


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


class _RepeatedKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _repeat_line(text: str, key: str) -> str:
    """' at line N' of the second `"key":` of the file when it occurs exactly twice (otherwise it is ambiguous)."""
    positions = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    return f" at line {text.count(chr(10), 0, positions[1]) + 1}" if len(positions) == 2 else ""


def load_json(path: str | Path, unique_keys: bool = False) -> Any:
    """The parsed file; with `unique_keys` a key repeated within one object is an error (json would keep the
    last entry and drop the others silently)."""
    path = require_file(path)
    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs if unique_keys else None)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from exc
    except _RepeatedKey as exc:
        raise DataError(f"{path}: key {exc.key!r} repeated{_repeat_line(text, exc.key)} (keys must be unique: "
                        f"json would keep the last entry and drop the others)") from None


def no_rows(path: str | Path, what: str) -> DataError:
    """The error for an annotation file that yields nothing (e.g. a csv with only its header)."""
    return DataError(f"{path}: no {what} (the file is empty or has only a header / blank lines)")


def unique_ids(path: str | Path, rows: list[tuple[int, dict[str, str]]], column: str) -> None:
    """Every row of `rows` (read_table's) must name a different `column` (a video listed twice would be
    dropped from the gallery silently, and the evaluation would rank against fewer videos)."""
    seen: set[str] = set()
    for line, row in rows:
        if row[column] in seen:
            raise DataError(f"{path}: row at line {line} repeats video id {row[column]!r}")
        seen.add(row[column])


def read_table(path: str | Path, columns: list[str], delimiter: str = ",",
               header: bool = True) -> list[tuple[int, dict[str, str]]]:
    """Rows of a delimited file as (line number, {column: value}); every listed column must be non-empty.

    With header=False, `columns` names the fields in order and the file has no header line.
    Blank lines are allowed (a trailing newline is common); any other row with the wrong field count is an error.
    """
    path = require_file(path)
    with open(path, encoding="utf-8", newline="") as f:
        # QUOTE_NONE for tab files: LSMDC sentences contain unbalanced quotes.
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        try:
            return _table_rows(path, reader, columns, delimiter, header)
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text after line {reader.line_num} ({exc.reason})") from None
        except csv.Error as exc:  # e.g. a NUL byte, or a field over the csv module's size limit
            raise DataError(f"{path}: unreadable row at line {reader.line_num} ({exc})") from None


def _table_rows(path: str, reader, columns: list[str], delimiter: str,
                header: bool) -> list[tuple[int, dict[str, str]]]:
    names = columns
    if header:
        names = next(reader, None)
        missing = [c for c in columns if c not in (names or [])]
        if missing:
            raise DataError(f"{path}: header {names} lacks column(s) {missing}")
    rows = []
    for fields in reader:
        line = reader.line_num
        if not fields or fields == [""]:
            continue
        if len(fields) != len(names):
            raise DataError(f"{path}: row at line {line} has {len(fields)} fields, expected {len(names)} "
                            f"({delimiter.join(names)!r})")
        row = dict(zip(names, fields))
        empty = [c for c in columns if not row[c].strip()]
        if empty:
            raise DataError(f"{path}: row at line {line} has an empty {empty[0]!r}")
        rows.append((line, row))
    return rows


def read_id_list(path: str | Path) -> list[str]:
    """Non-empty stripped lines of a one-id-per-line file; duplicates are an error."""
    path = require_file(path)
    ids, seen = [], set()
    for line_no, line in enumerate(read_text(path).split("\n"), 1):
        item = line.strip()
        if not item:
            continue
        if item in seen:
            raise DataError(f"{path}: line {line_no} repeats video id {item!r}")
        seen.add(item)
        ids.append(item)
    return ids


def resolve_video(candidates: list[str]) -> str:
    """First existing path among `candidates`, else the first one (a missing video is reported when read)."""
    return next((c for c in candidates if os.path.isfile(c)), candidates[0])


def build_gallery(pairs: list[tuple[str, str]], path_of: Callable[[str], VideoItem]
                  ) -> tuple[list[VideoItem], list[CaptionItem]]:
    """(video_id, caption) pairs in order -> gallery in first-appearance order and captions pointing into it."""
    index: dict[str, int] = {}
    videos: list[VideoItem] = []
    captions = []
    for video_id, text in pairs:
        if video_id not in index:
            index[video_id] = len(videos)
            videos.append(path_of(video_id))
        captions.append(CaptionItem(text, index[video_id]))
    return videos, captions


# ---------------------------------------------------------------- the dataset

class TextVideoDataset(Dataset):
    """Samples of captions and / or videos; see the module docstring for the sample layout."""

    def __init__(self, videos: list[VideoItem], captions: list[CaptionItem], tokenizer: Callable,
                 mode: str, max_words: int, max_frames: int, video_framerate: float, image_size: int,
                 slice_framepos: str = "uniform", backend: str = "decord", train: bool = False,
                 skip_bad_videos: bool = False, seed: int = 0, frame_sampler: str = DEFAULT_SAMPLER,
                 augment: bool | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        # Arguments no video can satisfy fail here, not once per video (where training might skip them all).
        check_sampling(frame_sampler, video_framerate, max_frames, slice_framepos)
        if max_words < 2:
            raise DataError(f"--max_words must be at least 2 (start and end tokens), got {max_words}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
        if skip_bad_videos and not train:
            raise DataError("--skip_bad_videos is for training only (the training split): "
                            "evaluation must see every video")
        if not videos or not captions:  # the families name the file; this guards direct construction
            raise DataError(f"no {'videos' if not videos else 'captions'}: the annotations yield an empty dataset")
        bad = next((i for i, c in enumerate(captions) if not 0 <= c.video_index < len(videos)), None)
        if bad is not None:
            raise DataError(f"caption {bad} points at video {captions[bad].video_index}, "
                            f"but the gallery has {len(videos)} videos")
        self.videos, self.captions = list(videos), list(captions)
        self.tokenizer, self.mode = tokenizer, mode
        self.max_words, self.max_frames = max_words, max_frames
        self.video_framerate, self.image_size = video_framerate, image_size
        self.slice_framepos, self.backend, self.frame_sampler = slice_framepos, backend, frame_sampler
        self.train, self.skip_bad_videos = train, skip_bad_videos
        self.augment = train if augment is None else augment
        self.seed, self.epoch = seed, 0
        # This process's (or worker's) tally: samples replaced, and the distinct unreadable videos met.
        self.skipped = 0
        self.bad_videos: list[str] = []
        self._bad_indices: set[int] = set()

    def __len__(self) -> int:
        return len(self.videos) if self.mode == "videos" else len(self.captions)

    @property
    def text_to_video(self) -> np.ndarray:
        """(num_captions,) int64: the gallery index of each caption's video."""
        return np.array([c.video_index for c in self.captions], dtype=np.int64)

    @property
    def video_ids(self) -> list[str]:
        return [v.video_id for v in self.videos]

    @property
    def caption_texts(self) -> list[str]:
        return [c.text for c in self.captions]

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws. Call it before iterating the DataLoader each epoch: workers copy the
        dataset when an iterator starts, so the new epoch reaches them (not with persistent_workers=True)."""
        self.epoch = epoch

    def _generator(self, index: int) -> torch.Generator:
        # Seeded from (seed, epoch, index) only, so the draws do not depend on the worker layout.
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def _text(self, caption_index: int) -> dict[str, torch.Tensor]:
        ids, mask = self.tokenizer(self.captions[caption_index].text, self.max_words)
        return {"text_ids": torch.from_numpy(ids), "text_mask": torch.from_numpy(mask),
                "caption_index": torch.tensor(caption_index, dtype=torch.int64)}

    def _video(self, video_index: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        item = self.videos[video_index]
        frames = read_frames(item.path, self.video_framerate, self.max_frames, self.slice_framepos,
                             item.start, item.end, self.backend, self.frame_sampler)
        video = frames_to_tensor(frames, self.image_size, self.augment, generator)
        video, mask = pad_frames(video, self.max_frames)
        return {"video": video, "video_mask": mask, "video_index": torch.tensor(video_index, dtype=torch.int64)}

    def _complete(self, sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hook for subclasses: fields added to every finished sample (it knows its own caption_index)."""
        return sample

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """The samples of `indices`; a DataLoader passes a whole per-process batch here. With skip_bad_videos, a
        "pairs" sample whose video cannot be read is replaced by a readable caption-video pair of a video that is
        not in the batch (no duplicate pair, so no false negative in the contrastive loss), drawn from
        (seed, epoch, index); its `unreadable_video` is the index of the video that could not be read (-1 for the
        others), so the trainer counts both the samples replaced and the distinct videos."""
        if self.mode == "texts":
            return [self._complete(self._text(i)) for i in indices]
        if self.mode == "videos":
            return [self._complete(self._video(i, self._generator(i))) for i in indices]
        taken = {self.captions[i].video_index for i in indices}
        samples = []
        for index in indices:
            generator = self._generator(index)
            video_index = self.captions[index].video_index
            caption_index, unreadable = index, -1
            try:
                video = self._video(video_index, generator)
            except DataError as exc:
                if not self.skip_bad_videos:
                    raise
                self._mark_bad(video_index, exc)
                caption_index, video = self._replacement(index, taken, generator)
                taken.add(int(video["video_index"]))
                unreadable = video_index
                self.skipped += 1
            sample = {**self._text(caption_index), **video}
            if self.skip_bad_videos:
                sample["unreadable_video"] = torch.tensor(unreadable, dtype=torch.int64)
            samples.append(self._complete(sample))
        return samples

    def _mark_bad(self, video_index: int, exc: DataError) -> None:
        if video_index not in self._bad_indices:
            self._bad_indices.add(video_index)
            self.bad_videos.append(self.videos[video_index].path)
            log.warning("skipping unreadable video (%d met so far in this process): %s", len(self.bad_videos), exc)

    def _replacement(self, index: int, taken: set[int], generator: torch.Generator
                     ) -> tuple[int, dict[str, torch.Tensor]]:
        """(caption index, video sample) of the first readable caption, in an order drawn from (seed, epoch, index),
        whose video is not in `taken`; failing that (every other video is in the batch), of any readable video.
        Which videos are already known to be unreadable only saves reading them again: the result is the same."""
        state = np.random.SeedSequence([self.seed, self.epoch, index, 1]).generate_state(1, dtype=np.uint64)[0]
        order = torch.randperm(len(self.captions), generator=torch.Generator().manual_seed(int(state))).tolist()
        for allow_taken in (False, True):
            for candidate in order:
                video_index = self.captions[candidate].video_index
                if video_index in self._bad_indices or (video_index in taken and not allow_taken):
                    continue
                try:
                    video = self._video(video_index, generator)
                except DataError as exc:
                    self._mark_bad(video_index, exc)
                    continue
                if allow_taken:
                    log.warning("caption %d: every readable video is in its batch already; its replacement "
                                "repeats one", index)
                return candidate, video
        raise DataError(f"no readable video among the {len(self.videos)} videos of this dataset "
                        f"(unreadable: {', '.join(self.bad_videos[:3])}{', ...' if len(self.bad_videos) > 3 else ''})")
