"""HAP-VR training step as one module (the engine's model contract): clip pairs -> frozen region features and
DINO features -> the similarity network's all-pairs forward over the global batch -> the weighted losses.

A process's batch (dataloaders/video_video/pairs.py) holds its B weak views then its B strong views, `videos`
(2B, T, C, H, W) uint8, and which of them are positives, `labels` (2B, 2B). Only the similarity network trains; the
feature extractor and the teacher are frozen (eval mode, no gradient), so their outputs are gathered across
processes without gradient (rank order) and every process scores the whole global batch, positives within each
process's block: one and N processes compute the same loss on the same global batch and take the same step.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from models.video_video.feature_extractor import imagenet_normalise
from models.video_video.losses import HapvrLoss
from models.video_video.network import HapvrNetwork
from models.video_video.pseudo_labels import pseudo_labels

def in_batches(module: nn.Module, frames: torch.Tensor, batch: int) -> torch.Tensor:
    """`module` over (F, ...) frames in batches of `batch` frames (the reference's --batch_sz_fe)."""
    return torch.cat([module(part) for part in frames.split(batch)])


def global_labels(labels: torch.Tensor, processes: int) -> torch.Tensor:
    """Gathered per-process labels (P * 2B, 2B) -> the global batch's (P * 2B, P * 2B): no positive across blocks."""
    return torch.block_diag(*labels.split(labels.shape[1])) if processes > 1 else labels


class HapvrTrainingModel(nn.Module):
    """`network` trains; `extractor` (normalised frames -> (F, 9, D) region features) and `teacher` (normalised
    frames -> (F, 384), or None: no frame loss) are frozen. `args`: the run's flags, saved in every checkpoint as
    the published format's `args`."""

    input_keys = ("videos", "labels")

    def __init__(self, network: HapvrNetwork, extractor: nn.Module, teacher: Optional[nn.Module], loss: HapvrLoss,
                 args: dict, batch_sz_fe: int = 512, pseudo_label_rates: tuple[float, float] = (0.35, 0.35)):
        super().__init__()
        self.network, self.loss, self.args = network, loss, dict(args)
        # Frozen parts stay out of the module tree: no parameters for the optimiser or DDP, no state-dict keys.
        self._frozen = {"extractor": extractor.eval().requires_grad_(False),
                        "teacher": teacher.eval().requires_grad_(False) if teacher is not None else None}
        self.batch_sz_fe, self.pseudo_label_rates = batch_sz_fe, pseudo_label_rates

    @property
    def extractor(self) -> nn.Module:
        """The frozen frame feature extractor (normalised frames -> (F, 9, D))."""
        return self._frozen["extractor"]

    def _apply(self, fn, recurse=True):  # .to(device) moves the frozen parts too
        for part in self._frozen.values():
            if part is not None:
                part._apply(fn, recurse)
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def frozen_features(self, videos: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(N, T, 3, H, W) uint8 -> region features (N, T, 9, D) and DINO features (N, T, 384) or None."""
        num, frames = videos.shape[:2]
        flat = imagenet_normalise(videos.flatten(0, 1))
        regions = in_batches(self._frozen["extractor"], flat, self.batch_sz_fe)
        regions = regions.view(num, frames, *regions.shape[1:])
        teacher = self._frozen["teacher"]
        dino = None if teacher is None else in_batches(teacher, flat, self.batch_sz_fe).view(num, frames, -1)
        return regions.float(), None if dino is None else dino.float()

    def forward(self, videos: torch.Tensor, labels: torch.Tensor,
                gather: Optional[Callable] = None) -> dict[str, torch.Tensor]:
        regions, dino = self.frozen_features(videos)
        if gather is not None:
            regions, gathered = gather(regions.contiguous()), gather(labels.contiguous())
            processes = gathered.shape[0] // labels.shape[0]
            labels = global_labels(gathered, processes)
            dino = gather(dino.contiguous()) if dino is not None else None
        frame_sim, video_sim, reg = self.network.training_forward(regions)
        pos, neg = pseudo_labels(dino, *self.pseudo_label_rates) if dino is not None else (None, None)
        return self.loss(frame_sim, video_sim, reg, labels, pos, neg)

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """The similarity network's weights under the published keys (`attention.*`, `comparator_module.*`)."""
        return self.network.state_dict()

    def checkpoint_args(self) -> dict:
        return dict(self.args)
