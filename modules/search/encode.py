"""Videos -> what the index stores for each: the model's per-frame features (what its evaluation scores), a
pooled unit vector for the first stage, the frame times; captions -> the query side of the same.

The per-frame features are `model.encode_video` (CLIP per frame, then the temporal module), exactly what
modules/evaluation/retrieval.py encodes once per video. The pooled vector is the entity head's own pooling of
its prepared tokens: the weighted mean of the unit frame tokens for WTI (its frame weights), the plain mean
over real frames for mean-max, the mean-pooled vector for meanP; then normalised.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataloaders.tokenizer import ClipTokenizer
from modules.engine.precision import autocast_context
from modules.search.videos import FolderVideos


@dataclass
class EncodedBatch:
    """The readable videos of one batch: rows (n,) into the dataset, feats (n, F, D) float32, mask (n, F)
    int64, times (n, F) float32; and the unreadable ones as (row, reason)."""
    rows: list[int]
    feats: torch.Tensor
    mask: torch.Tensor
    times: torch.Tensor
    failed: list[tuple[int, str]]


def pooled(tokens) -> torch.Tensor:
    """Prepared `Tokens` (unit feats (N, L, D), mask (N, L), weights (N, L) or None) -> (N, D) unit vectors."""
    if tokens.weights is not None:
        weights = tokens.weights.float() * tokens.mask.float()
    else:
        weights = tokens.mask.float() / tokens.mask.float().sum(1, keepdim=True).clamp_min(1.0)
    vector = torch.einsum("nl,nld->nd", weights, tokens.feats.float())
    return vector / vector.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def stored_arrays(model: nn.Module, feats: torch.Tensor, mask: torch.Tensor, times: torch.Tensor
                  ) -> dict[str, np.ndarray]:
    """What the index stores of encoded videos (feats (n, F, D) float32, mask (n, F), times (n, F)): feats fp16,
    mask uint8, the pooled unit vector fp16, times, and the entity head's frame weights (n, F) float32 (the plain
    mean over real frames for a head without weights), which the re-rank of WTI and mean-max reuses."""
    tokens = entity_tokens(model, feats, mask, "video")
    weights = tokens.weights if tokens.weights is not None else mask.float() / mask.sum(1, keepdim=True).clamp_min(1)
    return {"feats": feats.half().cpu().numpy(), "mask": mask.to(torch.uint8).cpu().numpy(),
            "pooled": pooled(tokens).half().cpu().numpy(), "times": np.asarray(times, dtype=np.float32),
            "weights": weights.float().cpu().numpy()}


def entity_tokens(model: nn.Module, feats: torch.Tensor, mask: torch.Tensor, kind: str):
    """The first (entity) head's prepared tokens of "text" or "video" features: unit vectors, padding zeroed."""
    return getattr(model.interaction, f"prepare_{kind}")(feats.float(), mask)


@torch.no_grad()
def encode_videos(model: nn.Module, dataset: FolderVideos, device: torch.device, precision: str, batch_size: int,
                  workers: int) -> Iterator[EncodedBatch]:
    """Decodes each video once (in `workers` DataLoader processes) and encodes the readable ones."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    for batch in tqdm(loader, desc="encode videos", unit="batch"):
        ok = [i for i, error in enumerate(batch["error"]) if not error]
        failed = [(int(batch["index"][i]), error) for i, error in enumerate(batch["error"]) if error]
        if not ok:
            yield EncodedBatch([], torch.empty(0), torch.empty(0), torch.empty(0), failed)
            continue
        keep = torch.tensor(ok)
        mask = batch["video_mask"][keep]
        with autocast_context(device, precision):
            feats = model.encode_video(batch["video"][keep].to(device, non_blocking=True), mask.to(device))
        yield EncodedBatch(batch["index"][keep].tolist(), feats.float().cpu(), mask, batch["times"][keep], failed)


@torch.no_grad()
def encode_captions(model: nn.Module, texts: list[str], max_words: int, device: torch.device, precision: str,
                    batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> ((N, max_words, D) float32 per-token features, (N, max_words) int64 mask), as evaluation,
    `batch_size` captions per encoder call."""
    tokenizer = ClipTokenizer()
    pairs = [tokenizer(text, max_words) for text in texts]
    ids = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
    mask = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
    feats = []
    for start in range(0, len(texts), batch_size):
        with autocast_context(device, precision):
            feats.append(model.encode_text(ids[start:start + batch_size], mask[start:start + batch_size]).float())
    return torch.cat(feats), mask
