"""test.py: checkpoint evaluation, scoring a saved matrix, and the QB-Norm querybank matrix."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import main_retrieval
from modules.evaluation.retrieval import compute_metrics
from tests.helpers import argv, eval_argv, load_test_entry



def train_tiny(data: Path, out: Path) -> tuple[Path, dict]:
    """One epoch of the tiny random WTI model of test_main_retrieval: (best checkpoint, its test metrics)."""
    metrics = main_retrieval.main(argv(data, out))
    return out / "pytorch_model.bin.best", metrics


def checkpoint_argv(data: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    """Evaluation flags of the tiny model with --init_model."""
    return eval_argv(data, out, "--init_model", str(checkpoint), *extra)


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory) -> tuple[Path, dict]:
    return train_tiny(tiny_demo, tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def entry() -> ModuleType:
    return load_test_entry()


@pytest.fixture(scope="module")
def evaluated(entry, tiny_demo, trained, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    return out, entry.main(checkpoint_argv(tiny_demo, out, trained[0]))


def test_checkpoint_eval_equals_training_eval(evaluated, trained):
    out, metrics = evaluated
    for key, value in trained[1].items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    for name in ("sims_test.npy", "sims_test_ids.json", "metrics_test.json", "metrics_test.md"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics_test.json").read_text())["t2v_R1"] == metrics["t2v_R1"]


@pytest.mark.parametrize("metric", ["t2v", "v2t"])
def test_sims_scoring_equals_compute_metrics(entry, evaluated, tmp_path, capsys, metric):
    out, _ = evaluated
    ids = out / "sims_test_ids.json"
    scored = entry.main(["--sims", str(out / "sims_test.npy"), "--metric", metric, "--text_to_video", str(ids),
                         "--output_dir", str(tmp_path)])
    expected = compute_metrics(np.load(out / "sims_test.npy"), np.asarray(json.loads(ids.read_text())["text_to_video"]))
    for key in ("R1", "R5", "R10", "R50", "MdR", "MnR"):
        assert scored[f"{metric}_{key}"] == pytest.approx(expected[f"{metric}_{key}"]), key
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == scored
    assert (tmp_path / f"metrics_sims_test_{metric}.md").is_file()


def test_train_querybank_shape(entry, tiny_demo, trained, tmp_path):
    result = entry.main(checkpoint_argv(tiny_demo, tmp_path, trained[0], "--split", "train_querybank"))
    sims = np.load(tmp_path / "sims_train_querybank.npy")
    assert sims.shape == (16, 8) and result["shape"] == [16, 8]
    ids = json.loads((tmp_path / "sims_train_querybank_ids.json").read_text())
    assert len(ids["rows"]) == 16 and len(set(ids["rows"])) == 16 and len(ids["cols"]) == 8
    assert not (tmp_path / "metrics_train_querybank.json").exists()
    entry.main(checkpoint_argv(tiny_demo, tmp_path / "five", trained[0], "--split", "train_querybank",
                         "--querybank_size", "5"))
    sub = np.load(tmp_path / "five" / "sims_train_querybank.npy")
    assert sub.shape == (5, 8)
    assert any(np.allclose(sub[0], row, atol=1e-5) for row in sims)


def test_bad_input_one_line(entry, tiny_demo, tmp_path):
    with pytest.raises(SystemExit, match="pass --init_model"):
        entry.main(["--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="similarity file not found"):
        entry.main(["--sims", str(tmp_path / "absent.npy"), "--output_dir", str(tmp_path)])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_results_record_the_checkpoint_and_the_command(evaluated, trained):
    out, _ = evaluated
    checkpoint = {"path": str(trained[0]), "sha256": sha256(trained[0])}
    metrics = json.loads((out / "metrics_test.json").read_text())
    record = metrics["provenance"]
    assert record["checkpoint"] == checkpoint and record["weights"] == {"init_model": checkpoint}
    assert {"command", "cwd", "time"} <= set(record)
    ids = json.loads((out / "sims_test_ids.json").read_text())
    assert ids["sims_sha256"] == sha256(out / "sims_test.npy") and ids["provenance"] == record


def test_sims_scoring_writes_metrics_json_with_its_inputs(entry, evaluated, trained, tmp_path):
    out, _ = evaluated
    scored = entry.main(["--sims", str(out / "sims_test.npy"), "--metric", "v2t", "--text_to_video",
                         str(out / "sims_test_ids.json"), "--output_dir", str(tmp_path)])
    written = json.loads((tmp_path / "metrics_sims_test_v2t.json").read_text())
    assert {k: v for k, v in written.items() if k != "provenance"} == scored
    inputs = written["provenance"]["inputs"]
    assert inputs["sims"]["sha256"] == sha256(out / "sims_test.npy")
    ids = out / "sims_test_ids.json"
    assert inputs["text_to_video"] == {"path": str(ids), "sha256": sha256(ids)}
    assert inputs["sims"]["made_by"]["checkpoint"] == {"path": str(trained[0]), "sha256": sha256(trained[0])}


def test_querybank_ids_record_the_checkpoint(entry, tiny_demo, trained, tmp_path):
    entry.main(checkpoint_argv(tiny_demo, tmp_path, trained[0], "--split", "train_querybank"))
    ids = json.loads((tmp_path / "sims_train_querybank_ids.json").read_text())
    assert ids["sims_sha256"] == sha256(tmp_path / "sims_train_querybank.npy")
    assert ids["provenance"]["checkpoint"] == {"path": str(trained[0]), "sha256": sha256(trained[0])}


@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_sims_with_non_finite_entries_are_refused_naming_the_file(entry, tmp_path, value):
    sims = np.eye(4, dtype=np.float32)
    sims[1, 2] = sims[3, 0] = value
    np.save(tmp_path / "bad.npy", sims)
    with pytest.raises(SystemExit) as stop:
        entry.main(["--sims", str(tmp_path / "bad.npy"), "--output_dir", str(tmp_path / "out")])
    assert str(stop.value) == (f"test.py: error: {tmp_path / 'bad.npy'}: 2 non-finite entries (inf or NaN) in the "
                               f"4 x 4 similarity matrix, the first at row 1, column 2")
    assert not (tmp_path / "out").exists()
