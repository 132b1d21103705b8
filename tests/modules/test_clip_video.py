"""The video dataset options the glue derives from the flags."""
from __future__ import annotations

from argparse import Namespace

import pytest

from dataloaders.synthetic.clips import generate_demo_data
from dataloaders.text_video import build_dataset
from dataloaders.tokenizer import ClipTokenizer
from modules.clip_video import video_options


@pytest.mark.parametrize("train_augment", [0, 1])
def test_skip_bad_videos_reaches_the_training_split_whatever_the_augmentation(tmp_path, train_augment):
    generate_demo_data(tmp_path, num_train=4, num_test=2, frames=8, fps=8, size=32)
    (tmp_path / "videos" / "video0.mp4").unlink()
    cfg = Namespace(max_words=12, max_frames=4, video_framerate=2, slice_framepos="uniform", video_backend="decord",
                    seed=0, train_augment=train_augment, skip_bad_videos=1)
    train = build_dataset("msrvtt", "train", str(tmp_path), str(tmp_path / "videos"), ClipTokenizer(), "pairs",
                          **video_options(cfg, {"image_size": 32}, train=True))
    assert train.skip_bad_videos and train.augment is bool(train_augment)
    assert int(train[0]["unreadable_video"]) == 0  # caption 0 is of the missing video0, replaced
    test = build_dataset("msrvtt", "test", str(tmp_path), str(tmp_path / "videos"), ClipTokenizer(), "videos",
                         **video_options(cfg, {"image_size": 32}, train=False))
    assert not test.skip_bad_videos and not test.augment
