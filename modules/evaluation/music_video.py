"""Music-video evaluation: every clip encoded once (sharded over processes), the two similarity terms scored
music rows x video columns, M-V (music -> video) and V-M (video -> music) metrics, the matrices saved for QB-Norm.

The dataset pairs music i with video i, so the ground truth of row i is column i in both directions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from modules.engine.distributed import DistInfo, gather_rows
from modules.engine.precision import autocast_context
from modules.evaluation.common import evaluating, shard_loader
from modules.evaluation.metrics import retrieval_metrics

DIRECTIONS = {"m2v": False, "v2m": True}  # direction -> score the transposed matrix (video rows)
BEAT_WEIGHT = 0.8  # the reference's weight of the beat term


@torch.no_grad()
def encode_clips(model, dataset, dist: DistInfo, batch_size: int, workers: int, precision: str) -> tuple[dict, dict]:
    """Music and video embeddings of every clip of `dataset`, gathered in dataset order on every process."""
    music, video = [], []
    loader = shard_loader(dataset, dist, batch_size, workers)
    for batch in tqdm(loader, desc="encode clips", disable=not dist.is_main, leave=False):
        batch = {k: v.to(dist.device, non_blocking=True) for k, v in batch.items()}
        with autocast_context(dist.device, precision):
            music.append(model.encode_music(batch["music"], batch["music_beat"]))
            video.append(model.encode_video(batch["video"], batch["video_beat"]))

    def joined(parts: list[dict]) -> dict:
        return {key: gather_rows(torch.cat([p[key].float() for p in parts])) for key in parts[0]}
    return joined(music), joined(video)


def direction_metrics(sims: np.ndarray, direction: str) -> dict[str, float]:
    """R1/R5/R10/R50, MdR, MnR of (music, video) `sims` with music i paired with video i."""
    return retrieval_metrics(sims.T if DIRECTIONS[direction] else sims)


def both_directions(sims: np.ndarray, suffix: str = "") -> dict[str, float]:
    out = {}
    for direction in DIRECTIONS:
        out.update({f"{direction}_{k}{suffix}": float(v) for k, v in direction_metrics(sims, direction).items()})
    out["chance_R1"] = 100.0 / sims.shape[0]
    out["num_test"] = int(sims.shape[0])
    return out


@torch.no_grad()
def score(model, dataset, dist: DistInfo, batch_size: int, workers: int, precision: str,
          beat_orientation: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(feature, beat) terms, each (N, N) float32, music rows x video columns, on the main process.

    `beat_orientation="reference"` gives the beat term as the published code added it: its (video, music)
    matrix put in place of the (music, video) one, so entry (a, b) scores candidate b with video a."""
    with evaluating(model):
        music, video = encode_clips(model, dataset, dist, batch_size, workers, precision)
        if not dist.is_main:
            return None
        feature, beat = model.similarity_terms(music, video)
    feature, beat = feature.float().cpu().numpy(), beat.float().cpu().numpy()
    return feature, (beat.T.copy() if beat_orientation == "reference" else beat)


def save_terms(output_dir: Path, split: str, feature: np.ndarray, beat: np.ndarray, ids: list[str],
               write: Callable[[Path, np.ndarray], None]) -> None:
    """sims_<split>.npy (the combined similarity), sims_<split>_feature.npy and sims_<split>_beat.npy."""
    write(output_dir / f"sims_{split}.npy", feature + BEAT_WEIGHT * beat)
    write(output_dir / f"sims_{split}_feature.npy", feature)
    write(output_dir / f"sims_{split}_beat.npy", beat)
