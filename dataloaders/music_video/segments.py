"""Pool a feature sequence into a fixed number of segments, and a beat track into a (segments, bins) grid.

Two rules, picked by `mode`:

"chunk" (the BPVMR reference, kept so that released checkpoints reproduce; pinned by the golden
    `bpvmr_reference_io.pt`): row i of the output is the mean of piece i of `torch.chunk(x, num_segments)`, and
    the rows past the last piece stay 0. torch.chunk cuts pieces of ceil(T / n) frames, so it returns fewer
    than n pieces for many lengths (31 frames -> 16 pieces of 30: rows 16..29 are 0), and the clip's content
    ends up squeezed into the first rows. An empty feature (T == 0) gives n empty pieces, i.e. n NaN rows, as
    in the reference; this rule reproduces that and warns (RuntimeWarning). Beat tracks go through the same rule
    with n * bins pieces (`torch.chunk(beat, 750)`, each piece's mean, unfilled cells 0) viewed as (n, bins).
"even" (the default, the fix): segment i takes the frames whose start time falls in the i-th n-th of the clip,
    frames [ceil(i*T/n), ceil((i+1)*T/n)), and their mean; when that range is empty (only when T < n) it takes the
    frame playing at the segment's start, frame floor(i*T/n), so frames repeat and no segment is empty. A frame
    at time fraction f = t/T lands in segment floor(f*n). Beat tracks are cut by the same rule into n * bins time
    bins, so bin row i of a beat track covers the same fraction of the clip as feature segment i, whatever the
    lengths (and frame rates) of the two tracks. An empty sequence is a DataError in this mode.

Beat tracks may be 0/1 indicators or float strengths: both rules average, so a bin holds the beat density or the
mean strength over its frames.
"""
from __future__ import annotations

import warnings

import torch

from dataloaders.errors import DataError

MODES = ("even", "chunk")


def _check(mode: str, num_segments: int) -> None:
    if mode not in MODES:
        raise ValueError(f"segment mode must be one of {MODES}, got {mode!r}")
    if num_segments < 1:
        raise ValueError(f"the number of segments must be >= 1, got {num_segments}")


def _chunk_means(x: torch.Tensor, n: int) -> torch.Tensor:
    """(T, D) -> (n, D): the reference's torch.chunk pooling, without a Python loop over the pieces."""
    length, width = x.shape
    out = x.new_zeros(n, width)
    if length == 0:
        warnings.warn(f"chunk segmentation of an empty sequence gives {n} NaN rows (as the reference does)",
                      RuntimeWarning, stacklevel=3)
        return out.fill_(float("nan"))
    size = -(-length // n)  # torch.chunk's piece length
    full = length // size
    if full:
        out[:full] = x[:full * size].reshape(full, size, width).mean(1)
    if full * size < length:  # the short last piece
        out[full] = x[full * size:].mean(0)
    return out


def _even_means(x: torch.Tensor, n: int) -> torch.Tensor:
    """(T, D) -> (n, D): mean of the frames whose start lies in each n-th of the clip (at least one frame)."""
    length = x.shape[0]
    i = torch.arange(n + 1, dtype=torch.int64)
    bounds = -((-i * length) // n)  # ceil(i*T/n)
    start, end = bounds[:-1], bounds[1:]
    hold = end <= start  # no frame starts inside: take the frame playing at the segment's start
    start = torch.where(hold, (i[:-1] * length) // n, start)
    end = torch.where(hold, start + 1, end)
    sums = torch.cat([x.new_zeros(1, x.shape[1], dtype=torch.float64), x.double().cumsum(0)])
    means = (sums[end] - sums[start]) / (end - start).unsqueeze(1).double()
    return means.to(x.dtype)


def segment_features(x: torch.Tensor, num_segments: int = 30, mode: str = "even", name: str = "feature"
                     ) -> torch.Tensor:
    """(T, D) floating tensor -> (num_segments, D) of the same dtype (see the module docstring for the rules).

    `name` (e.g. "file.pt: 'video_clip_feature'") prefixes the error for an empty sequence in "even" mode.
    """
    _check(mode, num_segments)
    if x.dim() != 2:
        raise DataError(f"{name}: expected a 2-D (frames, width) tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    if mode == "chunk":
        return _chunk_means(x, num_segments)
    if x.shape[0] == 0:
        raise DataError(f"{name}: empty sequence (0 frames); every segment needs at least one frame")
    return _even_means(x, num_segments)


def segment_beats(beat: torch.Tensor, num_segments: int = 30, bins: int = 25, mode: str = "even",
                  name: str = "beat") -> torch.Tensor:
    """(L,) beat track -> (num_segments, bins) float: the track pooled into num_segments * bins cells by the
    rule of `mode`, row-major (row i = segment i). Integer or bool indicator tracks are read as 0/1 floats."""
    _check(mode, num_segments)
    if bins < 1:
        raise ValueError(f"the number of beat bins must be >= 1, got {bins}")
    if beat.dim() != 1:
        raise DataError(f"{name}: expected a 1-D beat track, got shape {tuple(beat.shape)}")
    track = beat if beat.is_floating_point() else beat.float()
    cells = segment_features(track.unsqueeze(1), num_segments * bins, mode, name)
    return cells.view(num_segments, bins)
