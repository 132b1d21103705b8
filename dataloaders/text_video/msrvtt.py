"""MSR-VTT, the reference layout: anno_path holds MSRVTT_data.json, MSRVTT_train.9k.csv (or .7k),
MSRVTT_JSFUSION_test.csv; videos are {video_path}/{video_id}.mp4.

train: every caption in MSRVTT_data.json `sentences` of the videos listed in the training csv (column video_id).
val / test: the 1k-A split, MSRVTT_JSFUSION_test.csv (key, vid_key, video_id, sentence), one caption per video.
"""
from __future__ import annotations

import os

from dataloaders.errors import DataError
from dataloaders.text_video.dataset import (CaptionItem, VideoItem, build_gallery, check_split, load_json, no_rows,
                                           read_table, unique_ids)

TEST_CSV = "MSRVTT_JSFUSION_test.csv"
DATA_JSON = "MSRVTT_data.json"


def _train_captions(anno_path: str, train_csv: str) -> list[tuple[str, str]]:
    csv_path = os.path.join(anno_path, train_csv)
    rows = read_table(csv_path, ["video_id"])
    if not rows:
        raise no_rows(csv_path, "video ids")
    unique_ids(csv_path, rows, "video_id")
    listed = {row["video_id"]: line for line, row in rows}
    json_path = os.path.join(anno_path, DATA_JSON)
    data = load_json(json_path)
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise DataError(f"{json_path}: expected an object with a 'sentences' list")
    known = None
    if isinstance(data.get("videos"), list):
        bad = next((i for i, v in enumerate(data["videos"]) if not isinstance(v, dict) or "video_id" not in v), None)
        if bad is not None:
            raise DataError(f"{json_path}: videos[{bad}] is not an object with a 'video_id'")
        known = {v["video_id"] for v in data["videos"]}
    by_video: dict[str, list[str]] = {vid: [] for vid in listed}
    for i, item in enumerate(data["sentences"]):
        if not isinstance(item, dict) or "caption" not in item or "video_id" not in item:
            raise DataError(f"{json_path}: sentences[{i}] lacks 'caption' or 'video_id'")
        vid, text = item["video_id"], item["caption"]
        if known is not None and vid not in known:
            raise DataError(f"{json_path}: sentences[{i}] names video id {vid!r}, which is not in 'videos'")
        if vid in by_video:
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{json_path}: sentences[{i}] (video {vid!r}) has an empty caption")
            by_video[vid].append(text)
    for vid, texts in by_video.items():
        if not texts:
            raise DataError(f"{csv_path}: video id {vid!r} (line {listed[vid]}) has no caption in {json_path}")
    return [(vid, text) for vid, texts in by_video.items() for text in texts]


def load_annotations(anno_path: str, video_path: str, split: str, train_csv: str = "MSRVTT_train.9k.csv"
                     ) -> tuple[list[VideoItem], list[CaptionItem]]:
    """Gallery and captions of `split`; `train_csv` picks the 9k or 7k training list."""
    check_split(split)
    if split == "train":
        pairs = _train_captions(anno_path, train_csv)
    else:
        csv_path = os.path.join(anno_path, TEST_CSV)
        rows = read_table(csv_path, ["key", "vid_key", "video_id", "sentence"])
        if not rows:
            raise no_rows(csv_path, "captions")
        # One caption per video: a repeated video would leave the gallery one short of the queries.
        unique_ids(csv_path, rows, "video_id")
        pairs = [(row["video_id"], row["sentence"]) for _, row in rows]
    return build_gallery(pairs, lambda vid: VideoItem(vid, os.path.join(video_path, f"{vid}.mp4")))
