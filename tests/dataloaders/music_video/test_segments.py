"""The "even" segment rule: no empty segment, means, beat bins aligned with feature segments; the "chunk" rule's
documented gaps; bad shapes and modes."""
from __future__ import annotations

import math

import pytest
import torch

from dataloaders.errors import DataError
from dataloaders.music_video import segment_beats, segment_features

LENGTHS = [1, 2, 7, 29, 30, 31, 45, 59, 61, 100, 301, 869, 900]


@pytest.mark.parametrize("length", LENGTHS)
def test_even_fills_every_segment_and_covers_every_frame(length):
    # one-hot frames: column t says which segments frame t went into
    x = torch.eye(length)
    out = segment_features(x, 30)
    assert out.shape == (30, length) and out.dtype == torch.float32
    assert (out.sum(1) > 0).all()  # no segment empty
    assert torch.allclose(out.sum(1), torch.ones(30))  # each row is a mean
    assert ((out > 0).sum(0) >= 1).all()  # every frame is used
    if length >= 30:  # each frame in exactly one segment, the one of its start time
        segment_of = out.argmax(0)
        assert torch.equal(segment_of, torch.arange(length) * 30 // length)


@pytest.mark.parametrize("length", LENGTHS)
def test_even_keeps_constants_and_order(length):
    x = torch.full((length, 3), 2.7)
    assert torch.allclose(segment_features(x, 30), torch.full((30, 3), 2.7), atol=1e-6)
    ramp = segment_features(torch.arange(length, dtype=torch.float32).unsqueeze(1), 30)[:, 0]
    assert (ramp.diff() >= 0).all() and ramp[0] < length and ramp[-1] <= length - 1


def test_even_short_clips_repeat_frames():
    out = segment_features(torch.arange(10.0).unsqueeze(1), 30)[:, 0]
    assert torch.equal(out, torch.arange(10.0).repeat_interleave(3))


def test_even_means_match_a_plain_loop():
    x = torch.randn(137, 5, generator=torch.Generator().manual_seed(0))
    bounds = [-(-i * 137 // 30) for i in range(31)]
    expected = torch.stack([x[bounds[i]:bounds[i + 1]].mean(0) for i in range(30)])
    assert torch.allclose(segment_features(x, 30), expected, atol=1e-6)


@pytest.mark.parametrize("length", [750, 900, 1306, 2999, 3001, 600, 31, 7])
def test_even_beat_at_time_fraction_f_lands_in_segment_floor_f_times_30(length):
    for t in [0, 1, length // 3, length // 2, length - 2, length - 1]:
        beat = torch.zeros(length)
        beat[t] = 1.0
        grid = segment_beats(beat, 30, 25)
        assert grid.shape == (30, 25)
        rows = grid.sum(1).nonzero().flatten().tolist()
        assert t * 30 // length in rows, (t, rows)
        if length >= 750:
            assert rows == [t * 30 // length]


@pytest.mark.parametrize("feature_len, beat_len", [(45, 1500), (100, 2250), (60, 1800), (50, 1250), (869, 1738)])
def test_even_beat_rows_cover_the_span_of_the_feature_segments(feature_len, beat_len):
    """A feature frame and a beat frame at the same time fraction k/m of the clip land in the same segment."""
    features = segment_features(torch.eye(feature_len), 30)
    m = math.gcd(feature_len, beat_len)
    for k in range(m):
        t, b = k * feature_len // m, k * beat_len // m
        beat = torch.zeros(beat_len)
        beat[b] = 1
        b_seg = int(segment_beats(beat, 30, 25).sum(1).argmax())
        assert int(features[:, t].argmax()) == b_seg == k * 30 // m, k
    assert torch.allclose(segment_beats(torch.ones(beat_len), 30, 25), torch.ones(30, 25))


def test_beat_strengths_and_indicator_dtypes():
    strengths = torch.linspace(0, 1, 1500)
    grid = segment_beats(strengths, 30, 25)
    assert grid.dtype == torch.float32 and (grid.flatten().diff() > 0).all()
    indicator = torch.zeros(750, dtype=torch.bool)
    indicator[::10] = True
    assert torch.equal(segment_beats(indicator, 30, 25), segment_beats(indicator.float(), 30, 25))
    assert torch.equal(segment_beats(indicator.long(), 30, 25, mode="chunk"), indicator.float().view(30, 25))


def test_chunk_leaves_rows_empty_where_torch_chunk_returns_fewer_pieces():
    out = segment_features(torch.ones(31, 2), 30, mode="chunk")
    assert (out[:16] == 1).all() and (out[16:] == 0).all()
    assert (segment_features(torch.ones(31, 2), 30) == 1).all()  # even fills them all


def test_empty_sequences():
    with pytest.raises(DataError, match=r"^clip.pt: 'video_clip_feature': empty sequence \(0 frames\)"):
        segment_features(torch.zeros(0, 4), 30, name="clip.pt: 'video_clip_feature'")
    with pytest.raises(DataError, match=r"^beat: empty sequence"):
        segment_beats(torch.zeros(0), 30, 25)
    with pytest.warns(RuntimeWarning):
        assert segment_beats(torch.zeros(0), 30, 25, mode="chunk").isnan().all()


def test_bad_shapes_and_modes():
    with pytest.raises(DataError, match=r"^x.pt: 'music_beat': expected a 1-D beat track, got shape \(3, 2\)$"):
        segment_beats(torch.zeros(3, 2), name="x.pt: 'music_beat'")
    with pytest.raises(DataError, match=r"expected a 2-D \(frames, width\) tensor, got shape \(5,\)"):
        segment_features(torch.zeros(5))
    with pytest.raises(ValueError, match="segment mode must be one of"):
        segment_features(torch.zeros(5, 2), mode="uniform")
