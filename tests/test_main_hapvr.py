"""HAP-VR training end to end: the published flags parse, a tiny run on the synthetic moving-shapes demo writes the
published checkpoints that test.py evaluates, a run killed mid-epoch resumes to the uninterrupted run's weights,
1 and 2 processes take the same steps, and --use_fp16 runs under bf16 autocast on CPU."""
from __future__ import annotations

import json
import shlex

import pytest
import torch

import main_hapvr
from dataloaders.synthetic.moving_shapes import generate_moving_shapes
from models import load_hapvr_model
from models.video_video import read_checkpoint
from modules import video_video
from modules.engine.trainer import Trainer
from tests.helpers import load_test_entry, run

# scripts/train.sh of the HAP-VR release, as published (its paths aside).
PUBLISHED = """--dataset_path FRAMES --experiment_path EXP --augmentations GT,FT,TT,ViV --iter_epochs 30000
--warmup_iters 1000 --batch_sz 64 --f2f_sim_module TopKChamfer --v2v_sim_module TopKChamfer
--loss_select TBInnerQuadLinearAP,QuadLinearAP,InfoNCE,SSHN --qlap_sigma 0.05 --qlap_rho 0.1 --innerAP_qlap_sigma 0.05
--innerAP_qlap_rho 5 --pseudo_label_top_rate 0.35 --pseudo_label_bottom_rate 0.35 --f_topk_rate 0.1 --v_topk_rate 0.03
--inner_parameter 6 --batch_sz_fe 512 --workers 12 --log_step 100 --eval_step 1500 --window_sz 28
--learning_rate 4e-5 --weight_decay 0.01 --temperature 0.03 --lambda_parameter 3. --r_parameter 1. --use_fp16 true"""


def test_every_published_flag_parses_and_maps_onto_the_run(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = video_video.parser().parse_args(shlex.split(PUBLISHED))
    video_video.resolve(cfg)
    assert cfg.output_dir == "EXP" and cfg.batch_size == 128 and cfg.epochs == 20 and cfg.lr == 4e-5
    assert cfg.n_display == 100 and cfg.loss_selected == ("TBInnerQuadLinearAP", "QuadLinearAP", "InfoNCE", "SSHN")
    assert cfg.precision in ("amp_bf16", "amp_fp16") and cfg.window_sz == 28 and cfg.augmentations[-1] == "ViV"


@pytest.mark.parametrize("flag", ["--f2f_sim_module Max", "--augmentations GT,XX", "--binarization true"])
def test_options_this_repository_does_not_implement_stop_at_parsing(flag):
    with pytest.raises(SystemExit):
        video_video.parser().parse_args(shlex.split(f"--dataset_path F --experiment_path E {flag}"))


def tiny(root, out, *extra: str) -> list[str]:
    return ["--demo_data", str(root), "--experiment_path", str(out), "--random_init", "true", "--frame_sz", "32",
            "--resize", "32", "--window_sz", "4", "--batch_sz", "4", "--iter_epochs", "4", "--eval_step", "2",
            "--warmup_iters", "1", "--workers", "0", "--log_step", "1", "--device", "cpu", "--learning_rate", "1e-3",
            "--batch_sz_fe", "256", *extra]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_moving_shapes(root, num_train=8, num_queries=2, per_label=1, num_distractors=3, frames=6, size=32)
    return root


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "exp"
    return out, main_hapvr.main(tiny(demo, out))


def test_the_demo_run_reports_before_after_and_chance(trained):
    out, metrics = trained
    assert {"DSVR", "DSVR_before", "DSVR_chance", "ISVD_h"} <= set(metrics)
    assert 0 < metrics["DSVR_chance"] < 1
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s["split"] == "train"] == [1, 2, 3, 4]
    assert [s["step"] for s in steps if s["split"] == "val"] == [2, 4]


def test_the_checkpoints_are_the_published_format_and_test_py_scores_them(trained, demo, tmp_path):
    out, metrics = trained
    assert {p.name for p in out.glob("*.pth")} == {"model_epoch1.pth", "model_epoch2.pth", "model_best.pth"}
    network = load_hapvr_model(out / "model_epoch2.pth")
    assert network.config.v_topk_rate == 0.1  # the run's own --v_topk_rate, read back from the checkpoint's args
    scored = load_test_entry().main(["--dataset", "FIVR-5K", "--dataset_hdf5", str(demo / "eval" / "fivr_5k.hdf5"),
                                     "--model_path", str(out / "model_epoch2.pth"), "--annotations",
                                     str(demo / "eval"), "--workers", "0", "--output_dir", str(tmp_path)])
    assert scored["DSVR"] == pytest.approx(metrics["DSVR"], abs=1e-9)


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(demo, trained, tmp_path, monkeypatch):
    full, _ = trained
    original = Trainer.optimizer_step

    def killed_in_the_second_epoch(self):  # epochs are 2 steps: after step 3, before step 4
        if self.step == 3:
            raise KeyboardInterrupt("killed")
        return original(self)

    monkeypatch.setattr(Trainer, "optimizer_step", killed_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        main_hapvr.main(tiny(demo, tmp_path / "cut"))
    monkeypatch.setattr(Trainer, "optimizer_step", original)
    main_hapvr.main(tiny(demo, tmp_path / "cut", "--resume", "1"))
    expected = read_checkpoint(full / "model_epoch2.pth")["model"]
    resumed = read_checkpoint(tmp_path / "cut" / "model_epoch2.pth")["model"]
    for key, value in expected.items():
        assert torch.equal(resumed[key], value), key
    assert "resumed from" in (tmp_path / "cut" / "log.txt").read_text()


def test_use_fp16_runs_under_bf16_autocast_on_cpu(demo, tmp_path):
    metrics = main_hapvr.main(tiny(demo, tmp_path / "bf16", "--use_fp16", "true", "--iter_epochs", "2"))
    losses = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train"]
    assert all(torch.isfinite(torch.tensor(s["total"])) for s in losses) and "DSVR" in metrics
    assert "amp_bf16" in (tmp_path / "bf16" / "config.yaml").read_text()


@pytest.mark.slow
def test_two_processes_take_the_steps_of_one(demo, tmp_path):
    # ViV mixes the clips of one process's batch (as the reference's per-GPU batch), so it is left out here.
    common = ("--augmentations", "GT,FT,TT")
    run(tiny(demo, tmp_path / "one", *common, "--batch_sz", "4"), 1, "main_hapvr.py")
    run(tiny(demo, tmp_path / "two", *common, "--batch_sz", "2"), 2, "main_hapvr.py")
    losses = [[json.loads(line)["total"] for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["split"] == "train"] for r in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    one = read_checkpoint(tmp_path / "one" / "model_epoch2.pth")["model"]
    two = read_checkpoint(tmp_path / "two" / "model_epoch2.pth")["model"]
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, atol=2e-4, rtol=0)
