"""The training loop every system shares: DDP, AMP, accumulation, clipping, checkpoints, evaluation during training
(`--evals_per_epoch` times an epoch, the last at its end).

The model contract (what the trainer needs of a model):
- `input_keys`: the batch keys its forward takes, in order; forward(*inputs, gather=fn) -> {"total": loss, ...}
  where `gather` concatenates a tensor over processes (gradient-correct; None in one process);
- `reference_state_dict()`: what the per-epoch weight files hold (released checkpoints' key names);
- optional `after_optimizer_step()` (e.g. clamping CLIP's temperature) and `log_values()` (scalars for the log);
- optional `backbone_prefix`: parameters under it train at lr * coef_lr.
A training batch may carry `unreadable_video` (B,): for a sample that replaced one whose video could not be read
(--skip_bad_videos), that video's index, else -1; the epoch's log line counts the videos and the samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from modules.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from modules.engine.distributed import (DistInfo, GlobalBatchSampler, all_gather_with_grad, barrier,
                                       broadcast_object, gather_objects, worker_init_fn)
from modules.engine.errors import RunError, RunInterrupted
from modules.engine.optim import AdamWSettings, build_scheduler, param_groups
from modules.engine.precision import autocast_context, check_precision
from modules.engine.run_log import RunLog
from modules.engine.weight_files import WeightFiles


@dataclass
class TrainSettings:
    """The optimisation flags of a run (names follow the command-line flags)."""

    epochs: int
    batch_size: int  # global, over all processes
    lr: float
    coef_lr: float
    weight_decay: float
    warmup_proportion: float
    max_grad_norm: float
    grad_accum_steps: int
    precision: str
    workers: int
    n_display: int
    seed: int
    resume: bool
    evals_per_epoch: int

    @classmethod
    def from_config(cls, cfg) -> "TrainSettings":
        return cls(**{name: getattr(cfg, name) for name in cls.__dataclass_fields__})


def train_loader(dataset, settings: TrainSettings, dist: DistInfo) -> DataLoader:
    """Shuffled, seeded and sharded so that the ranks' batches of a step, gathered in rank order, are the
    one-process batch in the same order (`GlobalBatchSampler`). Workers are not persistent, so the dataset's
    `set_epoch` (new augmentation draws) reaches them every epoch. A dataset may bring its own `collate`
    (samples -> the batch dict)."""
    if settings.batch_size % dist.world_size:
        raise RunError(f"--batch_size {settings.batch_size} must be divisible by the {dist.world_size} processes")
    sampler = GlobalBatchSampler(len(dataset), settings.batch_size, dist.rank, dist.world_size, settings.seed)
    return DataLoader(dataset, batch_size=settings.batch_size // dist.world_size, sampler=sampler,
                      num_workers=settings.workers, pin_memory=dist.device.type == "cuda", drop_last=True,
                      worker_init_fn=worker_init_fn, collate_fn=getattr(dataset, "collate", None),
                      prefetch_factor=4 if settings.workers > 0 else None)


def steps_per_epoch(samples: int, batches: int, settings: TrainSettings) -> int:
    """Optimiser steps per epoch; a run that would take none stops here, before anything is written."""
    if samples == 0:
        raise RunError("the training split has no samples: nothing to train on")
    if batches == 0:
        raise RunError(f"{samples} training samples make no full global batch of --batch_size {settings.batch_size} "
                       "(the last partial batch is dropped), so no step would be taken: lower --batch_size to at "
                       f"most {samples}")
    if batches < settings.grad_accum_steps:
        raise RunError(f"{batches} batches per epoch are fewer than --grad_accum_steps {settings.grad_accum_steps}: "
                       "no optimiser step would be taken")
    return batches // settings.grad_accum_steps


@dataclass(frozen=True)
class Selection:
    """Which validation metric picks the best epoch, in which direction, and what the epoch log line shows."""

    key: str
    higher_is_better: bool = True
    summary_keys: tuple[str, ...] = ()

    def better(self, value: float, best: float) -> bool:
        return value > best if self.higher_is_better else value < best

    @property
    def worst(self) -> float:
        return -math.inf if self.higher_is_better else math.inf

    def summary(self, metrics: dict) -> str:
        """`key value` pairs of `summary_keys` (the first scalars when none of them is there)."""
        scalars = [k for k, v in metrics.items() if isinstance(v, (int, float))]
        shown = [k for k in self.summary_keys if k in metrics] or scalars[:6]
        return " ".join(f"{k} {metrics[k]:.4g}" for k in shown)


def evaluation_steps(steps_per_epoch: int, evals_per_epoch: int) -> list[int]:
    """The optimiser steps of an epoch (1-based) after which it is evaluated, evenly spaced, the last at its end;
    fewer when the epoch has fewer steps than evaluations."""
    return sorted({max(1, round(steps_per_epoch * k / evals_per_epoch)) for k in range(1, evals_per_epoch + 1)})


class Trainer:
    """Runs epochs of training; `evaluate(model) -> metrics | None` is called `evals_per_epoch` times an epoch and
    `selection` keeps the best evaluation's weights (`weight_files.best`); every epoch's weights are saved too.
    The model follows the contract above."""

    def __init__(self, model: torch.nn.Module, dataset, settings: TrainSettings, dist: DistInfo, log: RunLog,
                 output_dir: Path, evaluate: Callable[[torch.nn.Module], dict | None],
                 selection: Selection, weight_files: WeightFiles = WeightFiles(),
                 adamw: AdamWSettings = AdamWSettings(),
                 schedule: Callable[[int], Callable[[int], float]] | None = None):
        """`schedule(total_steps)`: the LR multiplier per optimiser step (a callable object with a `total_steps`
        field, saved with the checkpoint); the default is the HBI recipe's warm-up + cosine."""
        check_precision(settings.precision, dist.device)
        self.model, self.dataset, self.settings, self.dist, self.log = model, dataset, settings, dist, log
        self.output_dir, self.evaluate, self.selection = output_dir, evaluate, selection
        self.weight_files = weight_files
        self.loader = train_loader(dataset, settings, dist)
        self.steps_per_epoch = steps_per_epoch(len(dataset), len(self.loader), settings)
        self.evaluation_steps = evaluation_steps(self.steps_per_epoch, settings.evals_per_epoch)
        self.optimizer = torch.optim.AdamW(
            param_groups(model, settings.lr, settings.coef_lr, settings.weight_decay, adamw.decay_every_parameter),
            lr=settings.lr, betas=adamw.betas, eps=adamw.eps)
        self.total_steps = settings.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, settings.warmup_proportion) \
            if schedule is None else torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule(self.total_steps))
        self.scaler = torch.amp.GradScaler(dist.device.type, enabled=settings.precision == "amp_fp16")
        self.ddp = DistributedDataParallel(model) if dist.world_size > 1 else None
        self.step, self.start_epoch = 0, 0
        self.best = {selection.key: selection.worst, "epoch": -1}
        self.best_metrics: dict | None = None  # the validation metrics of the best epoch

    def resume(self) -> None:
        path = latest_checkpoint(self.output_dir)
        if path is None:
            self.log.rewind(-1)  # what a run killed in its first epoch logged is not part of this one
            self.log.info(f"--resume: no checkpoint in {self.output_dir}, starting from scratch")
            return
        state = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                scaler=self.scaler)
        extra = state["extra"]
        if extra.get("steps_per_epoch", self.steps_per_epoch) != self.steps_per_epoch:
            raise RunError(f"{path}: the run took {extra['steps_per_epoch']} optimiser steps per epoch, this one "
                           f"would take {self.steps_per_epoch}: its training data changed since")
        self.step, self.start_epoch = state["step"], state["epoch"] + 1
        self.best = extra.get("best", self.best)
        self.best_metrics = extra.get("best_metrics")
        self._continue_schedule()
        count = self.log.rewind(self.step)
        dropped = f"; dropped {count} records after step {self.step} from metrics.jsonl" if count else ""
        if self.start_epoch >= self.settings.epochs:
            self.log.info(f"resumed from {path}: the run has finished its {self.settings.epochs} epochs, nothing is "
                          f"left to train (a larger --epochs extends it){dropped}")
        else:
            self.log.info(f"resumed from {path}: epoch {self.start_epoch + 1} of {self.settings.epochs}, "
                          f"step {self.step}{dropped}")

    def _continue_schedule(self) -> None:
        """The restored schedule spans the run's steps as saved; a run extended with more --epochs spans the new
        total from here on (this step's learning rate included)."""
        for multiplier in self.scheduler.lr_lambdas:
            multiplier.total_steps = self.total_steps
        lrs = [base * fn(self.scheduler.last_epoch) for base, fn in zip(self.scheduler.base_lrs,
                                                                         self.scheduler.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = lrs

    def fit(self) -> dict:
        if self.settings.resume:
            self.resume()
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.settings.epochs):
                self.train_epoch(epoch)
                self.end_epoch(epoch, self.evaluate(self.model))
        except KeyboardInterrupt as err:
            raise RunInterrupted(self._stopped_at(epoch, err)) from None
        return self.best

    def _stopped_at(self, epoch: int, err: KeyboardInterrupt) -> str:
        """Where an interrupted run stopped and what a resume would continue from."""
        why = str(err) or "stopped by Ctrl-C"
        saved = latest_checkpoint(self.output_dir)
        where = f"{why} in epoch {epoch + 1} of {self.settings.epochs} at step {self.step}"
        if saved is None:
            return f"{where}; no epoch was finished, so there is no checkpoint to resume from"
        return (f"{where}; {saved} holds the run up to epoch {epoch}: rerun the same command with --resume 1 to "
                "continue from there")

    def _losses(self, batch: dict, micro_step: int) -> dict[str, torch.Tensor]:
        device = self.dist.device
        inputs = [batch[k].to(device, non_blocking=True) for k in self.model.input_keys]
        gather = all_gather_with_grad if self.dist.world_size > 1 else None
        # Every process computes the loss of the whole gathered batch, so randomness after the gather (dropout,
        # HBI's density jitter) must draw the same numbers on every process, and the same as one process would:
        # the forward pass runs under a seed of (seed, step, micro-step) alone.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            seed = int(np.random.SeedSequence([self.settings.seed, self.step, micro_step]).generate_state(1)[0])
            torch.manual_seed(seed)
            with autocast_context(device, self.settings.precision):
                return (self.ddp or self.model)(*inputs, gather=gather)

    def train_epoch(self, epoch: int) -> None:
        self.model.train()
        self.loader.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        accum = self.settings.grad_accum_steps
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{self.settings.epochs}", disable=not self.dist.is_main)
        unreadable: list[int] = []  # per sample replaced (--skip_bad_videos), the video that could not be read
        first_step = self.step
        for i, batch in enumerate(bar):
            if "unreadable_video" in batch:
                unreadable += [v for v in batch["unreadable_video"].tolist() if v >= 0]
            losses = self._losses(batch, i % accum)
            self.scaler.scale(losses["total"] / accum).backward()
            if (i + 1) % accum:
                continue
            self.optimizer_step()
            bar.set_postfix(loss=f"{losses['total'].item():.4f}")
            in_epoch = self.step - first_step
            if in_epoch in self.evaluation_steps[:-1]:  # the last evaluation is the epoch's end (end_epoch)
                self.select(epoch, self.evaluate(self.model), f" (step {in_epoch} of {self.steps_per_epoch})")
                self.model.train()
            if self.step % self.settings.n_display == 0:
                values = {k: v.item() for k, v in losses.items()}
                values["lr"] = self.scheduler.get_last_lr()[0]
                values.update(getattr(self.model, "log_values", dict)())
                self.log.metrics(self.step, "train", values)
        unreadable = [v for rank in gather_objects(unreadable) for v in rank]
        if unreadable:
            self.log.info(f"epoch {epoch + 1}: {len(set(unreadable))} unreadable video(s) skipped, {len(unreadable)} "
                          "samples replaced by others (--skip_bad_videos)")

    def optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if hasattr(self.model, "after_optimizer_step"):
            self.model.after_optimizer_step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1

    def select(self, epoch: int, metrics: dict | None, where: str = "") -> None:
        """Log an evaluation's metrics (main process); the best so far is saved as `weight_files.best`. Every
        process learns which evaluation is best."""
        if self.dist.is_main and metrics is not None:
            self.log.metrics(self.step, "val", metrics)
            self.log.info(f"epoch {epoch + 1}{where}: {self.selection.summary(metrics)}")
            key = self.selection.key
            if self.selection.better(metrics[key], self.best[key]):
                self.best = {key: metrics[key], "epoch": epoch + 1, "step": self.step}
                self.best_metrics = metrics
                self.save_weights(self.output_dir / self.weight_files.best, epoch)
        # Only the main process sees the metrics; every rank must agree on which evaluation is best.
        self.best = broadcast_object(self.best)

    def end_epoch(self, epoch: int, metrics: dict | None) -> None:
        self.select(epoch, metrics)
        if self.dist.is_main:
            self.save_weights(self.output_dir / self.weight_files.of_epoch(epoch), epoch)
            save_checkpoint(self.output_dir / "last.pt", model=self.model, optimizer=self.optimizer,
                            scheduler=self.scheduler, scaler=self.scaler, step=self.step, epoch=epoch,
                            extra={"best": self.best, "best_metrics": self.best_metrics,
                                   "steps_per_epoch": self.steps_per_epoch})
        barrier()

    def save_weights(self, path: Path, epoch: int) -> None:
        """Model weights under the reference's key names, in the format the system's released checkpoints use."""
        self.weight_files.save(path, self.model, epoch, self.optimizer)
