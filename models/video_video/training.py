"""HAP-VR training step as one module (the engine's model contract): raw clip pairs -> frozen region features and
DINO features -> the similarity network's all-pairs forward over the global batch -> the weighted losses.

A batch holds B clips, each as two views (weak, strong): `clips` (B, 2, T, 3, H, W), ImageNet-normalised. The views
are laid out as 2B videos [clip0-weak, clip0-strong, clip1-weak, ...], positives the two views of a clip. Only the
similarity network trains; the feature extractor and the teacher are frozen (eval mode, no gradient), so their
outputs are gathered across processes without gradient and every process scores the whole global batch: one and
N processes compute the same loss and take the same step.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from models.video_video.losses import HapvrLoss
from models.video_video.network import HapvrNetwork
from models.video_video.pseudo_labels import pseudo_labels


def in_batches(module: nn.Module, frames: torch.Tensor, batch: int) -> torch.Tensor:
    """`module` over (F, ...) frames in batches of `batch` frames (the reference's --batch_sz_fe)."""
    return torch.cat([module(part) for part in frames.split(batch)])


def pair_labels(clips: int, device: torch.device) -> torch.Tensor:
    """(2B, 2B) positives of the interleaved layout: the two views of a clip (and each view with itself)."""
    owner = torch.arange(2 * clips, device=device) // 2
    return (owner[:, None] == owner[None, :]).float()


class HapvrTrainingModel(nn.Module):
    """`network` trains; `extractor` (frames -> (F, 9, D) region features) and `teacher` (frames -> (F, 384), or
    None: no frame loss) are frozen. `args`: the run's flags, saved in every checkpoint as the published format's
    `args`."""

    input_keys = ("clips",)

    def __init__(self, network: HapvrNetwork, extractor: nn.Module, teacher: Optional[nn.Module], loss: HapvrLoss,
                 args: dict, batch_sz_fe: int = 512, pseudo_label_rates: tuple[float, float] = (0.35, 0.35)):
        super().__init__()
        self.network, self.loss, self.args = network, loss, dict(args)
        # Frozen parts are kept out of the module tree: no parameters for the optimiser or DDP, no state-dict keys.
        self._frozen = {"extractor": extractor.eval().requires_grad_(False),
                        "teacher": teacher.eval().requires_grad_(False) if teacher is not None else None}
        self.batch_sz_fe, self.pseudo_label_rates = batch_sz_fe, pseudo_label_rates

    def _apply(self, fn, recurse=True):  # .to(device) moves the frozen parts too
        for part in self._frozen.values():
            if part is not None:
                part._apply(fn, recurse)
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def frozen_features(self, clips: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, 2, T, 3, H, W) -> region features (2B, T, 9, D) and DINO features (2B, T, 384) or None."""
        batch, views, frames = clips.shape[:3]
        flat = clips.flatten(0, 2)
        regions = in_batches(self._frozen["extractor"], flat, self.batch_sz_fe)
        regions = regions.view(batch * views, frames, *regions.shape[1:])
        teacher = self._frozen["teacher"]
        dino = None if teacher is None else in_batches(teacher, flat, self.batch_sz_fe).view(batch * views, frames, -1)
        return regions, dino

    def forward(self, clips: torch.Tensor, gather: Optional[Callable] = None) -> dict[str, torch.Tensor]:
        regions, dino = self.frozen_features(clips)
        if gather is not None:
            regions = gather(regions.contiguous())
            dino = gather(dino.contiguous()) if dino is not None else None
        frame_sim, video_sim, reg = self.network.training_forward(regions)
        labels = pair_labels(regions.shape[0] // 2, regions.device)
        pos, neg = pseudo_labels(dino, *self.pseudo_label_rates) if dino is not None else (None, None)
        return self.loss(frame_sim, video_sim, reg, labels, pos, neg)

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """The similarity network's weights under the published keys (`attention.*`, `comparator_module.*`)."""
        return self.network.state_dict()

    def checkpoint_args(self) -> dict:
        return dict(self.args)

    def log_values(self) -> dict[str, float]:
        return {}
