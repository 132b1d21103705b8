"""dataloaders/video_video/pairs.py: every video gives a (weak, strong) pair, the collate builds the reference's
positive matrix with ViV, and batches do not depend on the number of DataLoader workers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from dataloaders.video_video.augmentations import AugmentationOptions
from dataloaders.video_video.pairs import LOAD_FACTOR, PairCollate, TrainingPairs
from tests.scripts.test_extract_frames import write_video

OPTIONS = dict(window_sz=4, frame_sz=32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    for k, frames in enumerate((60, 35, 90, 20)):
        write_video(root / f"v{k}.mp4", frames)
    return root


def test_sample_is_a_weak_and_a_strong_view(videos):
    pairs = TrainingPairs.from_folders(videos, AugmentationOptions(**OPTIONS), seed=2, resize=64)
    assert len(pairs) == 4 and pairs.videos.window == LOAD_FACTOR * 4
    sample = pairs[1]
    for view in ("weak", "strong"):
        assert sample[view].shape == (4, 3, 32, 32) and sample[view].dtype == torch.uint8
    assert int(sample["video"]) == 1
    again = pairs[1]
    assert all(torch.equal(sample[k], again[k]) for k in sample)
    pairs.set_epoch(1)
    assert not torch.equal(pairs[1]["strong"], sample["strong"])


def test_collate_builds_the_positive_matrix(videos):
    options = AugmentationOptions(**OPTIONS, p_viv=1.0)
    pairs = TrainingPairs.from_folders(videos, options, resize=64)
    batch = [pairs[i] for i in range(4)]
    clips, labels = PairCollate(pairs.strong)(batch)
    assert clips.shape == (8, 4, 3, 32, 32) and labels.shape == (8, 8) and labels.dtype == torch.float32
    assert torch.equal(clips[:4], torch.stack([s["weak"] for s in batch]))
    assert torch.equal(labels, labels.T) and torch.equal(labels.diagonal(), torch.ones(8))
    for i in range(4):
        assert labels[i, 4 + i] == 1  # weak i and strong i
        hosts = [j for j in range(4) if j != i and labels[4 + i, j] == 1]
        assert len(hosts) == 1  # with p_viv = 1 every strong view holds its clip inside one other video
    off = AugmentationOptions(**OPTIONS, augmentations="GT,FT,TT")
    _, plain = PairCollate(TrainingPairs.from_folders(videos, off).strong)(batch)
    assert torch.equal(plain, torch.eye(4).repeat(2, 2))


def test_batches_do_not_depend_on_the_workers(videos):
    pairs = TrainingPairs.from_folders(videos, AugmentationOptions(**OPTIONS, p_viv=0.5), seed=9, resize=64)
    collate = PairCollate(pairs.strong)
    runs = []
    for workers in (0, 2):
        loader = DataLoader(pairs, batch_size=2, num_workers=workers, collate_fn=collate)
        runs.append(list(loader))
    for (clips_a, labels_a), (clips_b, labels_b) in zip(*runs):
        assert torch.equal(clips_a, clips_b) and torch.equal(labels_a, labels_b)
