"""HAP-VR's training batches: every video gives a weak and a strong view (its positive pair); the collate
function stacks them, mixes the strong views by video-in-video and builds which clips are positives of which,
as the reference's SSLGenerator.__getitem__ and TrainDataset.collate_fn do.

A batch of B videos -> videos (2B, window_sz, C, frame_sz, frame_sz) uint8, the B weak views then the B strong
ones, and labels (2B, 2B) float32, 1 where two clips share a video: rows are [identity; ViV labels] (2B, B), and
labels = (rows @ rows.T > 0). So a strong view that holds clip i inside clip j is a positive of both i's and j's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders.video_video.augmentations import (AugmentationOptions, StrongAugmentations, WeakAugmentations,
                                                   augmentation_rng, make_pair)
from dataloaders.video_video.training_videos import TrainingVideos

LOAD_FACTOR = 2  # the reference loads 2 * window_sz frames per video; each view then crops window_sz of them


class TrainingPairs(Dataset):
    """Sample i -> {"weak", "strong": (window_sz, C, frame_sz, frame_sz) uint8, "mix_seed": int64 scalar (seeds
    the batch's ViV), "video": int64 scalar (the video read: i, or its replacement with skip_bad_videos)}."""

    def __init__(self, videos: TrainingVideos, options: AugmentationOptions = AugmentationOptions()) -> None:
        self.videos, self.options = videos, options
        self.weak, self.strong = WeakAugmentations(options), StrongAugmentations(options)

    @classmethod
    def from_folders(cls, roots: str | Path | Sequence[str | Path],
                     options: AugmentationOptions = AugmentationOptions(), seed: int = 0,
                     **video_options: Any) -> TrainingPairs:
        """Pairs from the training folders (frame folders or videos), loading LOAD_FACTOR * window_sz frames."""
        return cls(TrainingVideos(roots, window=LOAD_FACTOR * options.window_sz, seed=seed, **video_options), options)

    def set_epoch(self, epoch: int) -> None:
        """New windows and augmentations; call before iterating the DataLoader each epoch."""
        self.videos.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip, video = self.videos.load(index)
        rng = augmentation_rng(self.videos.seed, self.videos.epoch, index)
        mix_seed = int(rng.integers(0, 2**63 - 1))
        weak, strong = make_pair(clip, self.weak, self.strong, rng)
        return {"weak": weak, "strong": strong, "mix_seed": torch.tensor(mix_seed, dtype=torch.int64),
                "video": torch.tensor(video, dtype=torch.int64)}


class PairCollate:
    """DataLoader collate_fn: samples of `TrainingPairs` -> (videos (2B, T, C, S, S), labels (2B, 2B) float32).

    ViV draws from a Generator seeded by the samples' mix seeds, so a batch mixes the same way in any worker.
    """

    def __init__(self, strong: StrongAugmentations) -> None:
        self.strong = strong

    def __call__(self, batch: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        weak = torch.stack([sample["weak"] for sample in batch])
        strong = torch.stack([sample["strong"] for sample in batch])
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(s["mix_seed"]) for s in batch])))
        strong, viv = self.strong.mix(strong, rng)
        rows = torch.cat([torch.eye(len(batch)), viv])
        return torch.cat([weak, strong]), (rows @ rows.T > 0).float()
