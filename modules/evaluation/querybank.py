"""QB-Norm's querybank for text-video retrieval: training captions scored against the test gallery."""
from __future__ import annotations

from pathlib import Path

import torch

from modules.engine.distributed import DistInfo
from modules.evaluation.retrieval import Provenance, all_pairs_similarity, save_matrix


def querybank_captions(text_set, size: int | None, seed: int) -> list:
    """The first caption of every training video, or `size` of them drawn with a seeded generator."""
    first = {}
    for caption in text_set.captions:
        first.setdefault(caption.video_index, caption)
    captions = [first[v] for v in sorted(first)]
    if size is None:
        return captions
    if size > len(captions):
        raise SystemExit(f"--querybank_size {size} exceeds the {len(captions)} training videos")
    picked = torch.randperm(len(captions), generator=torch.Generator().manual_seed(seed))[:size]
    return [captions[i] for i in sorted(picked.tolist())]


def write_querybank(model, text_set, video_set, dist: DistInfo, batch_size: int, workers: int, precision: str,
                    output_dir: Path, provenance: Provenance | None = None) -> dict | None:
    """sims_train_querybank.npy: (querybank captions, test videos) with its ids JSON (rows, cols, row_texts, the
    matrix's sha256 and `provenance()`); `text_set.captions` already holds the querybank's captions.
    Returns {split, shape, path} on the main process."""
    row_ids = [f"{text_set.video_ids[c.video_index]}#0" for c in text_set.captions]  # first caption of each
    sims = all_pairs_similarity(model, text_set, video_set, dist, batch_size, workers, precision)
    if sims is None:
        return None
    ids = {"rows": row_ids, "cols": list(video_set.video_ids), "row_texts": [c.text for c in text_set.captions]}
    path = save_matrix(output_dir, "sims_train_querybank", sims, ids, None if provenance is None else provenance())
    return {"split": "train_querybank", "shape": list(sims.shape), "path": str(path)}
