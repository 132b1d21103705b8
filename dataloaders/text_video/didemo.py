"""DiDeMo, the reference layout: anno_path holds train_data.json / val_data.json / test_data.json, each a list
of {video, description, times, ...}. As in the reference, the descriptions of a video are joined into one
paragraph (one caption per video, first-appearance order) and the segment is 0 s to 31 s: videos longer than
30 s were cut to 30 s for annotation, and this spares reading every video's length.
The `video` field is a file name with its original extension (e.g. 10015567@N08_3655084291_d8b58466fa.mov);
the file is {video_path}/{video}, or, after compression to mp4, {video}.mp4 or {stem}.mp4 / .mkv / .webm.
Frames follow the reference's OpenCV extractor (dataloaders/video/reader.py "per_second": whole-number frame
rate, video_framerate frames in each whole second up to min(31 s, the video's length)), not MSR-VTT's decord stride.
"""
from __future__ import annotations

import os
from pathlib import Path

from dataloaders.errors import DataError
from dataloaders.text_video.dataset import (CaptionItem, VideoItem, build_gallery, check_split, load_json, no_rows,
                                           resolve_video)

# The reference's DiDeMo loader reads with RawVideoExtractorCV2, whose positions differ from the decord
# stride at non-integer frame rates (23.976 fps: 23-frame "seconds").
FRAME_SAMPLER = "per_second"
SEGMENT_END = 31.0


def _candidates(video_path: str, video: str) -> list[str]:
    stem = os.path.join(video_path, Path(video).stem)
    full = os.path.join(video_path, video)
    return [full, full + ".mp4", stem + ".mp4", stem + ".mkv", stem + ".webm"]


def load_annotations(anno_path: str, video_path: str, split: str) -> tuple[list[VideoItem], list[CaptionItem]]:
    """One paragraph caption per video."""
    check_split(split)
    path = os.path.join(anno_path, f"{split}_data.json")
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of {{video, description, times}} objects")
    if not data:
        raise no_rows(path, "items")
    paragraphs: dict[str, list[str]] = {}
    for i, item in enumerate(data):
        video = item.get("video") if isinstance(item, dict) else None
        text = item.get("description") if isinstance(item, dict) else None
        if not isinstance(video, str) or not video:
            raise DataError(f"{path}: item {i} lacks a 'video' file name")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}: item {i} (video {video!r}) has an empty 'description'")
        paragraphs.setdefault(video, []).append(text)
    pairs = [(video, " ".join(texts)) for video, texts in paragraphs.items()]
    return build_gallery(pairs, lambda video: VideoItem(
        video, resolve_video(_candidates(video_path, video)), 0.0, SEGMENT_END))
