"""Training the Banzhaf-interaction estimator on labels generated from a frozen retrieval model.

As the reference: the retrieval model (CLIP, temporal blocks, entity-level weights) is frozen; for every
caption-video pair of a batch its entity-level word-frame map is computed, the Banzhaf-interaction label of that
map is drawn by Monte Carlo, and the estimator learns it with a mean squared error over the real cells.
Unlike the reference, a held-out split is measured every epoch: MSE and the rank correlation with the labels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from models.text_video.estimator import BanzhafEstimator
from models.text_video.interaction import paired_maps
from modules.banzhaf import banzhaf_labels
from modules.engine.distributed import DistInfo, gather_rows, shard_indices


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
    was_training = task.training
    task.eval()
    torch.manual_seed(0)
    shard = Subset(dataset, list(shard_indices(len(dataset), dist.rank, dist.world_size)))
    errors, correlations = [], []
    for batch in tqdm(DataLoader(shard, batch_size=batch_size, num_workers=workers), desc="held-out labels",
                      disable=not dist.is_main, leave=False):
        text_ids, text_mask, frames, video_mask = (batch[k].to(dist.device) for k in
                                                   ("text_ids", "text_mask", "video", "video_mask"))
        maps, labels = task.maps_and_labels(text_ids, text_mask, frames, video_mask)
        pred = task.predict(maps, text_mask, video_mask)
        cells = text_mask[:, :, None] * video_mask[:, None, :]
        errors.append(((pred - labels) ** 2).sum((1, 2)) / cells.sum((1, 2)))
        correlations.append(rank_correlations(pred.cpu(), labels.cpu(), cells.cpu()))
    task.train(was_training)
    mse = gather_rows(torch.cat(errors))
    rho = gather_rows(torch.cat(correlations).to(dist.device))
    if not dist.is_main:
        return None
    return {"mse": float(mse.mean()), "spearman": float(rho.nanmean()), "num_pairs": int(len(mse))}
