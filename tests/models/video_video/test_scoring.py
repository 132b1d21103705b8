"""Evaluation scoring of many videos: short videos repeated as the reference does, packing, and the chunked
similarity matrix against pairs scored one at a time."""
from __future__ import annotations

import pytest
import torch

from models.video_video import PackedVideos, index_videos, repeat_short_video, similarity_matrix
from tests.models.video_video.conftest import random_videos


def test_short_videos_are_doubled_until_long_enough():
    video = torch.arange(3.0)[:, None, None]
    assert repeat_short_video(video).flatten().tolist() == [0, 1, 2, 0, 1, 2]
    assert repeat_short_video(video[:1]).shape[0] == 4
    assert repeat_short_video(video, min_frames=8).shape[0] == 12
    long = torch.zeros(5, 9, 2)
    assert repeat_short_video(long) is long
    with pytest.raises(ValueError, match="no frames"):
        repeat_short_video(long[:0])


def test_packed_videos_pad_with_zeros():
    videos = [torch.full((t, 2, 3), float(t)) for t in (2, 5, 3)]
    packed = PackedVideos.from_videos(videos)
    batch, lengths = packed.padded(torch.tensor([2, 0]))
    assert batch.shape == (2, 3, 2, 3) and lengths.tolist() == [3, 2]
    assert (batch[0] == 3).all() and (batch[1, :2] == 2).all() and (batch[1, 2] == 0).all()


@pytest.mark.parametrize("max_elements", [1, 300_000, 1 << 26])
def test_similarity_matrix_equals_single_pairs(reference_network, hapvr_io, max_elements):
    videos = random_videos([1, 3, 4, 9, 6, 15], seed=3) + [hapvr_io["query"], hapvr_io["target"]]
    with torch.no_grad():
        packed = index_videos(reference_network, videos)
        matrix = similarity_matrix(reference_network, packed, packed, max_elements=max_elements)
        single = torch.tensor([[float(reference_network.video_similarity(repeat_short_video(q), repeat_short_video(t)))
                                for t in videos] for q in videos])
    assert matrix.shape == (8, 8)
    assert (matrix - single).abs().max() <= 1e-5
    assert abs(float(matrix[6, 7]) - float(hapvr_io["inference_sim"])) <= 1e-4


def test_queries_and_targets_may_differ(reference_network):
    with torch.no_grad():
        queries = index_videos(reference_network, random_videos([5, 8], seed=4))
        targets = index_videos(reference_network, random_videos([4, 12, 7], seed=5))
        assert similarity_matrix(reference_network, queries, targets).shape == (2, 3)
