"""The weight files a training run writes besides its resume file: the best evaluation's and one per epoch.

Systems name them as their papers' released checkpoints are named, so the papers' evaluation commands find them:
text-video and VQA write `pytorch_model.bin.best` and `pytorch_model.bin.<index>` (bare state dicts, 0-based epoch
index), music-video writes `model_best.pth` and `checkpoint-epoch<N>.pth` (`{epoch, state_dict, optimizer}`,
1-based epoch), as the reference's trainer did, HAP-VR `{args, model}` (its published checkpoints; `args` an
argparse.Namespace of the run's flags, from the model's `checkpoint_args()`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from modules.engine.checkpoint import atomic_write


@dataclass(frozen=True)
class WeightFiles:
    """`best` and `epoch` are file names; `epoch` may use `{epoch}` (1-based) and `{index}` (0-based).
    `content`: "state_dict" (the model's `reference_state_dict()`), "epoch_state_dict_optimizer" or "args_model"."""

    best: str = "pytorch_model.bin.best"
    epoch: str = "pytorch_model.bin.{index}"
    content: str = "state_dict"

    def __post_init__(self):
        if self.content not in CONTENTS:
            raise ValueError(f"content {self.content!r}: expected one of {', '.join(CONTENTS)}")

    def of_epoch(self, index: int) -> str:
        """The file of the epoch with 0-based `index`."""
        return self.epoch.format(epoch=index + 1, index=index)

    def patterns(self) -> tuple[str, str]:
        """Glob patterns of every file these names produce (what a run folder's training run owns)."""
        return self.best, self.epoch.format(epoch="*", index="*")

    def save(self, path: Path, model: nn.Module, index: int, optimizer: torch.optim.Optimizer) -> None:
        """Write `model`'s weights (reference key names) for the epoch with 0-based `index`, atomically."""
        payload = CONTENTS[self.content](model, index, optimizer)
        atomic_write(path, lambda f: torch.save(payload, f))


CONTENTS = {
    "state_dict": lambda model, index, optimizer: model.reference_state_dict(),
    "epoch_state_dict_optimizer": lambda model, index, optimizer: {
        "epoch": index + 1, "state_dict": model.reference_state_dict(), "optimizer": optimizer.state_dict()},
    "args_model": lambda model, index, optimizer: {
        "args": argparse.Namespace(**model.checkpoint_args()), "model": model.reference_state_dict()},
}
