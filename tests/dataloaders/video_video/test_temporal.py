"""dataloaders/video_video/temporal.py: each temporal transformation does what its name says, on uint8 and float."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dataloaders.video_video import temporal


def numbered(frames: int, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """(frames, 3, 4, 4) whose frame t is the constant t + 1 (0 stays free for black frames)."""
    values = torch.arange(1, frames + 1, dtype=torch.float32)[:, None, None, None].expand(frames, 3, 4, 4)
    return values.to(dtype).contiguous() if dtype == torch.uint8 else (values / 255).to(dtype).contiguous()


def ids(clip: torch.Tensor) -> list[int]:
    """Frame numbers (t + 1) of a clip built by `numbered`; 0 for a black frame, -1 for a non-constant one."""
    scale = 1 if clip.dtype == torch.uint8 else 255
    flat = (clip.float() * scale).round().reshape(len(clip), -1)
    return [int(f[0]) if bool((f == f[0]).all()) else -1 for f in flat]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_reverse_reverses_exactly(dtype):
    clip = numbered(9, dtype)
    out = temporal.reverse(clip)
    assert out.dtype == dtype and out.shape == clip.shape
    assert torch.equal(out, clip[list(range(8, -1, -1))])


def test_fast_forward_keeps_every_kth_frame():
    clip = numbered(10)
    assert ids(temporal.fast_forward(clip, 3)) == [1, 4, 7, 10]
    for seed in range(10):  # through the chooser: speed 2 or 3, a subsequence with equal gaps
        out = ids(temporal.temporal_transform(clip, rng(seed), 8, p_tsd=0, p_ff=1, p_sm=0, p_rev=0, p_pau=0))
        gaps = set(np.diff(out).tolist())
        assert out[0] == 1 and len(gaps) == 1 and gaps <= {2, 3}


def test_slow_motion_repeats_every_frame():
    assert ids(temporal.slow_motion(numbered(4))) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_pause_repeats_one_frame_for_a_span():
    assert ids(temporal.pause(numbered(6), 2, 3)) == [1, 2, 3, 3, 3, 3, 4, 5, 6]
    window = 16
    for seed in range(20):
        out = ids(temporal.temporal_transform(numbered(10), rng(seed), window, p_tsd=0, p_ff=0, p_sm=0, p_rev=0,
                                              p_pau=1))
        assert sorted(set(out)) == list(range(1, 11)) and out == sorted(out)  # order kept, nothing dropped
        extra = len(out) - 10
        assert 0 <= extra < window // 4  # one frame shown `extra` more times
        assert out[-1] == 10 and out.count(10) == 1  # the last frame is never the paused one
        assert sum(out.count(v) > 1 for v in set(out)) <= 1


def is_segment_permutation(out: list[int], frames: int) -> bool:
    """`out` is the segments of some size s in 4..15 of 1..frames (minus the frames mod s tail), in some order."""
    for size in range(4, 16):
        length = frames - frames % size
        if len(out) == length:
            rows = np.array(out).reshape(-1, size) - 1
            if (rows % size == np.arange(size)).all() and sorted(rows[:, 0] // size) == list(range(length // size)):
                return True
    return False


def test_shuffle_dropout_permutes_segments():
    clip = numbered(40)
    outs = [ids(temporal.shuffle_dropout(clip, rng(s), p_shuffle=1.0, p_dropout=0.0)) for s in range(6)]
    assert all(is_segment_permutation(o, 40) for o in outs)
    assert any(o != sorted(o) for o in outs)
    unshuffled = ids(temporal.shuffle_dropout(clip, rng(1), p_shuffle=0.0, p_dropout=0.0))
    assert unshuffled == list(range(1, len(unshuffled) + 1))


def test_shuffle_dropout_removes_or_blanks_segments():
    clip = numbered(60)
    removed = [ids(temporal.shuffle_dropout(clip, rng(s), p_shuffle=0.0, p_dropout=0.5, p_content=0.0))
               for s in range(10)]
    assert all(o == sorted(o) and 0 not in o and -1 not in o for o in removed)
    assert any(len(o) < 60 - 15 for o in removed)  # some segments are gone, not only the tail
    blanked = [ids(temporal.shuffle_dropout(clip, rng(s), p_shuffle=0.0, p_dropout=0.5, p_content=1.0))
               for s in range(10)]
    assert all(len(o) >= 60 - 15 for o in blanked)  # blanked segments keep their place
    values = [v for o in blanked for v in o]
    assert 0 in values and -1 in values  # black frames and noise frames
    kept = [[v for v in o if v > 0] for o in blanked]
    assert all(k == sorted(k) for k in kept)


def test_shuffle_dropout_never_drops_every_segment():
    clip = numbered(32)
    out = ids(temporal.shuffle_dropout(clip, rng(0), p_shuffle=0.0, p_dropout=1.0, p_content=0.0))
    assert out == list(range(1, len(out) + 1)) and len(out) > 0


def test_float_noise_stays_in_range():
    clip = numbered(48, torch.float32)
    for seed in range(5):
        out = temporal.shuffle_dropout(clip, rng(seed), p_shuffle=0.5, p_dropout=0.6, p_content=1.0)
        assert out.dtype == torch.float32 and 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_window_positions_reach_every_start_and_loop():
    starts = {int(temporal.window_positions(10, 8, rng(s))[0]) for s in range(60)}
    assert starts == {0, 1, 2}  # the last start (2) too
    looped = temporal.window_positions(3, 8, rng(4))
    assert looped.tolist() == [(looped[0] + k) % 3 for k in range(8)]
    assert temporal.temporal_crop(numbered(5), 5, rng(0)).shape[0] == 5


def test_chooser_none_and_bad_probabilities():
    clip = numbered(8)
    assert torch.equal(temporal.temporal_transform(clip, rng(), 8, 0, 0, 0, 0, 0), clip)
    with pytest.raises(ValueError, match="sum <= 1"):
        temporal.temporal_transform(clip, rng(), 8, p_tsd=0.9, p_ff=0.2)


def test_same_seed_same_output_different_seed_differs():
    clip = numbered(40)
    outs = [ids(temporal.temporal_transform(clip, rng(s), 32)) for s in range(8)]
    assert outs[3] == ids(temporal.temporal_transform(clip, rng(3), 32))
    assert len({tuple(o) for o in outs}) > 1
