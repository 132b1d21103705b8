"""Decode the sampled frames of one video: (T, H, W, 3) uint8 RGB, T <= max_frames.

Sampling follows the reference (`_get_rawvideo_dec`): with fps the container's average frame rate,
candidate positions are range(f_start, f_end + 1, round(fps / framerate)) where f_start = int(start * fps)
and f_end = int(min(end * fps, n_frames - 1)); when there are more than max_frames candidates,
"uniform" keeps np.linspace(0, len - 1, max_frames, dtype=int) of them, "head" the first and "tail"
the last max_frames. Times are negative-clamped, swapped when start > end, and widened by 1 s when
equal, as the reference does. Unlike the reference, times are not truncated to whole seconds: none of
the loaders passes fractional times, and a caller that does gets what it asked for.
"""
from __future__ import annotations

import logging
import math
import os
import re
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


def sample_positions(n_frames: int, fps: float, framerate: float, max_frames: int,
                     slice_framepos: str = "uniform", start: float | None = None,
                     end: float | None = None) -> np.ndarray:
    """Frame indices (T,) int64 to decode; empty when the time range lies past the end of the video."""
    if slice_framepos not in SLICE_MODES:
        raise ValueError(f"slice_framepos must be one of {SLICE_MODES}, got {slice_framepos!r}")
    if framerate <= 0 or max_frames < 1:
        raise ValueError(f"framerate must be > 0 and max_frames >= 1, got {framerate} and {max_frames}")
    start, end = clip_bounds(start, end)
    f_start = 0 if start is None else int(start * fps)
    f_end = int(min(math.inf if end is None else end * fps, n_frames - 1))
    stride = max(1, int(round(fps / framerate)))
    positions = np.arange(f_start, f_end + 1, stride, dtype=np.int64)
    if len(positions) <= max_frames:
        return positions
    if slice_framepos == "head":
        return positions[:max_frames]
    if slice_framepos == "tail":
        return positions[-max_frames:]
    return positions[np.linspace(0, len(positions) - 1, num=max_frames, dtype=int)]


def _positions_or_raise(path: str, n_frames: int, fps: float, framerate: float, max_frames: int,
                        slice_framepos: str, start: float | None, end: float | None) -> np.ndarray:
    if n_frames <= 0:
        raise DataError(f"{path}: no decodable frames (frame count {n_frames})")
    if not fps > 0 or not math.isfinite(fps):
        raise DataError(f"{path}: invalid frame rate {fps} (expected a positive number of frames per second)")
    positions = sample_positions(n_frames, fps, framerate, max_frames, slice_framepos, start, end)
    if len(positions) == 0:
        raise DataError(f"{path}: no frames between {start} s and {end} s "
                        f"(video has {n_frames} frames at {fps:.3f} fps)")
    return positions


def _read_decord(path: str, framerate: float, max_frames: int, slice_framepos: str,
                 start: float | None, end: float | None) -> np.ndarray:
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0))
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError types
        raise DataError(f"{path}: cannot open video with decord (unsupported, truncated or corrupt file? "
                        f"{_one_line(exc)})") from exc
    positions = _positions_or_raise(path, len(reader), reader.get_avg_fps(), framerate, max_frames,
                                    slice_framepos, start, end)
    try:
        frames = reader.get_batch(positions.tolist()).asnumpy()
    except Exception as exc:
        raise DataError(f"{path}: cannot decode frames {positions.tolist()} "
                        f"of {len(reader)} (truncated or corrupt file? {_one_line(exc)})") from exc
    return frames


def _read_opencv(path: str, framerate: float, max_frames: int, slice_framepos: str,
                 start: float | None, end: float | None) -> np.ndarray:
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: cannot open video with OpenCV (unsupported, truncated or corrupt file?)")
        n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        positions = _positions_or_raise(path, n_frames, cap.get(cv2.CAP_PROP_FPS), framerate, max_frames,
                                        slice_framepos, start, end)
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


BACKENDS: dict[str, Callable[..., np.ndarray]] = {"decord": _read_decord, "opencv": _read_opencv}


def read_frames(path: str, framerate: float, max_frames: int, slice_framepos: str = "uniform",
                start: float | None = None, end: float | None = None, backend: str = "decord") -> np.ndarray:
    """Decode the sampled frames of `path` (opened once) as uint8 (T, H, W, 3) RGB with 1 <= T <= max_frames.

    Raises DataError naming the path when the file is missing, cannot be opened, or is truncated.
    """
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; expected one of {sorted(BACKENDS)}")
    if backend == "decord" and decord is None:
        if not _warned_fallback:
            log.warning(_DECORD_MISSING)
            _warned_fallback = True
        backend = "opencv"
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: video file not found")
    return BACKENDS[backend](path, framerate, max_frames, slice_framepos, start, end)
