"""The run lifecycle: which epoch `after_training` is told about, so a system never loads a stale best file."""
from __future__ import annotations

import argparse

import torch
from torch import nn

from modules.engine.distributed import DistInfo
from modules.engine.run import RunParts, Task, train
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection, Trainer, TrainSettings, evaluation_steps
from modules.engine.weight_files import WeightFiles


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


def _cfg(out, evals_per_epoch: int = 1) -> argparse.Namespace:
    return argparse.Namespace(epochs=2, batch_size=4, lr=1e-2, coef_lr=1.0, weight_decay=0.0, warmup_proportion=0.1,
                              max_grad_norm=1.0, grad_accum_steps=1, precision="fp32", workers=0, n_display=1,
                              evals_per_epoch=evals_per_epoch, seed=0, resume=0, output_dir=str(out))


def _run(tmp_path, scores: list[float], evals_per_epoch: int = 1,
         weight_files: WeightFiles = WeightFiles()) -> tuple[dict, dict | None]:
    told = {}
    values = iter(scores)
    parts = RunParts(_Line(), _Points, validate=lambda model: {"score": next(values)},
                     after_training=lambda model, best: told.update(best))
    dist = DistInfo(0, 1, 0, torch.device("cpu"), True)
    log = RunLog(tmp_path, True, tensorboard=False)
    settings = TrainSettings.from_config(_cfg(tmp_path, evals_per_epoch))
    trainer = Trainer(parts.model, parts.train_set(), settings, dist, log, tmp_path, parts.validate,
                      Selection("score"), weight_files)
    result = train(trainer, parts, Task(Selection("score")), log)
    log.close()
    return told, result


def test_after_training_gets_the_best_epoch(tmp_path):
    told, result = _run(tmp_path, [1.0, 3.0])
    assert told == {"score": 3.0, "epoch": 2, "step": 4} and result == {"score": 3.0}
    assert (tmp_path / "pytorch_model.bin.best").is_file()


def test_evaluation_steps_are_evenly_spaced_and_end_the_epoch():
    assert evaluation_steps(10, 1) == [10] and evaluation_steps(10, 2) == [5, 10]
    assert evaluation_steps(3, 2) == [2, 3] and evaluation_steps(1, 3) == [1]


def test_several_evaluations_an_epoch_can_each_select_the_best(tmp_path):
    # 2 steps an epoch, evaluated after each: the best is the first evaluation of epoch 2, mid-epoch.
    told, result = _run(tmp_path, [1.0, 2.0, 5.0, 3.0], evals_per_epoch=2)
    assert told == {"score": 5.0, "epoch": 2, "step": 3} and result == {"score": 5.0}
    log = (tmp_path / "log.txt").read_text()
    assert "epoch 1 (step 1 of 2): score 1" in log and "epoch 2 (step 1 of 2): score 5" in log


def test_a_system_names_its_weight_files_and_their_format(tmp_path):
    files = WeightFiles(best="model_best.pth", epoch="checkpoint-epoch{epoch}.pth", content="epoch_state_dict_optimizer")
    _run(tmp_path, [1.0, 3.0], weight_files=files)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["checkpoint-epoch1.pth", "checkpoint-epoch2.pth",
                                                             "model_best.pth"]
    best = torch.load(tmp_path / "model_best.pth", weights_only=True)
    assert best["epoch"] == 2 and set(best) == {"epoch", "state_dict", "optimizer"}
    assert torch.equal(best["state_dict"]["w"], torch.load(tmp_path / "checkpoint-epoch2.pth", weights_only=True)["state_dict"]["w"])
    assert not list(tmp_path.glob("pytorch_model.bin*"))


def test_no_epoch_selected_is_said_and_no_best_file_is_written(tmp_path):
    stale = tmp_path / "pytorch_model.bin.best"  # left by an earlier run in the same folder
    stale.write_bytes(b"old")
    told, result = _run(tmp_path, [float("nan"), float("nan")])
    assert told["epoch"] == -1 and result is None
    assert stale.read_bytes() == b"old"
    assert "no epoch selected" in (tmp_path / "log.txt").read_text()
