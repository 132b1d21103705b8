"""Music-video retrieval end to end: training through main_retrieval.py --datatype, and the paper's test.py and
test_qb_norm.py commands pasted as published, on tiny synthetic clips in the published layout."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import main_retrieval
import test_qb_norm
from dataloaders.synthetic.music_video import generate_demo_music_video
from models.music_video import build_music_video_model
from modules import music_video, text_video
from modules.engine.distributed import DistInfo
from modules.systems import retrieval_system
from tests.helpers import load_test_entry, run as run_script

SIZES = ["--music_dim", "24", "--video_dim", "16", "--embed_dim", "16", "--num_layers", "1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("music_dance")
    generate_demo_music_video(root, num_train=24, num_val=8, num_test=10, seed=0)
    return root


def train_argv(clips: Path, out: Path, *extra: str) -> list[str]:
    return ["--do_train", "1", "--do_eval", "1", "--datatype", "music_dance", "--videos_dir", str(clips),
            "--output_dir", str(out), *SIZES, "--epochs", "1", "--batch_size", "8", "--lr", "1e-3",
            "--batch_size_val", "4", "--workers", "0", "--device", "cpu", "--n_display", "1", *extra]


def test_main_retrieval_picks_the_system_by_datatype(tmp_path):
    assert retrieval_system(["--datatype", "music_motion"]) is music_video
    assert retrieval_system(["--datatype", "msrvtt"]) is text_video and retrieval_system([]) is text_video
    preset = tmp_path / "p.yaml"
    preset.write_text("datatype: music_dance\n")
    assert retrieval_system(["--config", str(preset)]) is music_video


def test_training_reports_both_directions_raw_and_with_qbnorm(clips, tmp_path):
    metrics = main_retrieval.main(train_argv(clips, tmp_path / "run"))
    for key in ("m2v_R1", "v2m_R1", "m2v_R1_qbnorm", "v2m_R1_qbnorm", "chance_R1"):
        assert key in metrics
    assert metrics["chance_R1"] == 10.0 and metrics["num_test"] == 10
    run = tmp_path / "run"
    saved = json.loads((run / "metrics_test.json").read_text())
    assert saved["m2v_R1"] == metrics["m2v_R1"] and saved["provenance"]["checkpoint"]["trained_in_this_run"]
    sims = np.load(run / "sims_test.npy")
    assert sims.shape == (10, 10)
    np.testing.assert_allclose(sims, np.load(run / "sims_test_feature.npy") + 0.8 * np.load(run / "sims_test_beat.npy"),
                               atol=1e-6)
    assert (run / "model_best.pth").is_file() and (run / "last.pt").is_file()
    assert saved["provenance"]["checkpoint"]["path"].endswith("model_best.pth")
    assert not (run / "metrics_val.json").exists()  # validation selects the epoch, it writes no result files


def test_training_evaluates_twice_an_epoch_and_writes_the_references_checkpoints(clips, tmp_path):
    run = tmp_path / "run"
    main_retrieval.main(train_argv(clips, run, "--epochs", "2", "--do_eval", "0"))
    evaluations = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line)["split"] == "val"]
    assert [e["step"] for e in evaluations] == [2, 3, 5, 6]  # 3 steps an epoch: after steps 2 and 3 of each
    assert sorted(p.name for p in run.glob("*.pth")) == ["checkpoint-epoch1.pth", "checkpoint-epoch2.pth",
                                                         "model_best.pth"]
    for name, epoch in (("checkpoint-epoch1.pth", 1), ("checkpoint-epoch2.pth", 2)):
        saved = torch.load(run / name, weights_only=True)
        assert set(saved) == {"epoch", "state_dict", "optimizer"} and saved["epoch"] == epoch
        assert "music_linear.weight" in saved["state_dict"] and saved["optimizer"]["state"]
    best = torch.load(run / "model_best.pth", weights_only=True)
    r1 = [e["m2v_R1"] for e in evaluations]
    assert best["epoch"] == 1 + r1.index(max(r1)) // 2
    assert "(step 2 of 3)" in (run / "log.txt").read_text()
    assert not list(run.glob("pytorch_model.bin*"))


@pytest.fixture(scope="module")
def published(clips, tmp_path_factory) -> Path:
    """A working folder holding outputs/Data2/model_best.pth as the reference saves it ({epoch, state_dict, ...})."""
    work = tmp_path_factory.mktemp("work")
    torch.manual_seed(0)
    model = build_music_video_model(16, num_layers=1, music_dim=24, video_dim=16)
    (work / "outputs" / "Data2").mkdir(parents=True)
    torch.save({"epoch": 3, "state_dict": model.state_dict(), "optimizer": {}},
               work / "outputs" / "Data2" / "model_best.pth")
    return work


def paper_command(clips: Path, *extra: str) -> list[str]:
    return ["--exp_name=Data2", f"--videos_dir={clips}", "--load_epoch", "-1", "--use_beat", "--mode",
            "double_loss", "--batch_size_val", "4", "--workers", "0", "--device", "cpu", *extra]


@pytest.mark.parametrize("metric, direction", [("t2v", "m2v"), ("v2t", "v2m")])
def test_the_papers_test_command_runs_as_published(clips, published, monkeypatch, capsys, metric, direction):
    monkeypatch.chdir(published)
    out = published / f"eval_{metric}"
    result = load_test_entry().main(paper_command(clips, "--metric", metric, "--output_dir", str(out)))
    printed = capsys.readouterr().out
    for name in ("R@1:", "R@5:", "R@10:", "MedR:", "MeanR:"):
        assert f" {name} " in printed
    assert json.loads(printed.strip().splitlines()[-1]) == result
    assert f"{direction}_R1" in result and (out / f"metrics_test_{direction}.json").is_file()


def test_the_papers_flags_are_required(clips, published, monkeypatch):
    monkeypatch.chdir(published)
    entry = load_test_entry()
    with pytest.raises(SystemExit, match="--use_beat --mode double_loss name the only model"):
        entry.main([a for a in paper_command(clips) if a != "--use_beat"])
    without_epoch = paper_command(clips)
    del without_epoch[2:4]
    with pytest.raises(SystemExit, match="pass --load_epoch"):
        entry.main(without_epoch)
    with pytest.raises(ValueError, match=r"outputs/Data2/checkpoint-epoch7\.pth"):
        entry.main(paper_command(clips, "--load_epoch", "7"))


@pytest.mark.parametrize("mode", ["mode1", "mode2"])
def test_the_papers_qbnorm_command_with_a_model_or_the_official_files(clips, published, monkeypatch, capsys, mode):
    monkeypatch.chdir(published)
    args = paper_command(clips, "--metric", "t2v", "--qbnorm_mode", mode)
    built = test_qb_norm.main(args + ["--output_dir", str(published / f"qb_{mode}")]) or \
        json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "m2v_R1_qbnorm" in built
    # The official querybank files: (N_train, 1, N_test) per term, as the reference's checkout/ holds them.
    banks = published / f"checkout_{mode}"
    banks.mkdir()
    for direction in ("m2v", "v2m"):
        for term in ("feature", "beat"):
            torch.save(torch.rand(24, 1, 10), banks / f"Data2_{direction}_train_{term}_sims.pt")
    test_qb_norm.main(args + ["--querybank_dir", str(banks), "--output_dir", str(published / f"qbf_{mode}")])
    official = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert official["m2v_R1"] == built["m2v_R1"] and "m2v_R1_qbnorm" in official


def test_the_querybank_is_scored_without_dropout(clips):
    from argparse import Namespace

    from modules.evaluation.music_video import encode_sets, querybank_terms, test_terms

    torch.manual_seed(0)
    model = build_music_video_model(16, num_layers=1, music_dim=24, video_dim=16)  # built in training mode
    cfg = Namespace(videos_dir=str(clips), segments="even", num_frames=30)
    dist = DistInfo(0, 1, 0, torch.device("cpu"), True)
    sets = [music_video.dataset(cfg, "test", model), music_video.dataset(cfg, "train", model)]
    test, bank = encode_sets(model, sets, dist, 4, 0, "fp32")
    first, second = querybank_terms(model, bank, test), querybank_terms(model, bank, test)
    for direction in ("m2v", "v2m"):
        for a, b in zip(first[direction], second[direction]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(test_terms(model, test, "fixed")[1], test_terms(model, test, "fixed")[1])
    assert model.training


@pytest.mark.slow
def test_two_processes_train_as_one_without_encoder_dropout(clips, tmp_path):
    # The encoders run before the gather, so their dropout masks are drawn per process; at --encoder_dropout 0
    # the rest (data order, the beat pooling's dropout after the gather) is the same in 1 and 2 processes.
    args = lambda out: train_argv(clips, out, "--epochs", "2", "--encoder_dropout", "0", "--do_eval", "1")
    one = run_script(args(tmp_path / "one"), 1)
    run_script(args(tmp_path / "two"), 2)
    losses = [[json.loads(line)["total"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["split"] == "train"] for run in ("one", "two")]
    assert len(losses[0]) == 6
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)  # reduction order alone: measured 3e-6 at most
    # Adam divides by the root of the second moment, so reduction-order noise in a near-zero gradient can move a
    # weight by up to lr (1e-3) a step; measured 4e-5 after 6 steps.
    for name in ("checkpoint-epoch2.pth", "model_best.pth"):
        w1 = torch.load(tmp_path / "one" / name, weights_only=True)
        w2 = torch.load(tmp_path / "two" / name, weights_only=True)
        assert w1["epoch"] == w2["epoch"]
        for key, value in w1["state_dict"].items():
            torch.testing.assert_close(w2["state_dict"][key], value, atol=2e-4, rtol=0)
    np.testing.assert_allclose(np.load(tmp_path / "two" / "sims_test.npy"),
                               np.load(tmp_path / "one" / "sims_test.npy"), atol=1e-5)
    assert json.loads(one.stdout.strip().splitlines()[-1])["num_test"] == 10
