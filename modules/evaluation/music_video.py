"""Music-video evaluation: every clip encoded once (sharded over processes), the two similarity terms scored
music rows x video columns, M-V (music -> video) and V-M (video -> music) metrics, the matrices saved for QB-Norm.

The dataset pairs music i with video i, so the ground truth of row i is column i in both directions.
"""
from __future__ import annotations

from pathlib import Path
import numpy as np
import torch
from tqdm import tqdm

from modules.engine.checkpoint import atomic_write
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


def both_directions(sims: np.ndarray, suffix: str = "") -> dict[str, float]:
    """M-V and V-M metrics (`m2v_R1{suffix}`, ...) of (music, video) `sims`, music i paired with video i."""
    out = {}
    for direction, transpose in DIRECTIONS.items():
        metrics = retrieval_metrics(sims.T if transpose else sims)
        out.update({f"{direction}_{k}{suffix}": float(v) for k, v in metrics.items()})
    out["chance_R1"] = 100.0 / sims.shape[0]
    out["num_test"] = int(sims.shape[0])
    return out


Embeddings = tuple[dict, dict]  # (music, video) embeddings of a set of clips, `encode_clips`


@torch.no_grad()
def encode_sets(model, sets: list, dist: DistInfo, batch_size: int, workers: int, precision: str
                ) -> list[Embeddings] | None:
    """Every clip of each data set of `sets` encoded once, in eval mode; None on the other processes."""
    with evaluating(model):
        encoded = [encode_clips(model, clips, dist, batch_size, workers, precision) for clips in sets]
    return encoded if dist.is_main else None


def _numpy(terms: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    return [t.float().cpu().numpy() for t in terms]


@torch.no_grad()
def test_terms(model, test: Embeddings, beat_orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """(feature, beat) terms, each (N, N) float32, music rows x video columns.

    `beat_orientation="reference"` gives the beat term as the published code added it: its (video, music)
    matrix put in place of the (music, video) one, so entry (a, b) scores candidate b with video a."""
    with evaluating(model):  # the beat pooling has dropout
        feature, beat = _numpy(model.similarity_terms(*test))
    return feature, (beat.T.copy() if beat_orientation == "reference" else beat)


@torch.no_grad()
def querybank_terms(model, bank: Embeddings, test: Embeddings) -> dict[str, list[np.ndarray]]:
    """Per direction, the (querybank queries, test gallery) feature and beat terms: training music x test videos
    for M-V, training videos x test music for V-M."""
    (bank_music, bank_video), (test_music, test_video) = bank, test
    with evaluating(model):
        m2v = model.similarity_terms(bank_music, test_video)
        v2m = tuple(t.T for t in model.similarity_terms(test_music, bank_video))
    return {"m2v": _numpy(m2v), "v2m": _numpy(v2m)}


def save_terms(output_dir: Path, label: str, feature: np.ndarray, beat: np.ndarray) -> None:
    """sims_<label>.npy (the combined similarity), sims_<label>_feature.npy and sims_<label>_beat.npy."""
    for name, matrix in (("", feature + BEAT_WEIGHT * beat), ("_feature", feature), ("_beat", beat)):
        atomic_write(output_dir / f"sims_{label}{name}.npy", lambda f, m=matrix: np.save(f, m))
