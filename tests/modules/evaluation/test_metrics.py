"""Retrieval metrics: the official averaged-ties numbers, a plain per-query oracle, and invariances."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modules.evaluation.metrics import geometric_mean, retrieval_metrics, v2t_metrics

OFFICIAL_NAMES = {"R1": "R1", "R5": "R5", "R10": "R10", "R50": "R50", "MdR": "MedR", "MnR": "MeanR"}


@pytest.fixture(scope="module")
def golden(golden_dir):
    arrays = np.load(golden_dir / "qbnorm_metrics_reference.npz")
    scalars = json.loads((golden_dir / "qbnorm_metrics_reference.json").read_text())
    return arrays, scalars


def assert_matches_official(ours: dict, official: dict) -> None:
    """Official values are rounded to 0.1: round ours the same way and compare."""
    for key, name in OFFICIAL_NAMES.items():
        assert abs(round(ours[key], 1) - official[name]) <= 0.05, (key, ours[key], official[name])


def plain_ranks(sims: np.ndarray, text_to_video: np.ndarray, video_query: bool) -> np.ndarray:
    """Oracle: sort each query's scores and average the positions of the true item's ties (one query at a time)."""
    if not video_query:
        ranks = []
        for i, row in enumerate(sims):
            order = np.sort(row)[::-1]
            ranks.append(np.flatnonzero(order == row[text_to_video[i]]).mean())
        return np.array(ranks)
    ranks = []
    for v in range(sims.shape[1]):
        column = sims[:, v]
        order = np.sort(column)[::-1]
        ranks.append(min(np.flatnonzero(order == column[i]).mean() for i in np.flatnonzero(text_to_video == v)))
    return np.array(ranks)


def metrics_from_ranks(ranks: np.ndarray) -> dict:
    return {"R1": 100 * np.mean(ranks == 0), "R5": 100 * np.mean(ranks < 5), "R10": 100 * np.mean(ranks < 10),
            "R50": 100 * np.mean(ranks < 50), "MdR": np.median(ranks) + 1, "MnR": np.mean(ranks) + 1}


# ---- golden: the official QB-Norm metric code ----

def test_ties_match_official_averaging(golden):
    arrays, scalars = golden
    sims = arrays["ties/sims"]
    assert_matches_official(retrieval_metrics(sims), scalars["ties/official_t2v"])
    assert_matches_official(v2t_metrics(sims), scalars["ties/official_v2t"])


def test_ties_differ_from_hbi_count(golden):
    """The HBI metric counts a tied query once per tied position; averaging does not."""
    arrays, scalars = golden
    ours = retrieval_metrics(arrays["ties/sims"])
    hbi = scalars["ties/hbi_t2v"]
    assert abs(ours["R1"] - hbi["R1"]) > 0.5 and abs(ours["R10"] - hbi["R10"]) > 0.5


@pytest.mark.parametrize("case,queries_per_video", [("k1_b20", 1), ("multi_caption_k1_b20", 2)])
def test_qbnorm_cases_match_official(golden, case, queries_per_video):
    arrays, scalars = golden
    assert int(scalars[f"{case}/queries_per_video"]) == queries_per_video
    sims = arrays[f"{case}/test_test"]
    assert_matches_official(retrieval_metrics(sims, queries_per_video=queries_per_video), scalars[f"{case}/t2v_before"])
    ours = retrieval_metrics(sims, queries_per_video=queries_per_video)
    assert abs(round(geometric_mean(ours), 1) - scalars[f"{case}/t2v_before"]["geometric_mean_R1-R5-R10"]) <= 0.05


# ---- plain oracle on matrices with many ties ----

@settings(max_examples=40, deadline=None)
@given(num_videos=st.integers(1, 12), queries_per_video=st.integers(1, 3), levels=st.integers(1, 4),
       seed=st.integers(0, 10_000), chunk=st.integers(1, 7))
def test_matches_plain_oracle(num_videos, queries_per_video, levels, seed, chunk):
    rng = np.random.default_rng(seed)
    sims = rng.integers(0, levels, size=(num_videos * queries_per_video, num_videos)).astype(np.float32)
    gt = np.arange(sims.shape[0]) // queries_per_video
    for fn, video_query in ((retrieval_metrics, False), (v2t_metrics, True)):
        ours = fn(sims, queries_per_video=queries_per_video, chunk=chunk)
        expected = metrics_from_ranks(plain_ranks(sims, gt, video_query))
        assert ours == pytest.approx(expected, abs=1e-9)


# ---- properties ----

@settings(max_examples=30, deadline=None)
@given(num_videos=st.integers(1, 30), queries_per_video=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_perfect_diagonal(num_videos, queries_per_video, seed):
    rng = np.random.default_rng(seed)
    sims = rng.uniform(-1, 0, size=(num_videos * queries_per_video, num_videos))
    # distinct true scores: captions of one video tied with each other would average to rank 0.5 (official)
    rows = np.arange(sims.shape[0])
    sims[rows, rows // queries_per_video] = 2.0 + 0.01 * rows
    for fn in (retrieval_metrics, v2t_metrics):
        metrics = fn(torch.from_numpy(sims), queries_per_video=queries_per_video)
        assert metrics["R1"] == 100.0 and metrics["MdR"] == 1.0 and metrics["MnR"] == 1.0


@settings(max_examples=30, deadline=None)
@given(num_videos=st.integers(2, 20), queries_per_video=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_consistent_permutation_leaves_metrics_unchanged(num_videos, queries_per_video, seed):
    rng = np.random.default_rng(seed)
    sims = np.round(rng.normal(size=(num_videos * queries_per_video, num_videos)), 1)  # rounding keeps ties
    gt = np.arange(sims.shape[0]) // queries_per_video
    video_perm = rng.permutation(num_videos)       # new column k is old video video_perm[k]
    text_perm = rng.permutation(sims.shape[0])     # new row r is old text text_perm[r]
    new_of_old = np.argsort(video_perm)
    permuted = sims[text_perm][:, video_perm]
    permuted_gt = new_of_old[gt[text_perm]]
    for fn in (retrieval_metrics, v2t_metrics):
        assert fn(permuted, text_to_video=permuted_gt) == pytest.approx(fn(sims, queries_per_video=queries_per_video))


@settings(max_examples=30, deadline=None)
@given(num_videos=st.integers(1, 15), queries_per_video=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_text_to_video_equals_contiguous_form(num_videos, queries_per_video, seed):
    sims = np.random.default_rng(seed).normal(size=(num_videos * queries_per_video, num_videos))
    mapping = np.arange(sims.shape[0]) // queries_per_video
    for fn in (retrieval_metrics, v2t_metrics):
        assert fn(sims, text_to_video=mapping) == fn(sims, queries_per_video=queries_per_video)


def test_text_to_video_overrides_queries_per_video():
    sims = np.eye(4)[[0, 0, 1, 2, 3, 3]]            # six captions: videos 0,0,1,2,3,3
    mapping = np.array([0, 0, 1, 2, 3, 3])
    assert retrieval_metrics(sims, queries_per_video=5, text_to_video=mapping)["R1"] == 100.0


def test_tie_at_top_is_not_a_hit_at_one():
    sims = np.array([[1.0, 1.0], [0.0, 1.0]])      # text 0 ties its true video with another: rank 0.5
    metrics = retrieval_metrics(sims)
    assert metrics["R1"] == 50.0 and metrics["R5"] == 100.0 and metrics["MnR"] == pytest.approx(1.25)


def test_geometric_mean():
    assert geometric_mean({"R1": 8.0, "R5": 1.0, "R10": 27.0}) == pytest.approx(6.0)
    assert geometric_mean({"R1": 0.0, "R5": 10.0, "R10": 20.0}) == 0.0


@pytest.mark.parametrize("kwargs,match", [({"queries_per_video": 3}, "do not split"),
                                          ({"text_to_video": [0, 1, 5, 0]}, "must index videos"),
                                          ({"text_to_video": [0, 1]}, "one per text")])
def test_bad_ground_truth_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(np.zeros((4, 2)), **kwargs)


def test_nan_and_uncaptioned_video_raise():
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="without any caption"):
        v2t_metrics(np.zeros((2, 3)), text_to_video=[0, 0])


def test_large_matrix_is_fast():
    import time

    sims = torch.randn(10_000, 10_000)
    start = time.perf_counter()
    retrieval_metrics(sims)
    v2t_metrics(sims)
    assert time.perf_counter() - start < 20.0
