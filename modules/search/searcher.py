"""`Searcher`: an index opened for queries, with its model, gallery and first stage loaded once; what `query`
prints and `serve` answers."""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from modules import text_video
from modules.engine.errors import RunError
from modules.engine.provenance import file_digest
from modules.search.encode import encode_captions, entity_tokens, pooled
from models.text_video.interaction import Tokens
from modules.search.first_stage import PooledSearch, TokenSearch, resolve_mode
from modules.search.first_stage_files import open_search, part_count
from modules.search.flags import pick_device
from modules.search.index import MANIFEST, Gallery, SearchIndex
from modules.search.rerank import Candidates, Hit, Score, rerank, text_scores, video_scores
from modules.search.videos import FolderVideos, VideoFile


def _check_model(index: SearchIndex, expected: str | None) -> None:
    """RunError unless the index's model file still has the recorded sha256 (and is --init_model, if given)."""
    record, where = index.manifest["model"], index.folder / MANIFEST
    if expected is not None and file_digest(expected) != record["sha256"]:
        raise RunError(f"--init_model {expected}: not the checkpoint {where} was built with "
                       f"({record['init_model']}, sha256 {record['sha256'][:12]}): query with it or re-index")
    path = Path(record["init_model"])
    if not path.is_file():
        raise RunError(f"{path}: the checkpoint {where} was built with is gone: re-index with `search.py index`")
    if file_digest(path) != record["sha256"]:
        raise RunError(f"{path}: changed since {where} was built (sha256 {file_digest(path)[:12]}, indexed "
                       f"{record['sha256'][:12]}): re-index with `search.py index`")


def model_of(record: dict, device: torch.device) -> torch.nn.Module:
    """The model an index was built with, from its record (the weights file sets the sizes)."""
    cfg = argparse.Namespace(**record["flags"], rate=record["rate"], init_model=record["init_model"],
                             clip_path=None, base_encoder="ViT-B/32", clip_arch=None)
    return text_video.build_model(cfg).to(device).eval()


def prepare_with(model: torch.nn.Module, device: torch.device):
    """The model's entity head on stored features: (n, F, D), (n, F) tensors -> (n, F, D) unit tokens (numpy)."""
    @torch.no_grad()
    def prepare(feats: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        return entity_tokens(model, feats.to(device), mask.to(device), "video").feats.cpu().numpy()
    return prepare


class Searcher:
    """`search(texts)` and `search_videos(paths)` rank the indexed videos for each query."""

    def __init__(self, cfg: argparse.Namespace):
        self.index = SearchIndex.load(cfg.index)
        _check_model(self.index, cfg.init_model)
        record = self.index.manifest["model"]
        self.kind = record["flags"]["model"]
        if cfg.rate is not None and self.kind != "hbi":
            raise RunError(f"--rate weighs HBI's levels; {cfg.index} holds a {self.kind!r} model")
        self.rate = tuple(cfg.rate or record["rate"]) if self.kind == "hbi" else None
        self.device, self.precision, self.max_words = pick_device(cfg.device), cfg.precision, cfg.max_words
        self.per_word, self.workers = cfg.per_word, cfg.rerank_workers
        self.model = model_of(record, self.device)
        self.gallery = self.index.gallery()
        self.mode = resolve_mode(cfg.first_stage, self.kind)
        self.part = getattr(cfg, "first_stage_part", None)  # serve only: this machine answers for one part
        self.part_count = part_count(self.index, self.mode)
        try:
            self.first_stage = open_search(self.index, self.gallery, self.mode, cfg.first_stage_index,
                                           prepare_with(self.model, self.device), cfg.nprobe, self.part,
                                           cfg.first_stage_remote)
        except ValueError as err:
            raise RunError(str(err)) from None

    @torch.no_grad()
    def search(self, texts: list[str], top_k: int, rerank_count: int) -> list[dict]:
        """Rows {"query", "rank", "id", "path", "score", "time"}: the `top_k` best of `rerank_count` candidates
        re-scored with the model's own similarity."""
        text, text_mask = encode_captions(self.model, texts, self.max_words, self.device, self.precision)
        words = entity_tokens(self.model, text, text_mask, "text")
        return self._ranked(texts, text, text_mask, words, text_scores(self.model, self.rate), top_k, rerank_count)

    @torch.no_grad()
    def search_videos(self, paths: list[str], top_k: int, rerank_count: int) -> list[dict]:
        """The same for query videos, read as the index reads its videos (a file that cannot be read: RunError)."""
        spec = self.index.manifest["input"]
        files = [VideoFile(str(p), str(Path(p).resolve()), -1, -1) for p in paths]
        dataset = FolderVideos(files, spec["max_frames"], spec["video_framerate"], spec["slice_framepos"],
                               spec["video_backend"], spec["image_size"])
        samples = [dataset[i] for i in range(len(files))]
        for path, sample in zip(paths, samples):
            if sample["error"]:
                raise RunError(f"--video {path}: {sample['error']}")
        frames = torch.stack([s["video"] for s in samples]).to(self.device)
        mask = torch.stack([s["video_mask"] for s in samples]).to(self.device)
        feats = self.model.encode_video(frames, mask).float()
        tokens = entity_tokens(self.model, feats, mask, "video")
        return self._ranked([str(p) for p in paths], feats, mask, tokens, video_scores(self.model), top_k,
                            rerank_count)

    def _ranked(self, names: list[str], query: torch.Tensor, query_mask: torch.Tensor, tokens, score: Score,
                top_k: int, rerank_count: int) -> list[dict]:
        hits = two_stage(self.first_stage, self.gallery, score, query, query_mask, tokens, top_k, rerank_count,
                         self.precision, self.per_word, self.workers)
        return [{"query": names[q], "rank": rank, "id": self.gallery.ids[h.row], "path": self.gallery.paths[h.row],
                 "score": h.score, "time": h.time} for q in range(len(names)) for rank, h in enumerate(hits[q], 1)]


@torch.no_grad()
def two_stage(first_stage: PooledSearch | TokenSearch, gallery: Gallery, score: Score, query: torch.Tensor,
              query_mask: torch.Tensor, tokens: Tokens, top_k: int, rerank_count: int, precision: str = "fp32",
              per_word: int | None = None, workers: int = 1) -> list[list[Hit]]:
    """Per query (features (Q, L, D), mask (Q, L) and the entity head's prepared `tokens`): `rerank_count`
    candidates from the first stage, re-scored by `score` (queries in `workers` threads); the `top_k` best."""
    count = min(max(rerank_count, top_k), len(gallery))
    real = [tokens.mask[q] != 0 for q in range(len(query))]
    if isinstance(first_stage, TokenSearch):
        weights = None if tokens.weights is None else [tokens.weights[q][real[q]].cpu().numpy()
                                                       for q in range(len(query))]
        candidates = first_stage.candidates([tokens.feats[q][real[q]].cpu().numpy() for q in range(len(query))],
                                            count, weights, per_word)
    else:
        candidates = first_stage.candidates(pooled(tokens).cpu().numpy(), count)

    def one(q: int) -> list[Hit]:
        rows = candidates[q]
        found = Candidates(rows, *gallery.take(rows), gallery.weights(rows))
        return rerank(score, query[q:q + 1], query_mask[q:q + 1], found, top_k, precision)
    if workers == 1:
        return [one(q) for q in range(len(query))]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(query))))
