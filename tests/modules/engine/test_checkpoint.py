"""Checkpoints: weights_only loading, exact resume, atomic writes, clear errors."""
from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import modules.engine.checkpoint as ckpt_mod
from models.weights import CheckpointError
from modules.engine.checkpoint import latest_checkpoint, load_checkpoint, remove_stale_temporaries, save_checkpoint
from modules.engine.errors import RunError
from modules.engine.optim import build_scheduler, param_groups

TOTAL_STEPS = 12


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 2))


def _optimizer(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return torch.optim.AdamW(param_groups(model, lr=1e-2, coef_lr=1.0, weight_decay=0.1), lr=1e-2)


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> None:
    """One step whose data come from all three RNGs, so a missed RNG state breaks equality."""
    x = torch.randn(4, 6) + torch.from_numpy(np.random.rand(4, 6).astype(np.float32))
    x = x * random.uniform(0.5, 1.5)
    loss = model(x).pow(2).mean()  # dropout draws from torch's RNG too
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _run(kind: str, steps: range, state: tuple | None = None) -> tuple:
    if state is None:
        _seed(0)
        model = _model()
        optimizer = _optimizer(kind, model)
        state = (model, optimizer, build_scheduler(optimizer, TOTAL_STEPS, 0.25))
    for _ in steps:
        _train_step(*state)
    return state


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_interrupted_run_resumes_exactly(tmp_path: Path, kind: str) -> None:
    full_model, _, _ = _run(kind, range(TOTAL_STEPS))

    model, optimizer, scheduler = _run(kind, range(5))
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, step=5, epoch=1,
                    extra={"best_r1": 42.5})
    _seed(123)  # a fresh process: other weights, other RNG streams
    model = _model()
    optimizer = _optimizer(kind, model)
    scheduler = build_scheduler(optimizer, TOTAL_STEPS, 0.25)
    info = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    assert info == {"step": 5, "epoch": 1, "extra": {"best_r1": 42.5}}
    _run(kind, range(5, TOTAL_STEPS), (model, optimizer, scheduler))

    for a, b in zip(full_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_loads_with_weights_only_and_stores_rng(tmp_path: Path) -> None:
    model = _model()
    optimizer = _optimizer("adamw", model)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    path = tmp_path / "ck.pt"
    save_checkpoint(path, model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, 10),
                    scaler=scaler, step=3, epoch=0)
    raw = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "step", "epoch", "rng", "extra"} <= set(raw)
    assert set(raw["rng"]) >= {"python", "numpy", "torch"}
    assert raw["scaler"]["scale"] == scaler.get_scale()
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path / "last.pt", model=model, step=0, epoch=0)
    assert latest_checkpoint(tmp_path) == tmp_path / "last.pt"


def test_restores_rng_streams(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    _seed(7)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    random.gauss(0, 1)
    save_checkpoint(path, model=_model(), step=0, epoch=0)
    expected = (random.random(), random.gauss(0, 1), np.random.randn(), torch.rand(1))
    _seed(8)
    load_checkpoint(path, model=_model())
    assert (random.random(), random.gauss(0, 1), np.random.randn()) == expected[:3]
    assert torch.equal(torch.rand(1), expected[3])


def test_ddp_style_wrapper_is_unwrapped(tmp_path: Path) -> None:
    class Wrapper(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.module = inner

    path = tmp_path / "ck.pt"
    save_checkpoint(path, model=Wrapper(_model()), step=0, epoch=0)
    assert all(not k.startswith("module.") for k in torch.load(path, weights_only=True)["model"])
    load_checkpoint(path, model=_model())


def test_failed_save_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=_model(), step=1, epoch=0)
    before = path.read_bytes()

    def broken_save(obj, f) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(RunError, match=r"last\.pt: could not write it: disk full"):
        save_checkpoint(path, model=_model(), step=2, epoch=0)
    with pytest.raises(RunError, match="new.pt"):
        save_checkpoint(tmp_path / "new.pt", model=_model(), step=2, epoch=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert path.read_bytes() == before


def test_a_full_disk_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What torch.save does on a full disk: its writer fails with ENOSPC and torch raises its own RuntimeError.
    def full_disk_save(obj, f) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(ckpt_mod.torch, "save", full_disk_save)
    with pytest.raises(RunError, match=r"last\.pt: could not write it: the disk is full \(.* MiB free there\)"):
        save_checkpoint(tmp_path / "last.pt", model=_model(), step=2, epoch=0)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.decode().strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_disk_names_the_path_and_leaves_no_temporary(tiny_disk: Path) -> None:
    big = nn.Linear(1000, 1000)  # 4 MB of weights on a 1 MiB disk
    with pytest.raises(RunError, match=r"disk/last\.pt: could not write it: the disk is full"):
        save_checkpoint(tiny_disk / "last.pt", model=big, step=1, epoch=0)
    assert list(tiny_disk.iterdir()) == []


def test_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.pt.tmp{dead.stdout.strip()}"
    live = tmp_path / f".last.pt.tmp{os.getppid()}"  # a process that is running
    for path in (stale, live):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt", model=_model())

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(garbage, model=_model())

    weights = tmp_path / "weights.pt"
    torch.save(_model().state_dict(), weights)  # a plain state dict is not a training checkpoint
    with pytest.raises(ValueError, match=r"weights\.pt.*missing key 'format'"):
        load_checkpoint(weights, model=_model())

    no_opt = tmp_path / "no_opt.pt"
    save_checkpoint(no_opt, model=_model(), step=0, epoch=0)
    model = _model()
    with pytest.raises(ValueError, match=r"no_opt\.pt.*'optimizer'"):
        load_checkpoint(no_opt, model=model, optimizer=_optimizer("sgd", model))
