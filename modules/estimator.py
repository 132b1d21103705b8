"""Glue of the Banzhaf-interaction estimator: trained on labels generated from a frozen retrieval model.

As the reference: the retrieval model (CLIP, temporal blocks, entity-level weights) is frozen; for every
caption-video pair of a batch its entity-level word-frame map is computed, the Banzhaf-interaction label of that
map is drawn by Monte Carlo, and the estimator learns it with a mean squared error over the real cells.
Unlike the reference, a held-out split is measured every epoch: MSE and the rank correlation with the labels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.text_video.estimator import BanzhafEstimator
from models.text_video.interaction import paired_maps
from modules import text_video
from modules.banzhaf import DEFINITIONS, banzhaf_labels
from modules.engine.distributed import DistInfo, gather_rows
from modules.engine.flags import add_run_flags, add_train_flags
from modules.engine.run import RunParts, Task
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection
from modules.evaluation.common import evaluating, shard_loader

TASK = Task(Selection("mse", higher_is_better=False, summary_keys=("mse", "spearman")))


def entity_maps(model: nn.Module, text_ids, text_mask, frames, video_mask) -> tuple:
    """Diagonal entity-level maps of a batch of pairs: ((B, T, V) maps, text weights (B, T), video weights (B, V))."""
    text = model.interaction.prepare_text(model.encode_text(text_ids, text_mask), text_mask)
    video = model.interaction.prepare_video(model.encode_video(frames, video_mask), video_mask)
    return paired_maps(text, video), text.weights, video.weights


class EstimatorTask(nn.Module):
    """A frozen retrieval model and the estimator it teaches; forward gives {"total": MSE} for the Trainer."""

    input_keys = ("text_ids", "text_mask", "video", "video_mask")

    def __init__(self, retrieval: nn.Module, estimator: BanzhafEstimator, samples: int = 100,
                 definition: str = "reference"):
        super().__init__()
        self.retrieval = retrieval.requires_grad_(False).eval()
        self.estimator = estimator
        self.samples, self.definition = samples, definition

    @property
    def input_spec(self) -> dict:
        return self.retrieval.input_spec

    def train(self, mode: bool = True) -> "EstimatorTask":
        super().train(mode)
        self.retrieval.eval()  # frozen: no dropout, no batch statistics
        return self

    @torch.no_grad()
    def maps_and_labels(self, text_ids, text_mask, frames, video_mask) -> tuple[torch.Tensor, torch.Tensor]:
        maps, text_weight, video_weight = entity_maps(self.retrieval, text_ids, text_mask, frames, video_mask)
        labels = banzhaf_labels(maps, text_mask, video_mask, text_weight, video_weight, samples=self.samples,
                                definition=self.definition)
        return maps, labels

    def predict(self, maps: torch.Tensor, text_mask: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, V) estimates with padded cells at 0, as the labels have them."""
        cells = text_mask[:, :, None].to(maps.dtype) * video_mask[:, None, :].to(maps.dtype)
        return self.estimator(maps) * cells

    def forward(self, text_ids, text_mask, frames, video_mask, gather=None) -> dict[str, torch.Tensor]:
        # Labels depend on one pair only, so nothing is gathered: DDP's average of per-process means is the mean.
        maps, labels = self.maps_and_labels(text_ids, text_mask, frames, video_mask)
        return {"total": F.mse_loss(self.predict(maps, text_mask, video_mask).float(), labels.float())}

    def reference_state_dict(self) -> dict:
        """The estimator alone, keys `cnn1.*`, `bn.*`, `cnn2.*`, `Q`, `K`, `V` (what `--estimator` loads)."""
        return self.estimator.state_dict()


def rank_correlations(pred: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(B,) Spearman correlation between estimates and labels over each map's real cells (NaN if < 2 cells)."""
    out = torch.full((len(pred),), float("nan"), dtype=torch.float64)
    for i, (p, y, c) in enumerate(zip(pred, labels, cells.bool())):
        if c.sum() >= 2:
            ranks = torch.stack([p[c].argsort().argsort(), y[c].argsort().argsort()]).double()
            out[i] = torch.corrcoef(ranks)[0, 1]
    return out


@torch.no_grad()
def evaluate_estimator(task: EstimatorTask, dataset, dist: DistInfo, batch_size: int, workers: int) -> dict | None:
    """Held-out MSE and rank correlation; labels are drawn with a fixed seed so epochs are comparable."""
    errors, correlations = [], []
    with evaluating(task):
        torch.manual_seed(0)
        for batch in tqdm(shard_loader(dataset, dist, batch_size, workers), desc="held-out labels",
                          disable=not dist.is_main, leave=False):
            text_ids, text_mask, frames, video_mask = (batch[k].to(dist.device) for k in task.input_keys)
            maps, labels = task.maps_and_labels(text_ids, text_mask, frames, video_mask)
            pred = task.predict(maps, text_mask, video_mask)
            cells = text_mask[:, :, None] * video_mask[:, None, :]
            errors.append(((pred - labels) ** 2).sum((1, 2)) / cells.sum((1, 2)))
            correlations.append(rank_correlations(pred.cpu(), labels.cpu(), cells.cpu()))
    mse = gather_rows(torch.cat(errors))
    rho = gather_rows(torch.cat(correlations).to(dist.device))
    if not dist.is_main:
        return None
    return {"mse": float(mse.mean()), "spearman": float(rho.nanmean()), "num_pairs": int(len(mse))}


def parser() -> argparse.ArgumentParser:
    """banzhaf_estimator.py: the retrieval model's data and model flags, the estimator's, training."""
    p = argparse.ArgumentParser(description="Train the Banzhaf-interaction estimator on labels from a frozen "
                                            "retrieval model.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    text_video.add_data_flags(p)
    text_video.add_model_flags(p, training=False)
    g = p.add_argument_group("estimator")
    g.add_argument("--banzhaf_samples", type=int, default=100, help="Monte-Carlo coalitions per label")
    g.add_argument("--banzhaf_definition", default="reference", choices=list(DEFINITIONS),
                   help="the reference's label, or the textbook Banzhaf interaction index")
    add_train_flags(p, do_eval=False)
    add_run_flags(p)
    return p


# Keys of a retrieval training preset (e.g. config/demo.yaml) that the estimator's run does not use.
PRESET_KEYS_NOT_USED = text_video.TRAINING_MODEL_FLAGS | {"do_eval"}


def build(cfg: argparse.Namespace, dist: DistInfo, log: RunLog, output_dir: Path) -> RunParts:
    task = EstimatorTask(text_video.build_model(cfg), BanzhafEstimator(), cfg.banzhaf_samples,
                         cfg.banzhaf_definition).to(dist.device)
    train_set, = text_video.datasets(cfg, "train", task.input_spec, ("pairs",))
    held_out, = text_video.datasets(cfg, "test", task.input_spec, ("pairs",))
    log.info(f"estimator: {len(train_set)} training pairs, {len(held_out)} held-out pairs, "
             f"{cfg.banzhaf_samples} samples per label ({cfg.banzhaf_definition} definition)")

    def validate(model: EstimatorTask) -> dict | None:
        return evaluate_estimator(model, held_out, dist, cfg.batch_size_val, cfg.workers)
    return RunParts(task, lambda: train_set, validate)
