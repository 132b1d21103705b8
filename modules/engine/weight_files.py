"""The weight files a training run writes besides its resume file: the best evaluation's and one per epoch.

Systems name them as their papers' released checkpoints are named, so the papers' evaluation commands find them:
text-video and VQA write `pytorch_model.bin.best` and `pytorch_model.bin.<index>` (bare state dicts, 0-based epoch
index), music-video writes `model_best.pth` and `checkpoint-epoch<N>.pth` (`{epoch, state_dict, optimizer}`,
1-based epoch), as the reference's trainer did.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from modules.engine.checkpoint import atomic_write


@dataclass(frozen=True)
class WeightFiles:
    """`best` and `epoch` are file names; `epoch` may use `{epoch}` (1-based) and `{index}` (0-based).
    `with_optimizer`: each file is `{epoch, state_dict, optimizer}` instead of the bare state dict."""

    best: str = "pytorch_model.bin.best"
    epoch: str = "pytorch_model.bin.{index}"
    with_optimizer: bool = False

    def of_epoch(self, index: int) -> str:
        """The file of the epoch with 0-based `index`."""
        return self.epoch.format(epoch=index + 1, index=index)

    def patterns(self) -> tuple[str, str]:
        """Glob patterns of every file these names produce (what a run folder's training run owns)."""
        return self.best, self.epoch.format(epoch="*", index="*")

    def save(self, path: Path, state: dict[str, torch.Tensor], index: int,
             optimizer: torch.optim.Optimizer) -> None:
        """Write `state` (reference key names) for the epoch with 0-based `index`, atomically."""
        payload = {"epoch": index + 1, "state_dict": state, "optimizer": optimizer.state_dict()} \
            if self.with_optimizer else state
        atomic_write(path, lambda f: torch.save(payload, f))
