"""Text-video retrieval benchmarks: `build_dataset(datatype, split, ...)` picks the family."""
from __future__ import annotations

from typing import Any, Callable

from dataloaders.text_video import activity, didemo, lsmdc, msrvtt, msvd
from dataloaders.text_video.dataset import CaptionItem, TextVideoDataset, VideoItem

# datatype -> load_annotations(anno_path, video_path, split, **family_options) -> (videos, captions)
DATASETS: dict[str, Callable[..., tuple[list[VideoItem], list[CaptionItem]]]] = {
    "msrvtt": msrvtt.load_annotations,
    "msvd": msvd.load_annotations,
    "lsmdc": lsmdc.load_annotations,
    "activity": activity.load_annotations,
    "didemo": didemo.load_annotations,
}

# Keyword arguments of TextVideoDataset; any other keyword goes to the family's load_annotations.
_DATASET_KEYS = ("max_words", "max_frames", "video_framerate", "image_size", "slice_framepos", "backend",
                 "train", "skip_bad_videos", "seed")


def build_dataset(datatype: str, split: str, anno_path: str, video_path: str, tokenizer: Callable,
                  mode: str, **video_kwargs: Any) -> TextVideoDataset:
    """Dataset of `split` ("train" / "val" / "test") of a family; `train` (augmentation) defaults to split == "train".

    video_kwargs: max_words, max_frames, video_framerate, image_size (required), slice_framepos, backend,
    train, skip_bad_videos, seed, plus family options such as msrvtt's train_csv.
    """
    if datatype not in DATASETS:
        raise ValueError(f"unknown datatype {datatype!r}; known: {', '.join(sorted(DATASETS))}")
    dataset_kwargs = {k: video_kwargs.pop(k) for k in _DATASET_KEYS if k in video_kwargs}
    dataset_kwargs.setdefault("train", split == "train")
    videos, captions = DATASETS[datatype](anno_path, video_path, split, **video_kwargs)
    return TextVideoDataset(videos, captions, tokenizer, mode, **dataset_kwargs)


__all__ = ["DATASETS", "CaptionItem", "TextVideoDataset", "VideoItem", "build_dataset"]
