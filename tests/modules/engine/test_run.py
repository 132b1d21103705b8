"""The run lifecycle: which epoch `after_training` is told about, so a system never loads a stale best file."""
from __future__ import annotations

import argparse

import torch
from torch import nn

from modules.engine.distributed import DistInfo
from modules.engine.run import RunParts, Task, train
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection, Trainer, TrainSettings


class _Line(nn.Module):
    input_keys = ("x",)

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor, gather=None) -> dict[str, torch.Tensor]:
        return {"total": (x @ self.w).pow(2).mean()}

    def reference_state_dict(self) -> dict:
        return self.state_dict()


class _Points(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([float(i), 1.0])}


def _cfg(out) -> argparse.Namespace:
    return argparse.Namespace(epochs=2, batch_size=4, lr=1e-2, coef_lr=1.0, weight_decay=0.0, warmup_proportion=0.1,
                              max_grad_norm=1.0, grad_accum_steps=1, precision="fp32", workers=0, n_display=1,
                              seed=0, resume=0, output_dir=str(out))


def _run(tmp_path, scores: list[float]) -> tuple[dict, dict | None]:
    told = {}
    values = iter(scores)
    parts = RunParts(_Line(), _Points, validate=lambda model: {"score": next(values)},
                     after_training=lambda model, best: told.update(best))
    dist = DistInfo(0, 1, 0, torch.device("cpu"), True)
    log = RunLog(tmp_path, True, tensorboard=False)
    trainer = Trainer(parts.model, parts.train_set(), TrainSettings.from_config(_cfg(tmp_path)), dist, log, tmp_path,
                      parts.validate, Selection("score"))
    result = train(trainer, parts, Task(Selection("score")), log)
    log.close()
    return told, result


def test_after_training_gets_the_best_epoch(tmp_path):
    told, result = _run(tmp_path, [1.0, 3.0])
    assert told == {"score": 3.0, "epoch": 2} and result == {"score": 3.0}
    assert (tmp_path / "pytorch_model.bin.best").is_file()


def test_no_epoch_selected_is_said_and_no_best_file_is_written(tmp_path):
    stale = tmp_path / "pytorch_model.bin.best"  # left by an earlier run in the same folder
    stale.write_bytes(b"old")
    told, result = _run(tmp_path, [float("nan"), float("nan")])
    assert told["epoch"] == -1 and result is None
    assert stale.read_bytes() == b"old"
    assert "no epoch selected" in (tmp_path / "log.txt").read_text()
