"""Retrieval evaluation: features once per item, similarities in bounded-memory chunks, metrics, saved matrices.

Each process encodes a contiguous shard of the captions and of the videos; the shards are gathered in rank order,
so the matrix, and the metrics, do not depend on the number of processes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from modules.engine.checkpoint import atomic_write
from modules.engine.distributed import DistInfo, gather_rows
from modules.engine.precision import autocast_context
from modules.evaluation.common import evaluating, shard_loader
from modules.engine.provenance import file_digest, write_json
from modules.evaluation.metrics import geometric_mean, retrieval_metrics, v2t_metrics

Provenance = Callable[[], dict]


@torch.no_grad()
def encode_items(model, loader: DataLoader, kind: str, dist: DistInfo, precision: str) -> tuple:
    """Encodes every caption (`kind="text"`) or video (`kind="video"`) once: ((N, L, D) feats, (N, L) mask)."""
    feats, masks = [], []
    for batch in tqdm(loader, desc=f"encode {kind}s", disable=not dist.is_main, leave=False):
        with autocast_context(dist.device, precision):
            if kind == "text":
                mask = batch["text_mask"].to(dist.device, non_blocking=True)
                out = model.encode_text(batch["text_ids"].to(dist.device, non_blocking=True), mask)
            else:
                mask = batch["video_mask"].to(dist.device, non_blocking=True)
                out = model.encode_video(batch["video"].to(dist.device, non_blocking=True), mask)
        feats.append(out.float())
        masks.append(mask)
    return gather_rows(torch.cat(feats)), gather_rows(torch.cat(masks))


@torch.no_grad()
def similarity_matrix(model, text: tuple, video: tuple, precision: str, device: torch.device) -> np.ndarray:
    """(Nt, Nv) matrix; per-item preparation once, pairs scored in chunks inside the model's head."""
    with autocast_context(device, precision):
        text_items = model.prepare_text(*text)
        video_items = model.prepare_video(*video)
        sims = model.score(text_items, video_items)
    return sims.float().cpu().numpy()


def compute_metrics(sims: np.ndarray, text_to_video: np.ndarray) -> dict:
    t2v = retrieval_metrics(sims, text_to_video=text_to_video)
    v2t = v2t_metrics(sims, text_to_video=text_to_video)
    out = {f"t2v_{k}": float(v) for k, v in t2v.items()}
    out.update({f"v2t_{k}": float(v) for k, v in v2t.items()})
    out["t2v_GM"] = float(geometric_mean(t2v))
    out["num_test"] = int(sims.shape[0])
    out["num_videos"] = int(sims.shape[1])
    out["chance_R1"] = 100.0 / sims.shape[1]
    return out


def save_matrix(output_dir: Path, name: str, sims: np.ndarray, ids: dict, provenance: dict | None) -> Path:
    """<name>.npy and <name>_ids.json (`ids` plus the matrix file's sha256 and `provenance`), atomically."""
    path = output_dir / f"{name}.npy"
    atomic_write(path, lambda f: np.save(f, sims))
    write_json(output_dir / f"{name}_ids.json", {**ids, "sims_sha256": file_digest(path), "provenance": provenance},
               indent=None)
    return path


def save_evaluation(output_dir: Path, split: str, sims: np.ndarray, row_ids: list[str], col_ids: list[str],
                    text_to_video: np.ndarray, metrics: dict, provenance: dict | None = None) -> None:
    """Writes sims_<split>.npy, sims_<split>_ids.json and, last, metrics_<split>.json (the metrics and a
    "provenance" key, see modules/engine/provenance.py) into the run folder, each atomically."""
    ids = {"rows": row_ids, "cols": col_ids, "text_to_video": text_to_video.tolist()}
    save_matrix(output_dir, f"sims_{split}", sims, ids, provenance)
    write_json(output_dir / f"metrics_{split}.json", {**metrics, "provenance": provenance})


def row_ids_of(dataset) -> list[str]:
    """`<video_id>#<n>`: the n-th caption of that video, in dataset order."""
    seen: dict[int, int] = {}
    ids = []
    for video in dataset.text_to_video.tolist():
        n = seen.get(video, 0)
        seen[video] = n + 1
        ids.append(f"{dataset.video_ids[video]}#{n}")
    return ids


def all_pairs_similarity(model, text_set, video_set, dist: DistInfo, batch_size: int, workers: int,
                         precision: str) -> np.ndarray | None:
    """(texts, videos) similarities of two data sets in eval mode (the per-item preparation too: HBI's merging
    draws density noise in training mode); on the main process, None elsewhere."""
    with evaluating(model):
        text = encode_items(model, shard_loader(text_set, dist, batch_size, workers), "text", dist, precision)
        video = encode_items(model, shard_loader(video_set, dist, batch_size, workers), "video", dist, precision)
        return similarity_matrix(model, text, video, precision, dist.device) if dist.is_main else None


def evaluate(model, text_set, video_set, dist: DistInfo, batch_size: int, workers: int, precision: str,
             output_dir: Path | None = None, split: str = "test", provenance: Provenance | None = None
             ) -> dict | None:
    """Full evaluation; returns the metrics on the main process (None elsewhere). With `output_dir` the main
    process saves the matrix, its ids and the metrics there (`save_evaluation`), with `provenance()`."""
    sims = all_pairs_similarity(model, text_set, video_set, dist, batch_size, workers, precision)
    if sims is None:
        return None
    text_to_video = np.asarray(text_set.text_to_video)
    metrics = compute_metrics(sims, text_to_video)
    if output_dir is not None:
        save_evaluation(output_dir, split, sims, row_ids_of(text_set), list(video_set.video_ids), text_to_video,
                        metrics, None if provenance is None else provenance())
    return metrics


def load_text_to_video(path: Path, num_texts: int, num_videos: int) -> np.ndarray:
    """The `text_to_video` list of an ids file (`save_evaluation`), checked against the matrix shape."""
    try:
        ids = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the ids JSON ({err})") from None
    if not isinstance(ids, dict) or "text_to_video" not in ids:
        raise ValueError(f"{path}: expected a JSON object with key 'text_to_video' (and 'rows', 'cols')")
    for key, expected in (("rows", num_texts), ("cols", num_videos), ("text_to_video", num_texts)):
        if key in ids and len(ids[key]) != expected:
            raise ValueError(f"{path}: key '{key}' has {len(ids[key])} entries, the test matrix needs {expected}")
    return np.asarray(ids["text_to_video"], dtype=np.int64)
