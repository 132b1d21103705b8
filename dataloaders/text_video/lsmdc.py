"""LSMDC, the reference layout (CLIP4Clip / EMCL dataloader_lsmdc_retrieval.py).

Annotations in anno_path, tab-separated without header, six fields a line:
  clip_id, start_aligned, end_aligned, start_extracted, end_extracted, sentence
train: LSMDC16_annos_training.csv; val and test: LSMDC16_challenge_1000_publictect.csv (the 1k test set).
In training a clip id can carry several sentences (the gallery has each clip once); the val / test file lists
each clip once, and a repeated clip there is an error, as it would leave the gallery short of the queries.
The times are not used: every clip is its own video file. The reference finds a clip's file by walking
video_path recursively and matching the file name without its extension to the clip id; the LSMDC distribution
nests clips in one folder per movie, {video_path}/{movie}/{clip_id}.avi with movie = clip_id up to its last '_'
(e.g. 0001_American_Beauty/0001_American_Beauty_00.00.51.926-00.00.54.129.avi), which is the path assumed for a
clip the walk does not find. Like the reference, three clips known to be broken are left out (logged).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from dataloaders.errors import DataError
from dataloaders.text_video.dataset import (CaptionItem, VideoItem, build_gallery, check_split, no_rows, read_table,
                                           unique_ids)

log = logging.getLogger(__name__)

FILES = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_challenge_1000_publictect.csv",
         "test": "LSMDC16_challenge_1000_publictect.csv"}
FIELDS = ["clip_id", "start_aligned", "end_aligned", "start_extracted", "end_extracted", "sentence"]
BROKEN_CLIPS = frozenset({"0017_Pianist_00.23.28.872-00.23.34.843", "0017_Pianist_00.30.36.767-00.30.38.009",
                          "3064_SPARKLE_2012_01.41.07.000-01.41.11.793"})


def find_clip_files(video_path: str, clip_ids: set[str]) -> dict[str, str]:
    """clip id -> file under video_path (recursively) whose name minus extension is the id; first in sorted order."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(video_path):
        dirs.sort()
        for name in sorted(files):
            stem = Path(name).stem
            if stem in clip_ids and stem not in found:
                found[stem] = os.path.join(root, name)
    return found


def load_annotations(anno_path: str, video_path: str, split: str) -> tuple[list[VideoItem], list[CaptionItem]]:
    """Gallery of unique clips (first-appearance order) and every sentence."""
    check_split(split)
    path = os.path.join(anno_path, FILES[split])
    rows = read_table(path, FIELDS, delimiter="\t", header=False)
    if not rows:
        raise no_rows(path, "sentences")
    if split != "train":
        # The 1k test set has one sentence per clip: a repeated clip would leave the gallery one short of the queries.
        unique_ids(path, rows, "clip_id")
    pairs = [(row["clip_id"], row["sentence"]) for _, row in rows if row["clip_id"] not in BROKEN_CLIPS]
    if not pairs:
        raise DataError(f"{path}: every sentence belongs to one of the known-broken clips {sorted(BROKEN_CLIPS)}")
    if len(pairs) < len(rows):
        log.info("LSMDC %s: left out %d sentences of the known-broken clips %s",
                 split, len(rows) - len(pairs), sorted(BROKEN_CLIPS))
    files = find_clip_files(video_path, {clip for clip, _ in pairs})

    def item(clip: str) -> VideoItem:
        default = os.path.join(video_path, clip[: clip.rfind("_")], f"{clip}.avi")
        return VideoItem(clip, files.get(clip, default))

    return build_gallery(pairs, item)
