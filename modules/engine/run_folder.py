"""The run folder (`--output_dir`): which files belong to which run, so no run replaces another's without being asked.

A training run owns `config.yaml`, `log.txt`, `metrics.jsonl`, `last.pt`, its weight files (`pytorch_model.bin.*`, or
the names its system gives them), `tensorboard/` and the results of its final evaluation. An evaluation-only run owns the files of its label (e.g. `test`):
`config_<label>.yaml`, `log_<label>.txt`, `metrics_<label>.*`, `sims_<label>.npy`, `sims_<label>_ids.json`,
`answers_<label>.jsonl`, and leaves a training run's files alone. A folder that already holds the files a run would write stops it with one line,
unless `--resume 1` (training: continue that run) or `--overwrite 1` (remove them first, and say so).
`--resume 1` restores the run's own config.yaml; a flag given now that differs from it is refused, except the
ones that cannot change what is trained (ALLOWED_ON_RESUME) and a larger `--epochs` (the run is extended).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from modules.engine.checkpoint import remove_stale_temporaries
from modules.engine.config import load_config, plain, save_config
from modules.engine.distributed import barrier
from modules.engine.errors import RunError
from modules.engine.weight_files import WeightFiles

CONFIG_NAME = "config.yaml"
TRAINING_FILES = (CONFIG_NAME, "log.txt", "metrics.jsonl", "last.pt", "tensorboard")
DEFAULT_WEIGHT_FILES = WeightFiles().patterns()  # the text-video and VQA names
# What evaluations write, `<kind>_<label>...`: config_test.yaml, log_test.txt, metrics_test.json, sims_test.npy,
# sims_test_ids.json, answers_test.jsonl.
RESULT_KINDS = ("config", "log", "metrics", "sims", "answers")
RESULT_FILES = tuple(f"{kind}_*" for kind in RESULT_KINDS)
# Flags about this invocation, never taken from the saved config.
SESSION_FLAGS = frozenset({"resume", "overwrite", "debug", "config", "output_dir"})
# Flags that change how fast a run goes, what it prints or whether it ends with a test, never what it trains.
ALLOWED_ON_RESUME = frozenset({"workers", "batch_size_val", "n_display", "do_eval"})


def evaluation_files(label: str) -> tuple[str, ...]:
    """The files an evaluation-only run labelled `label` (a split, or a matrix and direction) writes."""
    return tuple(f"{kind}_{label}{end}" for kind in RESULT_KINDS for end in (".*", "_*"))


def existing(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    """The files and folders of `folder` that match `patterns`, sorted."""
    found = {path for pattern in patterns for path in folder.glob(pattern)}
    return sorted(found)


def _names(paths: list[Path], limit: int = 6) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def check(folder: Path, patterns: tuple[str, ...], *, overwrite: bool, resume: bool = False) -> list[Path]:
    """The files of an earlier run that this run would replace (to be removed: `overwrite`); none when `resume`
    (they are this run's). Stops (RunError) when there are some and neither flag allows it. Reads only, so every
    process checks for itself."""
    found = existing(folder, patterns) if folder.is_dir() else []
    if not found or resume:
        return []
    if not overwrite:
        raise RunError(f"{folder} holds the files of an earlier run ({_names(found)}); pass --overwrite 1 to "
                       "replace them" + (", --resume 1 to continue it" if CONFIG_NAME in {p.name for p in found}
                                         else "") + " or choose another --output_dir")
    return found


def clear(folder: Path, found: list[Path]) -> list[str]:
    """Remove the earlier run's files (`check`) and the temporary files of killed runs; returns what to log."""
    notes = [f"removed {p.name}, a temporary file a killed run left" for p in remove_stale_temporaries(folder)] \
        if folder.is_dir() else []
    if found:
        _remove(found)
        notes.append(f"--overwrite 1: removed the earlier run's {len(found)} file(s) in {folder}: {_names(found)}")
    return notes


def _differs(new, old) -> bool:
    return plain(new) != old


def restore_for_resume(cfg: argparse.Namespace, explicit: set[str]) -> list[str]:
    """`--resume 1`: take the run's saved config for every flag not given now; refuse a flag given now that would
    change the run (schedule, optimiser, model, data), listing each difference. A larger `--epochs` extends the run
    (recorded in config.yaml). Returns the lines to log. No saved config: nothing to restore (a fresh run)."""
    path = Path(cfg.output_dir) / CONFIG_NAME
    if not path.is_file():
        return []
    saved = load_config(path)
    restored, differences, notes = [], [], []
    for key, old in sorted(saved.items()):
        if key in SESSION_FLAGS or not hasattr(cfg, key) or not _differs(getattr(cfg, key), old):
            continue
        if key not in explicit:
            setattr(cfg, key, old)
            restored.append(key)
        elif key in ALLOWED_ON_RESUME:
            notes.append(f"--resume 1 --{key} {plain(getattr(cfg, key))!r} (the run had {old!r})")
        elif key == "epochs" and isinstance(old, int) and cfg.epochs > old:
            notes.append(f"--resume 1 --epochs {cfg.epochs}: the run of {old} epochs is extended to {cfg.epochs}; "
                         f"the learning-rate schedule now spans {cfg.epochs} epochs")
        else:
            differences.append(f"--{key} {plain(getattr(cfg, key))!r} (the run has {old!r})")
    if differences:
        raise RunError(f"--resume 1: {path} was run with other values, which would change its schedule, optimiser, "
                       f"model or data: {'; '.join(differences)}. Resume with the run's own flags, or start a new "
                       "run (another --output_dir, or --overwrite 1)")
    if restored:
        notes.insert(0, f"--resume 1: flags from {path}: {', '.join(restored)}")
    return notes


def record_extension(cfg: argparse.Namespace) -> None:
    """config.yaml of a resumed run says how many epochs it now has (the rest of it stays as it was)."""
    path = Path(cfg.output_dir) / CONFIG_NAME
    saved = load_config(path)
    if saved.get("epochs") != cfg.epochs:
        saved["epochs"] = cfg.epochs
        save_config(argparse.Namespace(**saved), path)


def _claim(cfg: argparse.Namespace, training: bool, label: str, weight_files: tuple[str, ...]
           ) -> tuple[list[Path], bool, Path, str]:
    """What `prepare` checks: (earlier files to remove, resuming?, config path, log file name)."""
    folder = Path(cfg.output_dir)
    if training:
        resume = bool(cfg.resume) and (folder / CONFIG_NAME).is_file()
        found = check(folder, TRAINING_FILES + weight_files + RESULT_FILES, overwrite=bool(cfg.overwrite),
                      resume=resume)
        return found, resume, folder / CONFIG_NAME, "log.txt"
    found = check(folder, evaluation_files(label), overwrite=bool(cfg.overwrite))
    return found, False, folder / f"config_{label}.yaml", f"log_{label}.txt"


def refuse_early(cfg: argparse.Namespace, training: bool, label: str,
                 weight_files: tuple[str, ...] = DEFAULT_WEIGHT_FILES) -> None:
    """`prepare`'s check alone, before a run spends time building its model and data."""
    _claim(cfg, training, label, weight_files)


def prepare(cfg: argparse.Namespace, training: bool, label: str, is_main: bool,
            weight_files: tuple[str, ...] = DEFAULT_WEIGHT_FILES) -> tuple[list[str], str]:
    """Claim the folder for a training run (`training`, whose weight files match the patterns `weight_files`) or an
    evaluation-only run of `label`: every process checks, then the main one clears what `--overwrite 1` replaces and
    writes the run's config (training: config.yaml, not on a resume; evaluation: config_<label>.yaml). Returns the
    lines to log and the name of the log file."""
    found, resume, config, log_name = _claim(cfg, training, label, weight_files)
    barrier()  # every process has looked before the main one writes
    if not is_main:
        return [], log_name
    notes = clear(Path(cfg.output_dir), found)
    if resume:
        record_extension(cfg)
    else:
        save_config(cfg, config)
    return notes, log_name
