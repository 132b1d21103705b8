"""Frame position rules: "per_second" against a re-statement of the reference's OpenCV extractor loop, both
rules on NTSC-rate videos whose frames carry their index, and which rule each family uses."""
from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataloaders.text_video import FRAME_SAMPLERS, build_dataset
from dataloaders.tokenizer import ClipTokenizer
from dataloaders.errors import DataError
from dataloaders.video.transforms import CLIP_MEAN, CLIP_STD
from dataloaders.video.reader import (SAMPLERS, decord, read_frames, sample_positions,
                                      sample_positions_per_second)

BACKENDS = ["opencv"] + (["decord"] if decord is not None else [])
NTSC = {"29.97": 30000 / 1001, "23.976": 24000 / 1001}
GRID, BLOCK = 4, 16  # a GRID x GRID board of BLOCK-pixel squares: 16 bits of frame index per frame
SIZE = GRID * BLOCK
SECONDS = 20


def reference_positions(n_frames: int, fps: float, framerate: int, max_frames: int, mode: str,
                        start: float | None, end: float | None) -> list[int]:
    """The reference, restated loop for loop: the loaders' int() and time quirks, the OpenCV extractor's
    per-second reads that stop at the first unreadable frame, then the loaders' head / tail / uniform slice."""
    if start is not None:
        start, end = int(start), int(end)
        start, end = max(start, 0), max(end, 0)
        if start > end:
            start, end = end, start
        elif start == end:
            end = end + 1
    whole_fps = int(fps)
    total_duration = (n_frames + whole_fps - 1) // whole_fps
    first, last = 0, total_duration
    if start is not None:
        first, last = start, (end if end <= total_duration else total_duration)
    interval = whole_fps // framerate or 1
    offsets = list(np.arange(0, whole_fps, interval))[:framerate]
    read: list[int] = []
    readable = True
    for sec in np.arange(first, last + 1):
        if not readable:
            break
        for offset in offsets:
            position = int(sec * whole_fps) + int(offset)
            readable = position < n_frames  # cap.read() fails past the last frame
            if not readable:
                break
            read.append(position)
    if len(read) > max_frames:
        if mode == "head":
            read = read[:max_frames]
        elif mode == "tail":
            read = read[-max_frames:]
        else:
            read = [read[i] for i in np.linspace(0, len(read) - 1, num=max_frames, dtype=int)]
    return read


RANGES = [(None, None), (0.0, 64.0), (0.0, 31.0), (5.0, 10.0), (3.0, 3.0), (10.0, 5.0), (-2.0, 4.0),
          (2.7, 9.9), (0.0, 1000.0), (70.0, 80.0)]


@pytest.mark.parametrize("fps", [29.97, 23.976, 59.94, 30.0, 25.0, 24.0, 3.0, 1.0])
def test_per_second_equals_reference_loop(fps):
    for n_frames, framerate, max_frames, mode, (start, end) in itertools.product(
            [1, 2, 29, 30, 31, 100, 599, 600, 1918], [1, 2, 3], [1, 12, 64, 5000], ["uniform", "head", "tail"],
            RANGES):
        if framerate > int(fps):
            with pytest.raises(ValueError, match="exceeds the whole-number frame rate"):
                sample_positions_per_second(n_frames, fps, framerate, max_frames, mode, start, end)
            continue
        got = sample_positions_per_second(n_frames, fps, framerate, max_frames, mode, start, end)
        assert got.dtype == np.int64
        assert got.tolist() == reference_positions(n_frames, fps, framerate, max_frames, mode, start, end), \
            (n_frames, framerate, max_frames, mode, start, end)


def test_rules_differ_at_ntsc_rates():
    # 64 s at 29.97 fps, ActivityNet's window 0 .. ceil(duration) = 64 s, 12 frames: 65 candidates of 29 frames'
    # "seconds" against 64 at a stride of 30 frames.
    n_frames = int(64 * NTSC["29.97"])
    per_second = sample_positions_per_second(n_frames, NTSC["29.97"], 1, 12, start=0, end=64)
    stride = sample_positions(n_frames, NTSC["29.97"], 1, 12, start=0, end=64)
    assert per_second.tolist() == [0, 145, 319, 493, 667, 841, 986, 1160, 1334, 1508, 1682, 1856]
    assert stride.tolist() == [0, 150, 330, 510, 660, 840, 1020, 1200, 1350, 1530, 1710, 1890]
    assert len(sample_positions_per_second(n_frames, NTSC["29.97"], 1, 10**6, start=0, end=64)) == 65
    assert len(sample_positions(n_frames, NTSC["29.97"], 1, 10**6, start=0, end=64)) == 64
    # Whole-number rates (and videos compressed to 3 fps) give the same frames under both rules.
    for fps, seconds in [(30.0, 64), (25.0, 40), (3.0, 64)]:
        n = int(seconds * fps)
        assert np.array_equal(sample_positions_per_second(n, fps, 1, 12, start=0, end=seconds),
                              sample_positions(n, fps, 1, 12, start=0, end=seconds))


def test_per_second_arguments():
    with pytest.raises(ValueError, match="whole number of frames per second"):
        sample_positions_per_second(100, 30.0, 1.5, 12)
    with pytest.raises(ValueError, match="truncates to 0"):
        sample_positions_per_second(100, 0.5, 1, 12)
    with pytest.raises(ValueError, match="slice_framepos"):
        sample_positions_per_second(100, 30.0, 1, 12, "middle")
    assert len(sample_positions_per_second(100, 30.0, 1, 12, start=50, end=60)) == 0
    assert sample_positions_per_second(100, 30.0, 2, 12).tolist() == [0, 15, 30, 45, 60, 75, 90]
    assert set(SAMPLERS) == {"stride", "per_second"}


# ---------------------------------------------------------------- videos whose frames carry their index

def encode_index(index: int) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8: square b of the board (row-major) is white where bit b of index is 1."""
    bits = np.array([(index >> b) & 1 for b in range(GRID * GRID)], dtype=np.uint8).reshape(GRID, GRID) * 255
    return np.repeat(np.repeat(bits, BLOCK, axis=0), BLOCK, axis=1)[..., None].repeat(3, axis=2)


def decode_indices(frames: np.ndarray) -> list[int]:
    """Inverse of encode_index for (T, SIZE, SIZE, 3) uint8 or [0, 1] floats: square centres survive compression."""
    centres = frames[:, BLOCK // 2::BLOCK, BLOCK // 2::BLOCK].astype(np.float64).mean(axis=-1)
    threshold = 128 if frames.dtype == np.uint8 else 0.5
    weights = 1 << np.arange(GRID * GRID)
    return [int(weights[(c.reshape(-1) > threshold)].sum()) for c in centres]


@pytest.fixture(scope="module")
def ntsc_videos(tmp_path_factory) -> dict[str, str]:
    """SECONDS-long SIZE x SIZE mp4 files at 30000/1001 and 24000/1001 fps."""
    folder = tmp_path_factory.mktemp("ntsc")
    paths = {}
    for name, fps in NTSC.items():
        path = folder / f"ntsc_{name}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (SIZE, SIZE))
        for i in range(round(SECONDS * fps)):
            writer.write(encode_index(i))
        writer.release()
        paths[name] = str(path)
    return paths


def opencv_meta(path: str) -> tuple[int, float]:
    """What the reference reads the rule from: OpenCV's frame count and frame rate."""
    cap = cv2.VideoCapture(path)
    meta = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return meta


def test_encoding_round_trip():
    assert decode_indices(np.stack([encode_index(i) for i in (0, 1, 599, 40000)])) == [0, 1, 599, 40000]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rate", sorted(NTSC))
@pytest.mark.parametrize("window", [(0.0, float(math.ceil(SECONDS))), (0.0, 31.0), (3.0, 11.0)])
def test_per_second_frames_from_file(ntsc_videos, backend, rate, window):
    path = ntsc_videos[rate]
    n_frames, fps = opencv_meta(path)
    assert int(fps) == int(NTSC[rate]) and n_frames == round(SECONDS * NTSC[rate])
    frames = read_frames(path, 1, 12, "uniform", *window, backend=backend, sampler="per_second")
    assert decode_indices(frames) == reference_positions(n_frames, fps, 1, 12, "uniform", *window)
    stride = read_frames(path, 1, 12, "uniform", *window, backend=backend)  # the default rule is unchanged
    assert decode_indices(stride) == sample_positions(n_frames, fps, 1, 12, "uniform", *window).tolist()
    assert decode_indices(stride) != decode_indices(frames)


@pytest.mark.skipif(decord is None, reason="decord is not installed")
@pytest.mark.parametrize("rate", sorted(NTSC))
def test_decord_sees_what_opencv_sees(ntsc_videos, rate):
    # decord's frame count and average rate feed the rule when it decodes; they must be OpenCV's here.
    reader = decord.VideoReader(ntsc_videos[rate])
    n_frames, fps = opencv_meta(ntsc_videos[rate])
    assert len(reader) == n_frames and int(reader.get_avg_fps()) == int(fps)


def test_per_second_file_errors(ntsc_videos):
    with pytest.raises(DataError, match=r"ntsc_23.976.mp4: framerate 30 exceeds the whole-number frame rate 23"):
        read_frames(ntsc_videos["23.976"], 30, 12, sampler="per_second")
    with pytest.raises(ValueError, match="whole number of frames per second"):
        read_frames(ntsc_videos["23.976"], 1.5, 12, sampler="per_second")
    with pytest.raises(ValueError, match="unknown frame sampler"):
        read_frames(ntsc_videos["23.976"], 1, 12, sampler="cv2")
    with pytest.raises(DataError, match="no frames between"):
        read_frames(ntsc_videos["23.976"], 1, 12, start=40, end=50, sampler="per_second")


# ---------------------------------------------------------------- which rule each family reads with

def test_family_samplers():
    assert FRAME_SAMPLERS == {"msrvtt": "stride", "msvd": "stride", "lsmdc": "stride",
                              "activity": "per_second", "didemo": "per_second"}


def dataset_indices(dataset, index: int = 0) -> list[int]:
    """Frame indices carried by the (max_frames, 3, SIZE, SIZE) video of a sample (SIZE: no resize, no crop)."""
    sample = dataset[index]
    video = sample["video"][sample["video_mask"].bool()]
    pixels = video * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    return decode_indices(pixels.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("datatype,rate", [("activity", "29.97"), ("activity", "23.976"),
                                           ("didemo", "29.97"), ("didemo", "23.976")])
def test_activity_and_didemo_read_per_second(ntsc_videos, tmp_path, backend, datatype, rate):
    n_frames, fps = opencv_meta(ntsc_videos[rate])
    if datatype == "activity":
        duration = n_frames / fps
        (tmp_path / "val_1.json").write_text(json.dumps(
            {"v_ntsc": {"duration": duration, "timestamps": [[0, duration]], "sentences": ["a board of squares"]}}))
        shutil.copy(ntsc_videos[rate], tmp_path / "v_ntsc.mp4")
        window = (0.0, float(math.ceil(duration)))
    else:
        (tmp_path / "test_data.json").write_text(json.dumps(
            [{"video": "ntsc.mov", "description": "a board of squares", "times": [[0, 0]]}]))
        shutil.copy(ntsc_videos[rate], tmp_path / "ntsc.mp4")  # the compressed copy of ntsc.mov
        window = (0.0, 31.0)
    dataset = build_dataset(datatype, "test", str(tmp_path), str(tmp_path), ClipTokenizer(), "videos",
                            max_words=8, max_frames=12, video_framerate=1, image_size=SIZE, backend=backend)
    assert dataset.frame_sampler == "per_second" and (dataset.videos[0].start, dataset.videos[0].end) == window
    expected = reference_positions(n_frames, fps, 1, 12, "uniform", *window)
    assert dataset_indices(dataset) == expected
    assert expected != sample_positions(n_frames, fps, 1, 12, "uniform", *window).tolist()


@pytest.mark.parametrize("rate", sorted(NTSC))
def test_msrvtt_keeps_stride(ntsc_videos, tmp_path, rate):
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nret0,msr0,video0,a board\n")
    shutil.copy(ntsc_videos[rate], tmp_path / "video0.mp4")
    dataset = build_dataset("msrvtt", "test", str(tmp_path), str(tmp_path), ClipTokenizer(), "videos",
                            max_words=8, max_frames=12, video_framerate=1, image_size=SIZE)
    n_frames, fps = opencv_meta(ntsc_videos[rate])
    assert dataset.frame_sampler == "stride"
    assert dataset_indices(dataset) == sample_positions(n_frames, fps, 1, 12).tolist()
    assert dataset_indices(dataset) != reference_positions(n_frames, fps, 1, 12, "uniform", None, None)


def test_sampler_override_and_bad_arguments(ntsc_videos, tmp_path):
    (tmp_path / "test_data.json").write_text(json.dumps([{"video": "ntsc.mp4", "description": "a", "times": []}]))
    shutil.copy(ntsc_videos["29.97"], Path(tmp_path) / "ntsc.mp4")
    kwargs = dict(max_words=8, max_frames=12, image_size=SIZE)
    stride = build_dataset("didemo", "test", str(tmp_path), str(tmp_path), ClipTokenizer(), "videos",
                           video_framerate=1, frame_sampler="stride", **kwargs)
    n_frames, fps = opencv_meta(ntsc_videos["29.97"])
    assert stride.frame_sampler == "stride"
    assert dataset_indices(stride) == sample_positions(n_frames, fps, 1, 12, start=0.0, end=31.0).tolist()
    with pytest.raises(ValueError, match="whole number of frames per second"):
        build_dataset("didemo", "test", str(tmp_path), str(tmp_path), ClipTokenizer(), "videos",
                      video_framerate=0.5, **kwargs)
    with pytest.raises(ValueError, match="unknown frame sampler"):
        build_dataset("didemo", "test", str(tmp_path), str(tmp_path), ClipTokenizer(), "videos",
                      video_framerate=1, frame_sampler="cv2", **kwargs)
