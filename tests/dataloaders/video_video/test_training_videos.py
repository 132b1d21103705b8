"""dataloaders/video_video/training_videos.py: 1 fps windows from frame folders or straight from videos (the same
frames either way), looping short videos, reproducible per (seed, epoch, index), errors naming the file."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataloaders.errors import DataError
from dataloaders.video_video.training_videos import TrainingVideos, one_fps_positions
from scripts import extract_frames
from tests.scripts.test_extract_frames import read_code, write_video

LENGTHS = {"long": 125, "short": 30, "odd_rate": 83}  # frames at 10 fps (odd_rate: 7.5 fps)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training")
    for name, frames in LENGTHS.items():
        write_video(root / "videos" / "set" / f"{name}.mp4", frames, fps=7.5 if name == "odd_rate" else 10)
    assert not extract_frames.run(root / "videos", root / "frames", progress=False)
    return root


def codes(clip: torch.Tensor) -> list[int]:
    """The frame indices encoded in a uint8 (T, 3, H, W) clip of unresized `write_video` frames."""
    return [read_code(frame.permute(1, 2, 0).numpy()) for frame in clip]


def test_one_fps_positions_match_the_extracted_frames(data):
    for name, frames in LENGTHS.items():
        fps = 7.5 if name == "odd_rate" else 10.0
        folder = data / "frames" / "set" / name
        extracted = [read_code(cv2.imread(str(p))) for p in sorted(folder.glob("*.jpg"))]
        assert one_fps_positions(frames, fps).tolist() == extracted


@pytest.mark.parametrize("source", ["frames", "videos"])
def test_window_of_consecutive_seconds(data, source):
    videos = TrainingVideos(data / source, window=8, seed=1, resize=None)
    assert videos.source == source and len(videos) == 3
    assert [Path(p).stem for p in videos.items] == ["long", "odd_rate", "short"]
    clip = videos[0]  # "long": 13 one-second frames (4, 14, ..., 124)
    assert clip.shape == (8, 3, 32, 64) and clip.dtype == torch.uint8
    seconds = [(c - 4) // 10 for c in codes(clip)]
    assert seconds == list(range(seconds[0], seconds[0] + 8)) and seconds[0] + 8 <= 13


def test_frames_and_videos_give_the_same_window(data):
    from_frames = TrainingVideos(data / "frames", window=8, seed=3, resize=None)
    from_videos = TrainingVideos(data / "videos", window=8, seed=3, resize=None)
    for epoch in range(3):
        from_frames.set_epoch(epoch)
        from_videos.set_epoch(epoch)
        for index in range(3):
            assert codes(from_frames[index]) == codes(from_videos[index])


def test_short_video_loops(data):
    videos = TrainingVideos(data / "frames", window=8, seed=0, resize=None)
    seconds = [(c - 4) // 10 for c in codes(videos[2])]  # "short": 3 seconds
    assert seconds == [(seconds[0] + k) % 3 for k in range(8)]


def test_reproducible_per_seed_epoch_index(data):
    a = TrainingVideos(data / "videos", window=4, seed=5, resize=None)
    b = TrainingVideos(str(data / "videos"), window=4, seed=5, resize=None)
    first = [codes(a[i]) for i in range(3)]
    assert [codes(b[i]) for i in reversed(range(3))] == first[::-1]  # order (worker layout) does not matter
    starts = set()
    for epoch in range(8):
        a.set_epoch(epoch)
        starts.add(codes(a[0])[0])
    assert len(starts) > 1  # epochs draw new windows


def test_resized_short_side_256(data):
    clip = TrainingVideos(data / "frames", window=2)[0]
    assert clip.shape == (2, 3, 256, 512)  # 32 x 64 -> short side 256, cv2 bicubic, no crop


def test_several_roots_and_percentage(data, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(data / "frames" / "set" / "short", other / "extra")
    videos = TrainingVideos(f"{data / 'frames'},{other}", window=2, resize=None)
    assert len(videos) == 4
    assert len(TrainingVideos([data / "frames", other], window=2, percentage=0.5)) == 2


def test_unreadable_inputs_are_named(data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(data / "frames" / "set" / "short", bad / "frames" / "v")
    for jpg in (bad / "frames" / "v").glob("*.jpg"):
        jpg.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"000000\.jpg.*cannot read"):
        TrainingVideos(bad / "frames", window=4)[0]
    (bad / "videos").mkdir()
    (bad / "videos" / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(DataError, match="corrupt.mp4"):
        TrainingVideos(bad / "videos", window=4)[0]
    with pytest.raises(DataError, match="not found"):
        TrainingVideos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no frame folders or videos"):
        TrainingVideos(tmp_path / "empty")
    shutil.copy(data / "videos" / "set" / "short.mp4", bad / "frames")
    with pytest.raises(DataError, match="both frame folders"):
        TrainingVideos(bad / "frames")
    assert TrainingVideos(bad / "frames", source="videos").source == "videos"


def test_skip_bad_videos_replaces_and_counts(data, tmp_path):
    root = tmp_path / "videos"
    shutil.copytree(data / "videos", root)
    (root / "aaa_corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(DataError, match="aaa_corrupt.mp4"):
        TrainingVideos(root, window=4, resize=None)[0]
    videos = TrainingVideos(root, window=4, resize=None, skip_bad_videos=True)
    clip, used = videos.load(0)
    assert used != 0 and clip.shape == (4, 3, 32, 64)
    assert videos.skipped == 1 and videos.bad_videos == [str(root / "aaa_corrupt.mp4")]
    assert torch.equal(videos.load(0)[0], clip)  # the same replacement again
