"""Run folders: which files an earlier run owns, what --overwrite removes, what --resume restores or refuses."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modules.engine.config import save_config
from modules.engine.errors import RunError
from modules.engine.run_folder import DEFAULT_WEIGHT_FILES, RESULT_FILES, TRAINING_FILES, check, clear, \
    evaluation_files, prepare, restore_for_resume


def _cfg(out: Path, **values) -> argparse.Namespace:
    base = dict(output_dir=str(out), do_train=1, resume=0, overwrite=0, debug=0, epochs=3, lr=1e-4, batch_size=8,
                workers=2, seed=42, rate=[1.0, 0.0, 0.0])
    return argparse.Namespace(**{**base, **values})


def test_an_evaluation_owns_only_the_files_of_its_label(tmp_path):
    for name in ("config.yaml", "last.pt", "metrics_train_querybank.json", "sims_val.npy", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert check(tmp_path, evaluation_files("test"), overwrite=False) == []
    (tmp_path / "sims_test_ids.json").write_text("{}")
    with pytest.raises(RunError, match=r"sims_test_ids\.json\); pass --overwrite 1 to replace them or choose"):
        check(tmp_path, evaluation_files("test"), overwrite=False)


def test_overwrite_removes_the_runs_files_and_nothing_else(tmp_path):
    names = ("config.yaml", "log.txt", "pytorch_model.bin.3", "metrics_test.json", "answers_test.jsonl")
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "notes.txt").write_text("the user's own")
    found = check(tmp_path, TRAINING_FILES + DEFAULT_WEIGHT_FILES + RESULT_FILES, overwrite=True)
    notes = clear(tmp_path, found)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert "removed the earlier run's 6 file(s)" in notes[-1]


def test_prepare_writes_the_evaluation_config_beside_the_training_one(tmp_path):
    save_config(_cfg(tmp_path), tmp_path / "config.yaml")
    before = (tmp_path / "config.yaml").read_text()
    _, log_name = prepare(_cfg(tmp_path, do_train=0), training=False, label="test", is_main=True)
    assert log_name == "log_test.txt" and (tmp_path / "config_test.yaml").is_file()
    assert (tmp_path / "config.yaml").read_text() == before


def test_resume_restores_flags_not_given_and_refuses_changed_ones(tmp_path):
    save_config(_cfg(tmp_path, lr=1e-3, seed=7), tmp_path / "config.yaml")
    cfg = _cfg(tmp_path, resume=1)  # lr and seed at their defaults: not given now
    notes = restore_for_resume(cfg, explicit={"output_dir", "resume"})
    assert (cfg.lr, cfg.seed) == (1e-3, 7) and "flags from" in notes[0] and "lr" in notes[0]
    changed = _cfg(tmp_path, resume=1, lr=1e-2, rate=[1.0, 1.0, 1.0])
    with pytest.raises(RunError, match=r"--lr 0.01 \(the run has 0.001\); --rate \[1.0, 1.0, 1.0\] \(the run has"):
        restore_for_resume(changed, explicit={"output_dir", "resume", "lr", "rate"})


def test_resume_allows_more_epochs_and_speed_flags_but_not_fewer_epochs(tmp_path):
    save_config(_cfg(tmp_path), tmp_path / "config.yaml")
    cfg = _cfg(tmp_path, resume=1, epochs=5, workers=8)
    notes = restore_for_resume(cfg, explicit={"epochs", "workers"})
    assert cfg.epochs == 5 and any("extended to 5" in n for n in notes) and any("--workers 8" in n for n in notes)
    with pytest.raises(RunError, match=r"--epochs 2 \(the run has 3\)"):
        restore_for_resume(_cfg(tmp_path, resume=1, epochs=2), explicit={"epochs"})


def test_resume_of_a_folder_without_a_config_restores_nothing(tmp_path):
    cfg = _cfg(tmp_path, resume=1, lr=5.0)
    assert restore_for_resume(cfg, explicit={"lr"}) == [] and cfg.lr == 5.0
