"""Temporal transformations of HAP-VR's strong view (TT, from S2VS) and the random window both views take.

Clips are (T, C, H, W) tensors of any dtype (uint8 in 0..255 or float in 0..1); each function indexes the first
dimension, so frames are never modified except by shuffle-dropout's content drop. Random draws come from the numpy
Generator passed in. Constants are the reference's (datasets/transforms/temporal_trans.py):
- shuffle-dropout cuts the clip into segments of s frames, s drawn from 4..15, drops the T mod s frames left over,
  shuffles the segments' order with p_shuffle, and drops each segment with p_dropout: removed, or (with p_content)
  kept with its frames replaced by black or uniform noise (one coin per frame). The reference blanks with
  1 - p_content, the same at the published 0.5; here the flag is the probability its name says;
- fast-forward keeps every 2nd or 3rd frame; slow motion shows every frame twice;
- reverse flips the order; pause shows frame i (i < T - 1) 0..window_sz // 4 - 1 extra times in place.
`temporal_transform` applies at most one of them: tsd, ff, sm, rev, pau with their probabilities, none otherwise.
"""
from __future__ import annotations

import numpy as np
import torch

TSD_SEGMENT_SIZES = (4, 16)  # segment lengths drawn from [4, 16)
FAST_FORWARD_SPEEDS = (2, 4)  # speed-ups drawn from [2, 4)
SLOW_MOTION_FACTOR = 2
PAUSE_SHARE = 4  # a pause lasts fewer than window_sz // 4 extra frames


def full_scale(dtype: torch.dtype) -> float:
    """The value of white: 255 for integer clips, 1 for float clips."""
    return 1.0 if dtype.is_floating_point else 255.0


def window_positions(n_frames: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """(length,) int64 indices of `length` consecutive frames from a uniformly drawn start in a clip of n_frames.

    A clip shorter than `length` loops (the reference concatenates it with itself until it is long enough, then
    crops); here the start is any of its n_frames frames and the window wraps around.
    """
    if n_frames < 1 or length < 1:
        raise ValueError(f"a window of {length} frames from a clip of {n_frames} frames")
    if n_frames >= length:
        # The reference draws randint(n - length), so it never starts at the last possible frame; every start here.
        start = int(rng.integers(0, n_frames - length + 1))
        return np.arange(start, start + length, dtype=np.int64)
    start = int(rng.integers(0, n_frames))
    return (start + np.arange(length, dtype=np.int64)) % n_frames


def temporal_crop(clip: torch.Tensor, length: int, rng: np.random.Generator) -> torch.Tensor:
    """(T, ...) -> (length, ...): the frames of `window_positions`."""
    return clip[torch.from_numpy(window_positions(clip.shape[0], length, rng))]


def reverse(clip: torch.Tensor) -> torch.Tensor:
    """(T, ...) -> (T, ...): frame t is input frame T - 1 - t."""
    return clip.flip(0)


def fast_forward(clip: torch.Tensor, speed: int) -> torch.Tensor:
    """(T, ...) -> (ceil(T / speed), ...): input frames 0, speed, 2 * speed, ..."""
    return clip[::speed]


def slow_motion(clip: torch.Tensor, factor: int = SLOW_MOTION_FACTOR) -> torch.Tensor:
    """(T, ...) -> (T * factor, ...): every frame `factor` times in a row."""
    return clip.repeat_interleave(factor, dim=0)


def pause(clip: torch.Tensor, start: int, duration: int) -> torch.Tensor:
    """(T, ...) -> (T + duration, ...): frame `start` shown duration + 1 times, then the clip goes on."""
    index = np.concatenate([np.arange(start), np.full(duration, start), np.arange(start, clip.shape[0])])
    return clip[torch.from_numpy(index.astype(np.int64))]


def shuffle_dropout(clip: torch.Tensor, rng: np.random.Generator, p_shuffle: float = 0.5, p_dropout: float = 0.3,
                    p_content: float = 0.5, segment_sizes: tuple[int, int] = TSD_SEGMENT_SIZES) -> torch.Tensor:
    """(T, C, H, W) -> (T', C, H, W), T' <= T: segments shuffled, dropped, or blanked (see the module docstring).

    Dropping happens only when some but not all segments are drawn (the reference compares the sum of its 1/2
    mask values with the segment count, so two blanked segments out of three counted as "all"; it is the count here).
    """
    n = clip.shape[0]
    size = int(rng.integers(*segment_sizes))
    if n < size:
        size = n  # one segment: the whole clip
    segments = np.arange(n - n % size, dtype=np.int64).reshape(-1, size)
    if rng.random() < p_shuffle:
        segments = segments[rng.permutation(len(segments))]
    dropped = rng.random(len(segments)) < p_dropout
    blank = rng.random(len(segments)) < p_content
    if not 0 < dropped.sum() < len(segments):
        return clip[torch.from_numpy(segments.reshape(-1))]
    keep = ~dropped | blank  # blanked segments keep their place and length
    out = clip[torch.from_numpy(segments[keep].reshape(-1))].clone()
    blanked = np.repeat((dropped & blank)[keep], size)
    frames = np.flatnonzero(blanked)
    if len(frames):
        black = rng.random(len(frames)) < 0.5
        noisy = frames[~black]
        out[torch.from_numpy(frames[black])] = 0
        if len(noisy):
            shape = (len(noisy), *clip.shape[1:])
            noise = (rng.integers(0, 256, shape, dtype=np.uint8) if not clip.dtype.is_floating_point
                     else rng.random(shape, dtype=np.float32))
            out[torch.from_numpy(noisy)] = torch.from_numpy(noise).to(clip.dtype)
    return out


def temporal_transform(clip: torch.Tensor, rng: np.random.Generator, window_sz: int, p_tsd: float = 0.5,
                       p_ff: float = 0.1, p_sm: float = 0.1, p_rev: float = 0.1, p_pau: float = 0.1,
                       p_shuffle: float = 0.5, p_dropout: float = 0.3, p_content: float = 0.5) -> torch.Tensor:
    """(T, C, H, W) -> (T', C, H, W): one of shuffle-dropout, fast-forward, slow motion, reverse, pause, or none.

    The probabilities must sum to at most 1; "none" takes the rest. `window_sz` sets the longest pause.
    """
    probabilities = np.array([p_tsd, p_ff, p_sm, p_rev, p_pau], dtype=np.float64)
    if (probabilities < 0).any() or probabilities.sum() > 1 + 1e-9:
        raise ValueError(f"temporal transformation probabilities {probabilities.tolist()} must be >= 0, sum <= 1")
    choice = int(rng.choice(6, p=np.append(probabilities, max(0.0, 1.0 - probabilities.sum())) /
                            max(1.0, probabilities.sum())))
    if choice == 0:
        return shuffle_dropout(clip, rng, p_shuffle, p_dropout, p_content)
    if choice == 1:
        return fast_forward(clip, int(rng.integers(*FAST_FORWARD_SPEEDS)))
    if choice == 2:
        return slow_motion(clip)
    if choice == 3:
        return reverse(clip)
    if choice == 4:
        start = int(rng.integers(0, max(1, clip.shape[0] - 1)))
        return pause(clip, start, int(rng.integers(0, max(1, window_sz // PAUSE_SHARE))))
    return clip
