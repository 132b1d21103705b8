"""scripts/order.sh --demo on the tiny data and model: the table's numbers are those of test.py run directly."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import test_qb_norm
from modules import text_video
from modules.engine.config import parse_with_config
from tests.helpers import ROOT, argv, load_test_entry

KEYS = ("R1", "R5", "R10", "MdR", "MnR")


def order(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "order.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def random_tiny_model(data: Path, path: Path) -> Path:
    """The untrained tiny WTI model of test_main_retrieval saved as a checkpoint (training adds nothing here)."""
    torch.manual_seed(0)
    model = text_video.build_model(parse_with_config(text_video.parser(), argv(data, path.parent)))
    torch.save(model.reference_state_dict(), path)
    return path


def demo_overrides(data: Path, checkpoint: Path) -> list[str]:
    """Point the demo table at the tiny data and model (sizes of test_main_retrieval's argv)."""
    values = {"checkpoint": checkpoint, "data": data, "max_words": 12, "max_frames": 4, "video_framerate": 4,
              "workers": 0}
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def demo_run(tiny_demo, tmp_path_factory) -> tuple[Path, Path]:
    """order.sh --demo on the tiny data and a random tiny model: (checkpoint, out_root)."""
    tmp_path = tmp_path_factory.mktemp("order")
    checkpoint = random_tiny_model(tiny_demo, tmp_path / "tiny.bin")
    result = order("--demo", "--out_root", str(tmp_path / "tables"), *demo_overrides(tiny_demo, checkpoint))
    assert result.returncode == 0, result.stderr[-3000:]
    return checkpoint, tmp_path / "tables"


def test_demo_table_equals_direct_runs(tiny_demo, demo_run, tmp_path):
    checkpoint, tables = demo_run
    table = json.loads((tables / "demo.json").read_text())
    measured = {row["name"]: row["measured"] for row in table["rows"]}
    assert list(measured) == ["t2v", "v2t", "t2v+QB-Norm"]
    assert (tables / "demo.md").read_text().count("| t2v") == 2

    direct_dir = tmp_path / "direct"
    direct = load_test_entry().main(["--config", "config/demo.yaml", "--init_model",
                                     str(checkpoint), "--anno_path", str(tiny_demo), "--video_path",
                                     str(tiny_demo / "videos"), "--max_words", "12", "--max_frames", "4",
                                     "--video_framerate", "4", "--workers", "0", "--output_dir", str(direct_dir)])
    qb = test_qb_norm.run(test_qb_norm.parse_args([
        "--sims_test", str(direct_dir / "sims_test.npy"),
        "--sims_querybank", str(tables / "demo" / "querybank" / "sims_train_querybank.npy"),
        "--text_to_video", str(direct_dir / "sims_test_ids.json")]))
    for key in KEYS:
        assert measured["t2v"][key] == pytest.approx(direct[f"t2v_{key}"]), key
        assert measured["v2t"][key] == pytest.approx(direct[f"v2t_{key}"]), key
        assert measured["t2v+QB-Norm"][key] == pytest.approx(qb["after"][key]), key


def test_demo_rows_record_the_checkpoint_they_measured(demo_run):
    checkpoint, tables = demo_run
    rows = {row["name"]: row for row in json.loads((tables / "demo.json").read_text())["rows"]}
    expected = {"path": str(checkpoint), "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
    assert rows["t2v"]["provenance"]["checkpoint"] == expected
    assert rows["v2t"]["provenance"]["inputs"]["sims"]["made_by"]["checkpoint"] == expected
    inputs = rows["t2v+QB-Norm"]["provenance"]["inputs"]
    assert inputs["sims_test"][0]["made_by"]["checkpoint"] == expected
    assert inputs["sims_querybank"][0]["made_by"]["checkpoint"] == expected
    assert f"- v2t: checkpoint {checkpoint} (sha256 {expected['sha256'][:12]})" in (tables / "demo.md").read_text()


def test_a_failed_evaluation_fails_the_rows_reading_it_instead_of_reporting_the_previous_model(
        tiny_demo, demo_run, tmp_path):
    tables = tmp_path / "tables"
    shutil.copytree(demo_run[1], tables)  # the folder a previous order.sh run left
    garbage = tmp_path / "random.bin"
    garbage.write_bytes(os.urandom(4096))
    result = order("--demo", "--out_root", str(tables), *demo_overrides(tiny_demo, garbage))
    assert result.returncode == 1
    rows = {row["name"]: row for row in json.loads((tables / "demo.json").read_text())["rows"]}
    assert all(not row["measured"] and row["provenance"] is None for row in rows.values())
    assert rows["t2v"]["problem"].startswith("failed (exit 1)")
    assert rows["v2t"]["problem"] == "needs the output of step 't2v', which failed"
    assert rows["t2v+QB-Norm"]["problem"] == "needs the output of steps 't2v', 'querybank', which failed"
    assert f"[demo] replacing the previous run's {tables / 'demo'}/ and demo.md/.json of 20" in result.stdout
    assert sorted(p.name for p in (tables / "demo").iterdir()) == [".paper_tables.json", "querybank", "t2v"]


def test_missing_inputs_reported_not_faked(tmp_path):
    result = order("--demo", "--out_root", str(tmp_path), "--set", f"checkpoint={tmp_path / 'absent.bin'}")
    assert result.returncode == 1
    assert f"missing: {tmp_path / 'absent.bin'}" in (tmp_path / "demo.md").read_text()
    assert "incomplete" in result.stderr and "absent.bin" in result.stderr
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    assert all(not row["measured"] for row in rows)
