"""Decode the sampled frames of one video: (T, H, W, 3) uint8 RGB, T <= max_frames.

Two position rules, looked up by name in SAMPLERS; each family picks one (dataloaders/text_video/__init__.py), and both
backends decode the same positions.

"stride" (MSR-VTT, MSVD, LSMDC; the reference's decord reader `_get_rawvideo_dec`): with fps the container's
average frame rate, candidates are range(f_start, f_end + 1, round(fps / framerate)) where
f_start = int(start * fps) and f_end = int(min(end * fps, n_frames - 1)). Unlike the reference, times are not
truncated to whole seconds: none of the loaders passes fractional times, and a caller that does gets what it
asked for.

"per_second" (ActivityNet, DiDeMo; the reference's OpenCV extractor `RawVideoExtractorCV2.video_to_tensor`):
the frame rate is truncated to a whole number w = int(fps) and times to whole seconds; for every second s from
start to min(end, ceil(n_frames / w)) inclusive, frames s * w + k for k in range(0, w, w // framerate)[:framerate];
the reference reads them in order and stops at the first that fails, i.e. at the first position >= n_frames.
At 29.97 fps this counts "seconds" of 29 frames, so it drifts from real time (frame 29 * 60 is at 58 s).

Either way, when there are more than max_frames candidates, "uniform" keeps np.linspace(0, len - 1, max_frames,
dtype=int) of them, "head" the first and "tail" the last max_frames. Times are negative-clamped, swapped when
start > end, and widened by 1 s when equal, as the reference does.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from dataloaders.errors import DataError

log = logging.getLogger(__name__)

try:
    import decord
except ImportError as exc:  # decord has no wheels for some platforms; OpenCV decodes the same positions
    decord = None
    _DECORD_MISSING = f"decord is not importable ({exc}); decoding with OpenCV instead"
else:
    _DECORD_MISSING = ""
_warned_fallback = False

SLICE_MODES = ("uniform", "head", "tail")
# A forward gap up to this many frames is crossed with grab() (decode, no conversion) rather than a
# seek: a seek decodes from the previous keyframe anyway, and GOPs are rarely shorter than this.
_GRAB_LIMIT = 30


def _one_line(exc: BaseException) -> str:
    """First line of an exception message, without decord's "[12:00:00] /src/file.cc:83: " prefix."""
    lines = str(exc).strip().splitlines()
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[0]) if lines else type(exc).__name__


def clip_bounds(start: float | None, end: float | None) -> tuple[float | None, float | None]:
    """Apply the reference's time quirks: clamp negatives to 0, swap if start > end, end += 1 s if equal."""
    if start is None or end is None:
        return (None if start is None else max(start, 0.0)), (None if end is None else max(end, 0.0))
    start, end = max(start, 0.0), max(end, 0.0)
    if start > end:
        start, end = end, start
    elif start == end:
        end = start + 1.0
    return start, end


def _check_arguments(framerate: float, max_frames: int, slice_framepos: str) -> None:
    """DataError (the flags --video_framerate, --max_frames, --slice_framepos) for values no video can satisfy."""
    if slice_framepos not in SLICE_MODES:
        raise DataError(f"--slice_framepos must be one of {SLICE_MODES}, got {slice_framepos!r}")
    if not (framerate > 0 and math.isfinite(framerate)) or max_frames < 1:
        raise DataError(f"--video_framerate must be > 0 and --max_frames >= 1, got {framerate} and {max_frames}")


def _slice(positions: np.ndarray, max_frames: int, slice_framepos: str) -> np.ndarray:
    """Keep at most max_frames of the candidate positions (T,), as the reference's slice_framepos does."""
    if len(positions) <= max_frames:
        return positions
    if slice_framepos == "head":
        return positions[:max_frames]
    if slice_framepos == "tail":
        return positions[-max_frames:]
    return positions[np.linspace(0, len(positions) - 1, num=max_frames, dtype=int)]


def sample_positions(n_frames: int, fps: float, framerate: float, max_frames: int,
                     slice_framepos: str = "uniform", start: float | None = None,
                     end: float | None = None) -> np.ndarray:
    """The "stride" rule: frame indices (T,) int64 to decode; empty when the range lies past the end."""
    _check_arguments(framerate, max_frames, slice_framepos)
    start, end = clip_bounds(start, end)
    f_start = 0 if start is None else int(start * fps)
    f_end = int(min(math.inf if end is None else end * fps, n_frames - 1))
    stride = max(1, int(round(fps / framerate)))
    return _slice(np.arange(f_start, f_end + 1, stride, dtype=np.int64), max_frames, slice_framepos)


def _whole_seconds(value: float | None) -> float | None:
    # The reference's loaders pass int(s) and int(e) (truncation toward zero) before the time quirks.
    return None if value is None else float(int(value))


def sample_positions_per_second(n_frames: int, fps: float, framerate: float, max_frames: int,
                                slice_framepos: str = "uniform", start: float | None = None,
                                end: float | None = None) -> np.ndarray:
    """The "per_second" rule: frame indices (T,) int64 to decode; empty when the range lies past the end.

    Raises ValueError when framerate is not a whole number or exceeds int(fps) (the reference asserts both);
    read_frames reports the video's own cases as DataError naming the file.
    """
    _check_arguments(framerate, max_frames, slice_framepos)
    if framerate != int(framerate):
        raise DataError(f"per-second sampling reads a whole number of frames per second, got --video_framerate "
                        f"{framerate}")
    whole_fps, per_second = int(fps), int(framerate)
    if whole_fps < 1:
        raise ValueError(f"frame rate {fps} truncates to 0 frames per second")
    if per_second > whole_fps:
        raise ValueError(f"framerate {per_second} exceeds the whole-number frame rate {whole_fps} of the video")
    offsets = np.arange(0, whole_fps, max(1, whole_fps // per_second), dtype=np.int64)[:per_second]
    duration = (n_frames + whole_fps - 1) // whole_fps  # whole seconds, rounded up
    start, end = clip_bounds(_whole_seconds(start), _whole_seconds(end))
    first = 0 if start is None else int(start)
    last = duration if end is None else min(int(end), duration)
    seconds = np.arange(first, last + 1, dtype=np.int64)  # inclusive end, as the reference's loop
    positions = (seconds[:, None] * whole_fps + offsets[None, :]).ravel()
    # Positions increase, so "stop at the first frame that cannot be read" keeps those before n_frames.
    return _slice(positions[positions < n_frames], max_frames, slice_framepos)


PositionRule = Callable[[int, float, float, int, str, float | None, float | None], np.ndarray]


@dataclass(frozen=True)
class FrameSampler:
    """A position rule (n_frames, fps, framerate, max_frames, slice_framepos, start, end) -> (T,) int64."""
    positions: PositionRule
    whole_framerate: bool  # the rule reads a whole number of frames per second


SAMPLERS: dict[str, FrameSampler] = {
    "stride": FrameSampler(sample_positions, whole_framerate=False),
    "per_second": FrameSampler(sample_positions_per_second, whole_framerate=True),
}
DEFAULT_SAMPLER = "stride"


def check_sampling(sampler: str, framerate: float, max_frames: int, slice_framepos: str) -> None:
    """Raise DataError for flag values that no video could satisfy (checked before any file is opened), ValueError
    for an unknown sampler name (the families name theirs)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown frame sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
    _check_arguments(framerate, max_frames, slice_framepos)
    if SAMPLERS[sampler].whole_framerate and framerate != int(framerate):
        raise DataError(f"the {sampler!r} frame sampler of this dataset reads a whole number of frames per second, "
                        f"got --video_framerate {framerate}")


# Chooses the positions of one opened video from its (frame count, frame rate).
Chooser = Callable[[str, int, float], np.ndarray]


def _choose(sampler: str, framerate: float, max_frames: int, slice_framepos: str, start: float | None,
            end: float | None, path: str, n_frames: int, fps: float) -> np.ndarray:
    if n_frames <= 0:
        raise DataError(f"{path}: no decodable frames (frame count {n_frames})")
    if not fps > 0 or not math.isfinite(fps):
        raise DataError(f"{path}: invalid frame rate {fps} (expected a positive number of frames per second)")
    try:
        positions = SAMPLERS[sampler].positions(n_frames, fps, framerate, max_frames, slice_framepos, start, end)
    except ValueError as exc:  # the arguments were checked, so what is left depends on this video
        raise DataError(f"{path}: {exc}") from exc
    if len(positions) == 0:
        raise DataError(f"{path}: no frames between {start} s and {end} s "
                        f"(video has {n_frames} frames at {fps:.3f} fps)")
    return positions


def _read_decord(path: str, choose: Chooser) -> np.ndarray:
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0))
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError types
        raise DataError(f"{path}: cannot open video with decord (unsupported, truncated or corrupt file? "
                        f"{_one_line(exc)})") from exc
    positions = choose(path, len(reader), reader.get_avg_fps())
    try:
        frames = reader.get_batch(positions.tolist()).asnumpy()
    except Exception as exc:
        raise DataError(f"{path}: cannot decode frames {positions.tolist()} "
                        f"of {len(reader)} (truncated or corrupt file? {_one_line(exc)})") from exc
    return frames


def _read_opencv(path: str, choose: Chooser) -> np.ndarray:
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: cannot open video with OpenCV (unsupported, truncated or corrupt file?)")
        n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        positions = choose(path, n_frames, cap.get(cv2.CAP_PROP_FPS))
        frames = []
        next_frame = 0  # index of the frame the next read() returns
        for pos in positions.tolist():
            gap = pos - next_frame
            if gap < 0 or gap > _GRAB_LIMIT:
                cap.set(cv2.CAP_PROP_POS_FRAMES, pos)
                ok = True
            else:
                ok = all(cap.grab() for _ in range(gap))
            ok, frame = cap.read() if ok else (False, None)
            if not ok:
                raise DataError(f"{path}: frame {pos} of {n_frames} could not be decoded (truncated or corrupt file?)")
            frames.append(frame)
            next_frame = pos + 1
    finally:
        cap.release()
    return np.ascontiguousarray(np.stack(frames)[..., ::-1])  # BGR -> RGB


BACKENDS: dict[str, Callable[[str, Chooser], np.ndarray]] = {"decord": _read_decord, "opencv": _read_opencv}


def read_frames(path: str, framerate: float, max_frames: int, slice_framepos: str = "uniform",
                start: float | None = None, end: float | None = None, backend: str = "decord",
                sampler: str = DEFAULT_SAMPLER,
                on_positions: Callable[[np.ndarray, float], None] | None = None) -> np.ndarray:
    """Decode the frames `sampler` picks from `path` (opened once) as uint8 (T, H, W, 3) RGB, 1 <= T <= max_frames.
    `on_positions(positions (T,) int64, fps)`, when given, is told which frames were picked (search shows times).

    Raises DataError for flag values no video can satisfy, and naming the path when the file is missing, cannot be
    opened, is truncated, or has no frames in the range; ValueError for an unknown backend or sampler name.
    """
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; expected one of {sorted(BACKENDS)}")
    check_sampling(sampler, framerate, max_frames, slice_framepos)
    if backend == "decord" and decord is None:
        if not _warned_fallback:
            log.warning(_DECORD_MISSING)
            _warned_fallback = True
        backend = "opencv"
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: video file not found")
    choose = functools.partial(_choose, sampler, framerate, max_frames, slice_framepos, start, end)
    if on_positions is not None:
        pick = choose

        def choose(path: str, n_frames: int, fps: float) -> np.ndarray:
            positions = pick(path, n_frames, fps)
            on_positions(positions, fps)
            return positions
    return BACKENDS[backend](path, choose)
