"""First stage: a short list of candidate videos per query with exact faiss inner-product search (`IndexFlatIP`).

"pooled": one unit vector per video against the query's pooled vector; the list is the `count` best.
"tokens" (PLAID-style): every real frame token of the gallery is one row of the index; each real word of the query
fetches its `per_word` nearest frame tokens, every hit votes for its video, and a video scores the
(text-weighted) sum over words of its best hit for that word; the list is the `count` best of the union.
Both are exact searches: an IVF / PQ index for galleries of millions of frames is not done yet.
"""
from __future__ import annotations

import faiss
import numpy as np

MODES = ("auto", "pooled", "tokens")


def _flat(vectors: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class PooledSearch:
    """Inner product of (Q, D) query vectors with one (N, D) vector per video."""

    def __init__(self, pooled: np.ndarray) -> None:
        self.index = _flat(pooled)

    def candidates(self, queries: np.ndarray, count: int, **_) -> list[np.ndarray]:
        """Per query, the `count` best video rows, best first."""
        _, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(count, self.index.ntotal))
        return [r[r >= 0] for r in rows]


class TokenSearch:
    """Frame tokens of the gallery, (N, F, D) unit vectors with (N, F) mask, as rows of one flat index."""

    def __init__(self, tokens: np.ndarray, mask: np.ndarray) -> None:
        videos, frames = np.nonzero(mask)
        self.video_of_row = videos.astype(np.int64)
        self.num_videos = tokens.shape[0]
        self.index = _flat(tokens[videos, frames])

    def candidates(self, words: list[np.ndarray], count: int, weights: list[np.ndarray] | None = None,
                   per_word: int | None = None) -> list[np.ndarray]:
        """Per query ((L, D) unit word vectors, optional (L,) weights), up to `count` video rows, best vote first.
        `per_word` (default: enough for every frame of `count` videos) nearest frame tokens are fetched per word."""
        frames_per_video = max(1, self.index.ntotal // max(1, self.num_videos))
        k = min(self.index.ntotal, per_word or count * frames_per_video)
        if count >= self.num_videos and per_word is None:
            k = self.index.ntotal  # every video is a candidate: each word must reach every video's frames
        out = []
        for q, vectors in enumerate(words):
            sims, rows = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
            weight = np.ones(len(vectors)) if weights is None else np.asarray(weights[q], dtype=np.float64)
            best = np.full((len(vectors), self.num_videos), -np.inf)
            valid = rows >= 0
            word = np.broadcast_to(np.arange(len(vectors))[:, None], rows.shape)[valid]
            # Hits come best first, so the first hit of a (word, video) is its maximum: keep the maximum of each.
            np.maximum.at(best, (word, self.video_of_row[rows[valid]]), sims[valid])
            hit = np.isfinite(best).any(0)
            votes = np.where(np.isfinite(best), best, 0.0).T @ weight
            ranked = np.flatnonzero(hit)[np.argsort(-votes[hit], kind="stable")]
            out.append(ranked[:count])
        return out


def resolve_mode(mode: str, model_name: str) -> str:
    """`auto`: pooled for meanP (one vector per video is all it scores), tokens for the token-wise models."""
    if mode not in MODES:
        raise ValueError(f"--first_stage {mode!r}: expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    return "pooled" if model_name == "meanp" else "tokens"
