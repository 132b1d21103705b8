"""--skip_bad_videos: allowed on the training split with or without augmentation, refused for evaluation; one count
per sample replaced (not per retry); replacements are readable pairs of videos that are not in the batch."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from dataloaders.errors import DataError
from dataloaders.synthetic.clips import generate_demo_data
from dataloaders.text_video import build_dataset
from dataloaders.tokenizer import ClipTokenizer

VIDEO_KW = dict(max_words=12, max_frames=4, video_framerate=2, image_size=32)
CAPTIONS_PER_VIDEO = 4  # the synthetic demo data's paraphrases


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """12 training clips (4 captions each) of which video0 is missing, and 4 test clips."""
    root = tmp_path_factory.mktemp("broken")
    generate_demo_data(root, num_train=12, num_test=4, frames=8, fps=8, size=32)
    (root / "videos" / "video0.mp4").unlink()
    return root


def training_set(root: Path, augment: bool | None = None):
    """The training split with skipping on; augment None: the default (on for the training split)."""
    options = {} if augment is None else {"augment": augment}
    return build_dataset("msrvtt", "train", str(root), str(root / "videos"), ClipTokenizer(), "pairs",
                         skip_bad_videos=True, seed=1, **VIDEO_KW, **options)


@pytest.mark.parametrize("augment", [False, True])
def test_training_split_may_skip_with_or_without_augmentation(broken, augment):
    data = training_set(broken, augment)
    assert data.augment is augment
    sample = data[0]  # caption 0 belongs to the missing video0
    assert int(sample["unreadable_video"]) == 0
    assert int(sample["video_index"]) != 0
    assert data.text_to_video[int(sample["caption_index"])] == int(sample["video_index"])
    assert data.bad_videos == [str(broken / "videos" / "video0.mp4")]
    for split in ("val", "test"):
        with pytest.raises(DataError, match=r"training only \(the training split\): evaluation must see every"):
            build_dataset("msrvtt", split, str(broken), str(broken / "videos"), ClipTokenizer(), "videos",
                          skip_bad_videos=True, augment=augment, **VIDEO_KW)


@pytest.mark.parametrize("augment", [False, None])
def test_one_count_per_sample_replaced_and_no_duplicate_video_in_a_batch(broken, augment):
    data = training_set(broken, augment)
    # In order: the first batch holds video0's four captions (all replaced) and video1's four.
    loader = DataLoader(data, batch_size=8, shuffle=False)
    total = 0
    for batch in loader:
        replaced = batch["unreadable_video"] >= 0
        total += int(replaced.sum())
        assert set(batch["unreadable_video"][replaced].tolist()) <= {0}
        videos = batch["video_index"].tolist()
        kept = set(v for v, r in zip(videos, replaced.tolist()) if not r)
        new = [v for v, r in zip(videos, replaced.tolist()) if r]
        assert len(set(new)) == len(new) and not set(new) & kept, videos
        assert 0 not in videos
        assert torch.equal(torch.as_tensor(data.text_to_video)[batch["caption_index"]], batch["video_index"])
    assert total == CAPTIONS_PER_VIDEO  # each of video0's captions once, not once per retry (was 10)
    assert len(data.bad_videos) == 1


def test_replacements_are_seeded_not_worker_dependent(broken):
    data = training_set(broken)
    assert data.augment
    batches = {}
    for workers in (0, 2):
        data.set_epoch(3)
        order = torch.Generator().manual_seed(0)
        loader = DataLoader(data, batch_size=6, shuffle=True, generator=order, num_workers=workers)
        batches[workers] = [(b["caption_index"], b["video_index"], b["unreadable_video"]) for b in loader]
    for (c0, v0, s0), (c2, v2, s2) in zip(batches[0], batches[2]):
        assert torch.equal(c0, c2) and torch.equal(v0, v2) and torch.equal(s0, s2)
    assert sum(int((s >= 0).sum()) for _, _, s in batches[0]) == CAPTIONS_PER_VIDEO


def test_only_unreadable_videos_left_is_an_error(tmp_path):
    generate_demo_data(tmp_path, num_train=2, num_test=1, frames=8, fps=8, size=32)
    shutil.rmtree(tmp_path / "videos")  # both training videos (and the test one) unreadable
    data = training_set(tmp_path)
    with pytest.raises(DataError, match=r"no readable video among the 2 videos .*unreadable: .*video0.mp4"):
        data[0]
