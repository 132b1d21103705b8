"""The run guarantees of the README's "Reliability" section, end to end on main_retrieval.py and tiny data:
run folders are never silently replaced, a resume continues the same run, empty work is refused before anything is
written, the user's errors and Ctrl-C end in one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import main_retrieval
from modules.engine.errors import RunError
from tests.helpers import ROOT, argv


@pytest.fixture(scope="module")
def data(tiny_demo) -> Path:
    return tiny_demo


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """A finished one-epoch run (8 steps), its folder copied by the tests that change it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    main_retrieval.main(argv(data, out))
    return out


def _copy(run: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-r", str(run), str(dest)], check=True)
    return dest


def _cli(args: list[str], **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HBI_DEBUG", None)
    return subprocess.run([sys.executable, str(ROOT / "main_retrieval.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, **popen)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# Case 3: a second run into the same folder.
def test_training_into_a_folder_that_holds_a_run_stops_and_changes_nothing(data, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(RunError, match=r"holds the files of an earlier run .*--overwrite 1.*--resume 1"):
        main_retrieval.main(argv(data, run, "--seed", "5"))
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_overwrite_replaces_the_whole_earlier_run(data, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    (run / "pytorch_model.bin.7").write_bytes(b"a later epoch of the earlier run")
    main_retrieval.main(argv(data, run, "--overwrite", "1"))
    assert not (run / "pytorch_model.bin.7").exists()
    log = (run / "log.txt").read_text()
    assert "--overwrite 1: removed the earlier run's" in log and log.count("process(es) on") == 1
    assert [r["split"] for r in _records(run)].count("val") == 1


def test_evaluation_only_leaves_the_training_config_alone(data, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    config = (run / "config.yaml").read_bytes()
    args = argv(data, run, "--init_model", str(run / "pytorch_model.bin.best"))
    args[args.index("--do_train") + 1] = "0"
    with pytest.raises(RunError, match=r"metrics_test\.json.*--overwrite 1"):  # the training run's results
        main_retrieval.main(args)
    main_retrieval.main(args + ["--overwrite", "1"])
    assert (run / "config.yaml").read_bytes() == config
    assert yaml.safe_load((run / "config_test.yaml").read_text())["do_train"] == 0
    assert (run / "log_test.txt").is_file()


# Case 2: --resume 1 with other flags.
def test_resume_with_changed_flags_is_refused_with_the_differences(data, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    config = (run / "config.yaml").read_bytes()
    with pytest.raises(RunError, match=r"--batch_size 16 \(the run has 8\); --lr 0.01 \(the run has 0.001\)"):
        main_retrieval.main(argv(data, run, "--resume", "1", "--epochs", "2", "--lr", "0.01", "--batch_size", "16"))
    assert (run / "config.yaml").read_bytes() == config


def test_resume_restores_the_runs_own_flags(data, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    # Only the folder and a longer run given: the rest (model, data, seed, lr...) comes from config.yaml.
    main_retrieval.main(["--output_dir", str(run), "--do_train", "1", "--resume", "1", "--epochs", "2"])
    assert "flags from" in (run / "log.txt").read_text()
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 1e-3


def test_resume_with_more_epochs_extends_the_schedule_and_records_it(data, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    first = torch.load(run / "pytorch_model.bin.0", weights_only=True)
    main_retrieval.main(argv(data, run, "--resume", "1", "--epochs", "2"))
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2
    assert "extended to 2" in (run / "log.txt").read_text()
    train = {r["step"]: r["lr"] for r in _records(run) if r["split"] == "train"}
    assert train[10] == pytest.approx(1e-3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 10 / 16)).item()))
    second = torch.load(run / "pytorch_model.bin.1", weights_only=True)
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_a_resumed_run_records_each_step_once(data, tmp_path, monkeypatch):
    from modules.engine.trainer import Trainer

    original = Trainer.train_epoch

    def killed_after_logging(self, epoch):
        original(self, epoch)
        if epoch == 1:  # the second epoch's steps are logged, its checkpoint never written
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_epoch", killed_after_logging)
    with pytest.raises(KeyboardInterrupt, match=r"in epoch 2 of 2 at step 16; .*last\.pt holds the run up to epoch 1"):
        main_retrieval.main(argv(data, tmp_path / "run", "--epochs", "2"))
    monkeypatch.setattr(Trainer, "train_epoch", original)
    main_retrieval.main(argv(data, tmp_path / "run", "--epochs", "2", "--resume", "1"))
    keys = [(r["step"], r["split"]) for r in _records(tmp_path / "run")]
    assert len(keys) == len(set(keys)) and (16, "val") in keys and (-1, "test") in keys


# Case 4: no step would be taken.
@pytest.mark.parametrize("batch", ["128", "80"])  # 64 training captions
def test_training_that_would_take_no_step_stops_before_writing(data, tmp_path, batch):
    with pytest.raises(RunError, match=rf"64 training samples make no full global batch of --batch_size {batch}"):
        main_retrieval.main(argv(data, tmp_path / "run", "--batch_size", batch))
    assert not (tmp_path / "run").exists()


def test_fewer_batches_than_accumulation_steps_stop(data, tmp_path):
    with pytest.raises(RunError, match=r"8 batches per epoch are fewer than --grad_accum_steps 9"):
        main_retrieval.main(argv(data, tmp_path / "run", "--grad_accum_steps", "9"))
    assert not (tmp_path / "run").exists()


def test_a_header_only_training_csv_stops_before_writing(data, tmp_path):
    anno = tmp_path / "anno"
    anno.mkdir()
    for name in ("MSRVTT_data.json", "MSRVTT_JSFUSION_test.csv"):
        (anno / name).write_bytes((data / name).read_bytes())
    (anno / "MSRVTT_train.9k.csv").write_text((data / "MSRVTT_train.9k.csv").read_text().splitlines()[0] + "\n")
    args = argv(anno, tmp_path / "run")
    args[args.index("--video_path") + 1] = str(data / "videos")
    with pytest.raises(ValueError, match=r"MSRVTT_train\.9k\.csv|no samples"):
        main_retrieval.main(args)
    assert not (tmp_path / "run").exists()


# Case 8: one line at the entry; flags checked at parse time.
def test_an_input_error_is_one_line_and_debug_shows_the_traceback(data, tmp_path):
    bad = tmp_path / "random.bin"
    bad.write_bytes(os.urandom(256))
    args = argv(data, tmp_path / "run", "--init_model", str(bad))
    result = _cli(args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith("main_retrieval.py: error: ") and "random.bin" in result.stderr
    debug = _cli(args + ["--debug", "1"])
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize("flag", ["--batch_size", "--max_frames", "--epochs", "--batch_size_val"])
def test_impossible_counts_are_refused_at_parse_time(data, tmp_path, flag, capsys):
    with pytest.raises(SystemExit):
        main_retrieval.main(argv(data, tmp_path / "run", flag, "0"))
    assert f"argument {flag}: expected a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# Case 9: Ctrl-C and the temporary files of killed runs.
def test_ctrl_c_ends_in_one_line_that_says_how_to_resume(data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main_retrieval.py"), *argv(data, run, "--epochs", "50")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "last.pt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert last.startswith("main_retrieval.py: interrupted: stopped by Ctrl-C in epoch ") and "--resume 1" in last


def test_temporary_files_of_a_killed_run_are_removed_on_start(data, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run = tmp_path / "run"
    run.mkdir()
    stale = run / f".last.pt.tmp{dead.stdout.strip()}"
    stale.write_bytes(b"89 MB of a checkpoint that was being written")
    main_retrieval.main(argv(data, run))
    assert not stale.exists()
    assert f"removed {stale.name}, a temporary file a killed run left" in (run / "log.txt").read_text()


def test_resuming_a_finished_run_says_there_is_nothing_left_to_train(data, finished, tmp_path):
    run = _copy(finished, tmp_path / "run")
    weights = (run / "pytorch_model.bin.0").read_bytes()
    main_retrieval.main(argv(data, run, "--resume", "1"))
    assert "the run has finished its 1 epochs, nothing is left to train" in (run / "log.txt").read_text()
    assert (run / "pytorch_model.bin.0").read_bytes() == weights
