"""The run lifecycle every entry script shares: parse, start (process group, seeds, run folder, log, saved
config), build the system's parts, train and/or evaluate, finish (final metrics logged, table, JSON line).

A system is a glue module (modules/text_video.py, modules/vqa.py, ...) with
- `TASK`: its `Task` (selection metric and the result table);
- `parser() -> ArgumentParser`: exactly the flags its script uses;
- `build(cfg, dist, log, output_dir) -> RunParts`: the model, data and evaluators of this run;
- optionally `check(cfg)`: stops on flags that cannot work together, before the run folder is made;
- optionally `PRESET_KEYS_NOT_USED`: keys of another script's presets that this one accepts and skips (listed).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from torch import nn
from torch.utils.data import Dataset

from modules.engine.config import parse_with_config, save_config
from modules.engine.distributed import DistInfo, barrier, cleanup, init_distributed, seed_everything
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection, Trainer, TrainSettings

Evaluator = Callable[[nn.Module], "dict | None"]


@dataclass(frozen=True)
class Task:
    """What a system's results are: the metric that picks the best epoch (and the epoch log line), the table."""

    selection: Selection
    table: Callable[[dict], str] | None = None


@dataclass
class RunParts:
    """What a system builds for one run. `train_set` and `validate` are used only when training; `test` is the
    final evaluation of `--do_eval` (without it, the best epoch's `validate` metrics are the result);
    `after_training(model, best)` runs once training ends (e.g. reloading the best epoch; `best` is the trainer's
    {key, "epoch"}, epoch -1 when no epoch was selected), the same on every process."""

    model: nn.Module
    train_set: Callable[[], Dataset]
    validate: Evaluator | None
    test: Evaluator | None = None
    after_training: Callable[[nn.Module, dict], None] | None = None


def start_run(cfg: argparse.Namespace) -> tuple[DistInfo, Path, RunLog]:
    """Process group, seeds, run folder, log, and the resolved config saved in the run folder."""
    dist = init_distributed(cfg.device)
    seed_everything(cfg.seed, dist.rank)
    output_dir = Path(cfg.output_dir)
    log = RunLog(output_dir, dist.is_main)
    if dist.is_main:
        save_config(cfg, output_dir / "config.yaml")
    return dist, output_dir, log


def finish_run(dist: DistInfo, log: RunLog, metrics: dict | None, table: Callable[[dict], str] | None = None
               ) -> dict | None:
    """On the main process: final metrics into the log, `table(metrics)` printed (when given), then the metrics
    as the last line (JSON). Closes the log and the process group."""
    if dist.is_main and metrics is not None:
        log.metrics(-1, "test", metrics)
        if table is not None:
            print(table(metrics))
        print(json.dumps(metrics))
    log.close()
    cleanup()
    return metrics


def train(parts: RunParts, task: Task, cfg: argparse.Namespace, dist: DistInfo, log: RunLog,
          output_dir: Path) -> dict | None:
    """Fits the model; returns the best epoch's validation metrics (main process; None elsewhere)."""
    trainer = Trainer(parts.model, parts.train_set(), TrainSettings.from_config(cfg), dist, log, output_dir,
                      parts.validate, task.selection)
    best = trainer.fit()
    key = task.selection.key
    if best["epoch"] > 0:
        log.info(f"best {key} {best[key]:.4g} at epoch {best['epoch']}")
    else:
        log.info(f"no epoch selected: the validation {key} never improved on its start value (NaN?)")
    barrier()
    if parts.after_training is not None:
        parts.after_training(parts.model, best)
    return trainer.best_metrics


def run(system: ModuleType, argv: list[str] | None = None) -> dict | None:
    """Parse `argv` with the system's parser, then train (`--do_train`) and/or evaluate (`--do_eval`)."""
    cfg = parse_with_config(system.parser(), argv, getattr(system, "PRESET_KEYS_NOT_USED", frozenset()))
    do_eval = bool(getattr(cfg, "do_eval", False))
    if not (cfg.do_train or do_eval):
        raise SystemExit("nothing to do: pass --do_train 1" + (" and/or --do_eval 1" if hasattr(cfg, "do_eval")
                                                                else ""))
    if hasattr(system, "check"):
        system.check(cfg)
    dist, output_dir, log = start_run(cfg)
    log.info(f"{dist.world_size} process(es) on {dist.device}; run folder {output_dir}")
    parts = system.build(cfg, dist, log, output_dir)
    metrics = train(parts, system.TASK, cfg, dist, log, output_dir) if cfg.do_train else None
    if do_eval and parts.test is not None:
        metrics = parts.test(parts.model)
    return finish_run(dist, log, metrics, system.TASK.table)
