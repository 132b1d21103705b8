"""MSVD, the reference layout: {anno_path}/{split}_list.txt (one video id a line) and
{anno_path}/raw-captions.pkl (dict video_id -> list of captions, each a list of tokens);
videos are {video_path}/{video_id}.avi, or .mp4 where only that exists. Every caption is a row,
so test videos carry several captions each.
"""
from __future__ import annotations

import os
import pickle

from dataloaders.errors import DataError
from dataloaders.text_video.dataset import (CaptionItem, VideoItem, build_gallery, check_split, no_rows,
                                           read_id_list, require_file, resolve_video)

CAPTIONS = "raw-captions.pkl"


class _ContainersOnly(pickle.Unpickler):
    """Refuses every global, so only builtin containers, strings and numbers can be loaded."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain containers and strings")


def load_captions(path: str) -> dict:
    """dict video_id -> list of token lists, read with a restricted unpickler."""
    path = require_file(path)
    try:
        with open(path, "rb") as f:
            data = _ContainersOnly(f).load()
    except Exception as exc:  # a corrupt pickle raises many types (UnpicklingError, EOFError, KeyError, ...)
        raise DataError(f"{path}: not a plain-container pickle ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else 'truncated or corrupt'})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict video_id -> captions, got {type(data).__name__}")
    return data


def _caption_text(path: str, video_id: str, n: int, caption) -> str:
    if isinstance(caption, (list, tuple)) and all(isinstance(t, str) for t in caption):
        caption = " ".join(caption)
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"{path}: caption {n} of video {video_id!r} is empty or not a list of tokens")
    return caption


def load_annotations(anno_path: str, video_path: str, split: str) -> tuple[list[VideoItem], list[CaptionItem]]:
    """Gallery (the ids of {split}_list.txt, in order) and all their captions."""
    check_split(split)
    list_path = os.path.join(anno_path, f"{split}_list.txt")
    video_ids = read_id_list(list_path)
    if not video_ids:
        raise no_rows(list_path, "video ids")
    caption_path = os.path.join(anno_path, CAPTIONS)
    captions = load_captions(caption_path)
    pairs = []
    for vid in video_ids:
        if not captions.get(vid):
            raise DataError(f"{caption_path}: no captions for video id {vid!r} listed in {list_path}")
        pairs += [(vid, _caption_text(caption_path, vid, n, c)) for n, c in enumerate(captions[vid])]

    return build_gallery(pairs, lambda vid: VideoItem(vid, resolve_video(
        [os.path.join(video_path, f"{vid}.avi"), os.path.join(video_path, f"{vid}.mp4")])))
