"""ActivityNet Captions, the reference layout: anno_path holds train.json (train) and val_1.json (val and test),
each a dict video_id -> {duration, timestamps, sentences}. As in the reference (paragraph-to-video retrieval)
the sentences of a video are joined into one paragraph, one caption per video, and the segment runs from 0 s to
ceil(duration). Videos are {video_path}/{video_id}.mp4 (ids keep their 'v_' prefix); .mkv and .webm are
tried when the .mp4 is absent. Frames follow the reference's OpenCV extractor (dataloaders/video/reader.py
"per_second": whole-number frame rate, video_framerate frames in each whole second of the segment), not
MSR-VTT's decord stride.
"""
from __future__ import annotations

import math
import os

from dataloaders.errors import DataError
from dataloaders.text_video.dataset import (CaptionItem, VideoItem, build_gallery, check_split, load_json, no_rows,
                                           resolve_video)

# The reference's ActivityNet loader reads with RawVideoExtractorCV2, whose positions differ from the decord
# stride at non-integer frame rates (29.97 fps: 29-frame "seconds").
FRAME_SAMPLER = "per_second"
FILES = {"train": "train.json", "val": "val_1.json", "test": "val_1.json"}
EXTENSIONS = (".mp4", ".mkv", ".webm")


def load_annotations(anno_path: str, video_path: str, split: str) -> tuple[list[VideoItem], list[CaptionItem]]:
    """One paragraph caption per video, in the order of the JSON file."""
    check_split(split)
    path = os.path.join(anno_path, FILES[split])
    # A repeated video id would replace the earlier entry: one caption and one video fewer, silently.
    data = load_json(path, unique_keys=True)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object video_id -> {{duration, timestamps, sentences}}")
    if not data:
        raise no_rows(path, "videos")
    pairs, ends = [], {}
    for vid, entry in data.items():
        sentences = entry.get("sentences") if isinstance(entry, dict) else None
        if not isinstance(sentences, list) or not sentences or not all(isinstance(s, str) for s in sentences):
            raise DataError(f"{path}: video {vid!r} needs a non-empty 'sentences' list of strings")
        try:
            ends[vid] = float(math.ceil(float(entry["duration"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: video {vid!r} needs a numeric 'duration'") from exc
        paragraph = " ".join(s.strip() for s in sentences)
        if not paragraph.strip():
            raise DataError(f"{path}: video {vid!r} has only empty sentences")
        pairs.append((vid, paragraph))
    return build_gallery(pairs, lambda vid: VideoItem(
        vid, resolve_video([os.path.join(video_path, vid + ext) for ext in EXTENSIONS]), 0.0, ends[vid]))
