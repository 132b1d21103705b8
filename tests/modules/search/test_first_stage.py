"""The faiss first stage against plain numpy: pooled search is the exact inner-product top-k; the token vote is
the (weighted) sum over words of each video's best frame, over the videos some word's nearest frames hit."""
from __future__ import annotations

import numpy as np
import pytest

from modules.search.first_stage import PooledSearch, TokenSearch, resolve_mode


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_pooled_is_the_exact_top_k():
    rng = np.random.default_rng(0)
    gallery, queries = unit(rng.normal(size=(50, 16))), unit(rng.normal(size=(4, 16)))
    got = PooledSearch(gallery).candidates(queries, 7)
    expected = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :7]
    assert [list(g) for g in got] == expected.tolist()
    assert len(PooledSearch(gallery).candidates(queries, 500)[0]) == 50


def test_token_vote_with_every_frame_fetched_is_the_weighted_max_sim():
    rng = np.random.default_rng(1)
    tokens = unit(rng.normal(size=(12, 5, 16)))
    mask = np.ones((12, 5), dtype=np.int64)
    mask[3, 2:] = 0  # a short video: its padding is not in the index
    tokens[3, 2:] = 0
    words, weights = unit(rng.normal(size=(4, 16))), rng.random(4)
    got = TokenSearch(tokens, mask).candidates([words], 12, [weights], per_word=60)[0]
    sims = np.einsum("wd,nfd->wnf", words, tokens)
    sims = np.where(mask[None] == 1, sims, -np.inf).max(2)  # (W, N) best real frame per word and video
    expected = np.argsort(-(weights @ sims), kind="stable")
    assert list(got) == expected.tolist()


def test_token_candidates_are_the_videos_the_hits_name():
    rng = np.random.default_rng(2)
    tokens, mask = unit(rng.normal(size=(30, 4, 8))), np.ones((30, 4), dtype=np.int64)
    words = unit(rng.normal(size=(3, 8)))
    got = TokenSearch(tokens, mask).candidates([words], 30, per_word=2)[0]
    flat = tokens.reshape(-1, 8)
    nearest = np.argsort(-(words @ flat.T), axis=1)[:, :2] // 4
    assert set(got) == set(nearest.ravel().tolist())


def test_auto_mode():
    assert resolve_mode("auto", "meanp") == "pooled"
    assert resolve_mode("auto", "wti") == resolve_mode("auto", "hbi") == "tokens"
    assert resolve_mode("pooled", "wti") == "pooled"
    with pytest.raises(ValueError, match="--first_stage"):
        resolve_mode("ivf", "wti")


def test_token_search_covering_the_gallery_returns_every_video():
    rng = np.random.default_rng(3)
    tokens = unit(rng.normal(size=(9, 6, 8)))
    mask = (np.arange(6)[None] < rng.integers(1, 7, size=9)[:, None]).astype(np.int64)  # uneven lengths
    words = unit(rng.normal(size=(2, 8)))
    assert sorted(TokenSearch(tokens, mask).candidates([words], 9)[0].tolist()) == list(range(9))
