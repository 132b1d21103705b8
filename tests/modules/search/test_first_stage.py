"""The faiss first stage against plain numpy: pooled search is the exact inner-product top-k; the token vote is
the (weighted) sum over words of each video's best frame, over the videos some word's nearest frames hit; ids of
dropped videos are skipped; shards give what one index gives; ivfpq finds what exact search finds on clustered data."""
from __future__ import annotations

import numpy as np
import pytest

from modules.search.first_stage import (FLAT_MAX_ROWS, PooledSearch, TokenSearch, VectorIndex, lists_for,
                                        resolve_kind, resolve_mode, token_rows)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def pooled_search(gallery: np.ndarray, keys: np.ndarray | None = None, shards: int = 1) -> PooledSearch:
    keys = np.arange(len(gallery)) if keys is None else keys
    index = VectorIndex.empty("flat", gallery.shape[1], shards=shards)
    index.add(gallery, keys)
    row_of_key = np.full(keys.max() + 1, -1)
    row_of_key[keys] = np.arange(len(keys))
    return PooledSearch(index, row_of_key)


def token_search(tokens: np.ndarray, mask: np.ndarray, kind: str = "flat", shards: int = 1, **ivf) -> TokenSearch:
    keys = np.arange(len(tokens))
    vectors, ids = token_rows(tokens, mask, keys)
    if kind == "ivfpq":
        ivf["training"] = vectors
    index = VectorIndex.empty(kind, tokens.shape[2], tokens.shape[1], shards, **ivf)
    index.add(vectors, ids)
    return TokenSearch(index, keys, tokens.shape[1], len(tokens))


def test_pooled_is_the_exact_top_k():
    rng = np.random.default_rng(0)
    gallery, queries = unit(rng.normal(size=(50, 16))), unit(rng.normal(size=(4, 16)))
    got = pooled_search(gallery).candidates(queries, 7)
    expected = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :7]
    assert [list(g) for g in got] == expected.tolist()
    assert len(pooled_search(gallery).candidates(queries, 500)[0]) == 50


def test_pooled_skips_dropped_videos_and_still_returns_count():
    rng = np.random.default_rng(5)
    gallery, queries = unit(rng.normal(size=(40, 16))), unit(rng.normal(size=(3, 16)))
    dropped = np.argsort(-(queries[0] @ gallery.T))[:5]  # the five best of query 0 are gone
    live = np.setdiff1d(np.arange(40), dropped)
    row_of_key = np.full(40, -1)
    row_of_key[live] = np.arange(len(live))
    search = PooledSearch(pooled_search(gallery).index, row_of_key)
    assert search.stale == 5
    got = search.candidates(queries, 6)
    expected = np.searchsorted(live, live[np.argsort(-(queries @ gallery[live].T), axis=1, kind="stable")[:, :6]])
    assert [list(g) for g in got] == expected.tolist()


def test_token_vote_with_every_frame_fetched_is_the_weighted_max_sim():
    rng = np.random.default_rng(1)
    tokens = unit(rng.normal(size=(12, 5, 16)))
    mask = np.ones((12, 5), dtype=np.int64)
    mask[3, 2:] = 0  # a short video: its padding is not in the index
    tokens[3, 2:] = 0
    words, weights = unit(rng.normal(size=(4, 16))), rng.random(4)
    got = token_search(tokens, mask).candidates([words], 12, [weights], per_word=60)[0]
    sims = np.einsum("wd,nfd->wnf", words, tokens)
    sims = np.where(mask[None] == 1, sims, -np.inf).max(2)  # (W, N) best real frame per word and video
    expected = np.argsort(-(weights @ sims), kind="stable")
    assert list(got) == expected.tolist()


def test_token_candidates_are_the_videos_the_hits_name():
    rng = np.random.default_rng(2)
    tokens, mask = unit(rng.normal(size=(30, 4, 8))), np.ones((30, 4), dtype=np.int64)
    words = unit(rng.normal(size=(3, 8)))
    got = token_search(tokens, mask).candidates([words], 30, per_word=2)[0]
    flat = tokens.reshape(-1, 8)
    nearest = np.argsort(-(words @ flat.T), axis=1)[:, :2] // 4
    assert set(got) == set(nearest.ravel().tolist())


def test_several_queries_in_one_call_are_each_their_own():
    rng = np.random.default_rng(6)
    tokens, mask = unit(rng.normal(size=(20, 3, 8))), np.ones((20, 3), dtype=np.int64)
    queries = [unit(rng.normal(size=(n, 8))) for n in (2, 5, 1)]
    search = token_search(tokens, mask)
    together = search.candidates(queries, 6, per_word=9)
    assert [list(g) for g in together] == [list(search.candidates([q], 6, per_word=9)[0]) for q in queries]


def test_shards_give_what_one_index_gives():
    rng = np.random.default_rng(7)
    tokens, mask = unit(rng.normal(size=(25, 4, 16))), np.ones((25, 4), dtype=np.int64)
    words = [unit(rng.normal(size=(3, 16)))]
    one = token_search(tokens, mask).candidates(words, 8, per_word=12)
    three = token_search(tokens, mask, shards=3)
    assert [p.ntotal for p in three.index.parts] == [36, 32, 32]  # videos 0, 3, ... in the first
    assert [list(g) for g in three.candidates(words, 8, per_word=12)] == [list(g) for g in one]
    gallery = unit(rng.normal(size=(30, 16)))
    queries = unit(rng.normal(size=(2, 16)))
    assert ([list(g) for g in pooled_search(gallery, shards=4).candidates(queries, 5)]
            == [list(g) for g in pooled_search(gallery).candidates(queries, 5)])


def test_ivfpq_nominates_what_exact_search_nominates_on_clustered_tokens(tmp_path):
    rng = np.random.default_rng(8)
    centres = unit(rng.normal(size=(400, 32)))
    tokens = unit(centres[:, None] + 0.15 * rng.normal(size=(400, 6, 32)))  # a clip's frames near one another
    mask = np.ones((400, 6), dtype=np.int64)
    words = [unit(centres[q] + 0.3 * rng.normal(size=(4, 32))) for q in range(0, 400, 40)]
    exact = token_search(tokens, mask).candidates(words, 20)
    approx = token_search(tokens, mask, "ivfpq", nlist=16)
    approx.nprobe = 16  # every list: only the 4-bit codes differ from exact search
    found = approx.candidates(words, 20)
    # 2 bytes a token at 32 dims is coarse (scripts/bench/search.py measures 512): the re-rank fixes the order, the
    # first stage must keep each query's own clip among its candidates, mostly first as exact search does.
    assert [e[0] for e in exact] == list(range(0, 400, 40))
    assert all(q in f for q, f in zip(range(0, 400, 40), found))
    assert sum(q == f[0] for q, f in zip(range(0, 400, 40), found)) >= 8
    names = approx.index.save(tmp_path, "tokens")
    assert names == ["tokens-01-of-01.faiss"]
    again = VectorIndex.load(tmp_path, names, "ivfpq", 6)
    assert again.ntotal == 2400 and again.nlist == 16


def test_auto_mode_and_kind():
    assert resolve_mode("auto", "meanp") == "pooled"
    assert resolve_mode("auto", "wti") == resolve_mode("auto", "hbi") == "tokens"
    assert resolve_mode("pooled", "wti") == "pooled"
    with pytest.raises(ValueError, match="--first_stage"):
        resolve_mode("ivf", "wti")
    assert resolve_kind("auto", FLAT_MAX_ROWS) == "flat" and resolve_kind("auto", FLAT_MAX_ROWS + 1) == "ivfpq"
    assert resolve_kind("ivfpq", 10) == "ivfpq"
    assert lists_for(12_000_000) == 4096 and lists_for(10) == 16 and lists_for(10 ** 12) == 65536


def test_token_search_covering_the_gallery_returns_every_video():
    rng = np.random.default_rng(3)
    tokens = unit(rng.normal(size=(9, 6, 8)))
    mask = (np.arange(6)[None] < rng.integers(1, 7, size=9)[:, None]).astype(np.int64)  # uneven lengths
    words = unit(rng.normal(size=(2, 8)))
    assert sorted(token_search(tokens, mask).candidates([words], 9)[0].tolist()) == list(range(9))


def test_the_vote_imputes_a_word_that_missed_a_video_with_the_words_last_hit():
    # Word 0 reaches video 0 well; both words reach videos 1 and 2 barely. Raw sums would rank 1 and 2 first
    # (1.04, 1.01 against 0.9); with word 1's score for video 0 taken as its last hit (0.50), video 0 leads (1.40).
    search = TokenSearch(None, np.arange(4), frames=1, num_videos=4)
    sims = np.array([[0.90, 0.52, 0.50], [0.52, 0.51, 0.50]])
    ids = np.array([[0, 1, 2], [1, 2, 3]])
    assert search._vote(sims, ids, np.ones(2)).tolist() == [0, 1, 2, 3]
    ids[1, 2] = -1  # fewer hits than asked: the last real one is the cut-off
    assert search._vote(sims, ids, np.ones(2)).tolist() == [0, 1, 2]
