"""Text-video retrieval benchmarks: `build_dataset(datatype, split, ...)` picks the family.

A family is a module with `load_annotations` and, optionally, `FRAME_SAMPLER`: the name of the frame position
rule in dataloaders.video.reader.SAMPLERS that the reference used for it ("stride" when the module names none).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

from dataloaders.text_video import activity, didemo, lsmdc, msrvtt, msvd
from dataloaders.text_video.dataset import CaptionItem, TextVideoDataset, VideoItem
from dataloaders.video.reader import DEFAULT_SAMPLER

FAMILIES: dict[str, ModuleType] = {"msrvtt": msrvtt, "msvd": msvd, "lsmdc": lsmdc, "activity": activity,
                                   "didemo": didemo}

# datatype -> load_annotations(anno_path, video_path, split, **family_options) -> (videos, captions)
DATASETS: dict[str, Callable[..., tuple[list[VideoItem], list[CaptionItem]]]] = {
    name: module.load_annotations for name, module in FAMILIES.items()}

# datatype -> name of its frame position rule (TextVideoDataset rejects unknown names)
FRAME_SAMPLERS: dict[str, str] = {name: getattr(module, "FRAME_SAMPLER", DEFAULT_SAMPLER)
                                  for name, module in FAMILIES.items()}

# Keyword arguments of TextVideoDataset; any other keyword goes to the family's load_annotations.
_DATASET_KEYS = ("max_words", "max_frames", "video_framerate", "image_size", "slice_framepos", "backend",
                 "train", "augment", "skip_bad_videos", "seed", "frame_sampler")


def build_dataset(datatype: str, split: str, anno_path: str, video_path: str, tokenizer: Callable,
                  mode: str, **video_kwargs: Any) -> TextVideoDataset:
    """Dataset of `split` ("train" / "val" / "test") of a family; `train` (the training split: skip_bad_videos is
    allowed) defaults to split == "train", `augment` (RandAugment on the frames) to `train`.

    video_kwargs: max_words, max_frames, video_framerate, image_size (required), slice_framepos, backend,
    train, augment, skip_bad_videos, seed, frame_sampler (default: the family's), plus family options such as
    msrvtt's train_csv.
    """
    if datatype not in DATASETS:
        raise ValueError(f"unknown datatype {datatype!r}; known: {', '.join(sorted(DATASETS))}")
    dataset_kwargs = {k: video_kwargs.pop(k) for k in _DATASET_KEYS if k in video_kwargs}
    dataset_kwargs.setdefault("train", split == "train")
    dataset_kwargs.setdefault("frame_sampler", FRAME_SAMPLERS[datatype])
    videos, captions = DATASETS[datatype](anno_path, video_path, split, **video_kwargs)
    return TextVideoDataset(videos, captions, tokenizer, mode, **dataset_kwargs)


__all__ = ["DATASETS", "FAMILIES", "FRAME_SAMPLERS", "CaptionItem", "TextVideoDataset", "VideoItem", "build_dataset"]
