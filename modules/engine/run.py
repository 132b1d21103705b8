"""The run lifecycle every entry script shares: parse (a resume restores the run's config), start (process group,
seeds), build the system's parts and the trainer, claim the run folder (saved config, log), train and/or evaluate,
finish (final metrics logged, table, JSON line).

A system is a glue module (modules/text_video.py, modules/vqa.py, ...) with
- `TASK`: its `Task` (selection metric and the result table);
- `parser() -> ArgumentParser`: exactly the flags its script uses;
- `build(cfg, dist, log, output_dir) -> RunParts`: the model, data and evaluators of this run;
- optionally `resolve(cfg)`: fills defaults that depend on other flags (e.g. the run folder from --exp_name);
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

from modules.engine.config import parse_with_config
from modules.engine.distributed import DistInfo, barrier, cleanup, init_distributed, seed_everything
from modules.engine.errors import set_debug
from modules.engine.optim import AdamWSettings
from modules.engine.run_folder import prepare, refuse_early, restore_for_resume
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection, Trainer, TrainSettings
from modules.engine.weight_files import WeightFiles

Evaluator = Callable[[nn.Module], "dict | None"]
EVALUATION_LABEL = "test"  # the files of an evaluation-only run: config_test.yaml, metrics_test.json, ...


@dataclass(frozen=True)
class Task:
    """What a system's results are: the metric that picks the best epoch (and the epoch log line), the table, the
    names and format of the weight files training writes (those of the system's released checkpoints), and the
    AdamW settings of its reference."""

    selection: Selection
    table: Callable[[dict], str] | None = None
    weight_files: WeightFiles = WeightFiles()
    adamw: AdamWSettings = AdamWSettings()


@dataclass
class RunParts:
    """What a system builds for one run. `train_set` and `validate` are used only when training; `test` is the
    final evaluation of `--do_eval` (without it, the best epoch's `validate` metrics are the result);
    `after_training(model, best)` runs once training ends (e.g. reloading the best epoch; `best` is the trainer's
    {key, "epoch"}, epoch -1 when no epoch was selected), the same on every process. `schedule(total_steps)`, when
    given, is the LR multiplier per step (the default: warm-up + cosine, `--warmup_proportion`)."""

    model: nn.Module
    train_set: Callable[[], Dataset]
    validate: Evaluator | None
    test: Evaluator | None = None
    after_training: Callable[[nn.Module, dict], None] | None = None
    schedule: Callable[[int], Callable[[int], float]] | None = None


def open_run_folder(cfg: argparse.Namespace, dist: DistInfo, log: RunLog, training: bool, label: str,
                    notes: list[str], weight_files: WeightFiles = WeightFiles()) -> None:
    """Claim the run folder, write the config, open the log (see run_folder.prepare). Called once the run's parts
    are built, so a run refused for its input leaves no file behind."""
    folder_notes, log_name = prepare(cfg, training, label, dist.is_main, weight_files.patterns())
    log.attach(cfg.output_dir, log_name, metrics=training)
    for note in notes + folder_notes:
        log.info(note)


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


def train(trainer: Trainer, parts: RunParts, task: Task, log: RunLog) -> dict | None:
    """Fits the model; returns the best epoch's validation metrics (main process; None elsewhere)."""
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


def parse(system: ModuleType, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The system's flags (with `--config`); on `--resume 1` the run's own config; the checks of the system.
    Returns the config and the lines to log about it."""
    explicit: set[str] = set()
    cfg = parse_with_config(system.parser(), argv, getattr(system, "PRESET_KEYS_NOT_USED", frozenset()), explicit)
    set_debug(cfg.debug)
    if hasattr(system, "resolve"):
        system.resolve(cfg)
    if not (cfg.do_train or getattr(cfg, "do_eval", False)):
        raise SystemExit("nothing to do: pass --do_train 1" + (" and/or --do_eval 1" if hasattr(cfg, "do_eval")
                                                                else ""))
    notes = restore_for_resume(cfg, explicit) if cfg.do_train and cfg.resume else []
    if hasattr(system, "check"):
        system.check(cfg)
    return cfg, notes


def run(system: ModuleType, argv: list[str] | None = None) -> dict | None:
    """Parse `argv` with the system's parser, then train (`--do_train`) and/or evaluate (`--do_eval`).

    Everything that can be refused (flags, data, weights, an empty split, the run folder) is checked before the
    run folder is written to."""
    cfg, notes = parse(system, argv)
    training, output_dir = bool(cfg.do_train), Path(cfg.output_dir)
    weight_files = system.TASK.weight_files
    refuse_early(cfg, training, EVALUATION_LABEL, weight_files.patterns())
    dist = init_distributed(cfg.device)
    seed_everything(cfg.seed, dist.rank)
    log = RunLog(None, dist.is_main)
    log.info(f"{dist.world_size} process(es) on {dist.device}; run folder {output_dir}")
    parts = system.build(cfg, dist, log, output_dir)
    trainer = Trainer(parts.model, parts.train_set(), TrainSettings.from_config(cfg), dist, log, output_dir,
                      parts.validate, system.TASK.selection, weight_files, system.TASK.adamw,
                      parts.schedule) if training else None
    open_run_folder(cfg, dist, log, training, EVALUATION_LABEL, notes, weight_files)
    metrics = train(trainer, parts, system.TASK, log) if training else None
    if getattr(cfg, "do_eval", False) and parts.test is not None:
        metrics = parts.test(parts.model)
    return finish_run(dist, log, metrics, system.TASK.table)
