"""read_frames: sampled positions (head / tail / uniform / time ranges), backend agreement, bad files."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dataloaders.errors import DataError
from dataloaders.video.reader import clip_bounds, decord, read_frames, sample_positions

N_FRAMES, FPS, BITS, BLOCK = 40, 10, 6, 16
BACKENDS = ["opencv"] + (["decord"] if decord is not None else [])


def encode_index(index: int) -> np.ndarray:
    """A (BLOCK, BITS * BLOCK, 3) frame whose blocks are white where the index has a 1 bit."""
    bits = [(index >> b) & 1 for b in range(BITS)]
    row = np.repeat(np.array(bits, dtype=np.uint8) * 255, BLOCK)
    return np.repeat(np.repeat(row[None, :, None], BLOCK, axis=0), 3, axis=2)


def decode_indices(frames: np.ndarray) -> list[int]:
    """Inverse of encode_index for (T, H, W, 3) frames; block centres survive compression."""
    centre = frames[:, BLOCK // 2, BLOCK // 2::BLOCK, :].mean(axis=-1)  # (T, BITS)
    return [int(sum(1 << b for b in range(BITS) if v[b] > 128)) for v in centre]


@pytest.fixture(scope="module")
def indexed_video(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("video") / "indexed.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (BITS * BLOCK, BLOCK))
    for i in range(N_FRAMES):
        writer.write(encode_index(i))
    writer.release()
    return str(path)


def test_sample_positions_slicing():
    # stride round(10 / 2) = 5 -> candidates 0, 5, ..., 35
    assert sample_positions(N_FRAMES, FPS, 2, 20).tolist() == list(range(0, 40, 5))
    assert sample_positions(N_FRAMES, FPS, 2, 4, "head").tolist() == [0, 5, 10, 15]
    assert sample_positions(N_FRAMES, FPS, 2, 4, "tail").tolist() == [20, 25, 30, 35]
    assert sample_positions(N_FRAMES, FPS, 2, 4, "uniform").tolist() == [0, 10, 20, 35]
    assert sample_positions(N_FRAMES, FPS, 1000, 3, "head").tolist() == [0, 1, 2]  # stride at least 1


def test_time_range_quirks():
    assert sample_positions(N_FRAMES, FPS, 2, 10, start=1, end=2).tolist() == [10, 15, 20]
    assert clip_bounds(3.0, 1.0) == (1.0, 3.0)  # swapped
    assert clip_bounds(2.0, 2.0) == (2.0, 3.0)  # widened by 1 s
    assert clip_bounds(-1.0, 2.0) == (0.0, 2.0)
    assert sample_positions(N_FRAMES, FPS, 2, 10, start=1, end=100).tolist() == [10, 15, 20, 25, 30, 35]
    assert len(sample_positions(N_FRAMES, FPS, 2, 10, start=50, end=60)) == 0


def test_encoding_round_trip():
    frames = np.stack([encode_index(i) for i in (0, 1, 37, 63)])
    assert decode_indices(frames) == [0, 1, 37, 63]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["head", "tail", "uniform"])
def test_backend_returns_sampled_frames(indexed_video, backend, mode):
    frames = read_frames(indexed_video, framerate=2, max_frames=4, slice_framepos=mode, backend=backend)
    assert frames.dtype == np.uint8 and frames.shape == (4, BLOCK, BITS * BLOCK, 3)
    assert decode_indices(frames) == sample_positions(N_FRAMES, FPS, 2, 4, mode).tolist()


@pytest.mark.skipif(decord is None, reason="decord is not installed")
def test_decord_and_opencv_agree(indexed_video):
    kwargs = dict(framerate=3, max_frames=12, start=0.5, end=3.5)
    a = read_frames(indexed_video, backend="decord", **kwargs)
    b = read_frames(indexed_video, backend="opencv", **kwargs)
    assert decode_indices(a) == decode_indices(b) == list(range(5, 36, 3))
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2  # same frames, same colour order (RGB)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file_names_path(tmp_path, backend):
    path = tmp_path / "nope.mp4"
    with pytest.raises(DataError, match="nope.mp4: video file not found"):
        read_frames(str(path), 1, 4, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_mp4_names_path(indexed_video, tmp_path, backend):
    data = Path(indexed_video).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=str(path)):
        read_frames(str(path), 1, 4, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_video_and_empty_range(indexed_video, tmp_path, backend):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="junk.mp4: cannot open"):
        read_frames(str(junk), 1, 4, backend=backend)
    with pytest.raises(DataError, match="no frames between"):
        read_frames(indexed_video, 1, 4, start=50, end=60, backend=backend)


def test_bad_arguments(indexed_video):
    with pytest.raises(ValueError, match="unknown video backend"):
        read_frames(indexed_video, 1, 4, backend="pyav")
    with pytest.raises(ValueError, match="slice_framepos"):
        read_frames(indexed_video, 1, 4, slice_framepos="random")
