"""End to end: main_vqa.py on tiny synthetic questions, 1 vs 2 processes, evaluation of a saved checkpoint."""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import torch

import main_vqa
from tests.helpers import run as run_script
from dataloaders.errors import DataError
from modules.engine.config import parse_with_config
from modules import vqa

ARCH = ('{"embed_dim": 64, "image_size": 32, "patch_size": 16, "vision_width": 64, "vision_layers": 1, '
        '"context_length": 16, "vocab_size": 49408, "text_width": 64, "text_layers": 1}')


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory) -> Path:
    from dataloaders.synthetic.qa import generate_demo_qa

    root = tmp_path_factory.mktemp("demo_qa")
    generate_demo_qa(root, num_train=16, num_test=8, frames=8, fps=8, size=32, seed=0)
    return root


@pytest.fixture(scope="module")
def estimator(tmp_path_factory) -> Path:
    from models.text_video.estimator import BanzhafEstimator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("estimator") / "estimator.bin"
    torch.save(BanzhafEstimator().state_dict(), path)
    return path


def argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--do_train", "--do_eval", "--train_csv", str(data / "qa" / "train.jsonl"), "--val_csv", str(data / "qa" / "test.jsonl"),
            "--data_path", str(data / "qa" / "train_ans2label.json"), "--features_path", str(data / "videos"),
            "--output_dir", str(out), "--clip_arch", ARCH, "--num_hidden_layers", "1", "--max_words", "12",
            "--max_frames", "4", "--feature_framerate", "4", "--batch_size", "8", "--batch_size_val", "5",
            "--epochs", "1", "--lr", "1e-3", "--coef_lr", "1", "--num_thread_reader", "0", "--n_display", "2",
            "--seed", "3", "--device", "cpu", "--freeze_layer_num", "-1", *extra]


def run(args: list[str], processes: int) -> subprocess.CompletedProcess:
    return run_script(args, processes, "main_vqa.py")


def answers(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "answers_test.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_equal_one(qa_data, estimator, tmp_path):
    # Dropout (0.1 by default), the estimator distillation and augmentation are all on.
    extra = ("--estimator", str(estimator), "--kl", "2", "--skl", "1")
    one = run(argv(qa_data, tmp_path / "one", *extra), 1)
    run(argv(qa_data, tmp_path / "two", *extra), 2)
    last = json.loads(one.stdout.strip().splitlines()[-1])
    assert last["num_test"] == 24 and {"acc_top1", "majority_baseline", "acc_top1_reference"} <= set(last)
    w1 = torch.load(tmp_path / "one" / "pytorch_model.bin.0", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "pytorch_model.bin.0", weights_only=True)
    assert "classifier1.2.weight" in w1 and "banzhafteacher.Q" in w1
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=1e-5, rtol=1e-4)
    a1, a2 = answers(tmp_path / "one"), answers(tmp_path / "two")
    assert [r["question"] for r in a1] == [r["question"] for r in a2]
    for r1, r2 in zip(a1, a2):
        assert r1["top"][0] == r2["top"][0]
        assert r1["scores"] == pytest.approx(r2["scores"], abs=1e-4)
    metrics_two = json.loads((tmp_path / "two" / "metrics_test.json").read_text())
    assert metrics_two["acc_top1"] == last["acc_top1"]


def test_train_then_evaluate_the_saved_checkpoint(qa_data, tmp_path, capsys):
    trained = main_vqa.main(argv(qa_data, tmp_path / "train", "--epochs", "2", "--skl", "0"))
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == json.loads(json.dumps(trained))
    assert any(line.startswith("| all") for line in out)  # the accuracy table
    run_dir = tmp_path / "train"
    for name in ("pytorch_model.bin.0", "pytorch_model.bin.1", "pytorch_model.bin.best", "last.pt", "config.yaml",
                 "answers_test.jsonl", "metrics_test.json"):
        assert (run_dir / name).is_file(), name
    # Validation after every epoch writes no result files: its metrics are in metrics.jsonl.
    assert not (run_dir / "answers_val.jsonl").exists() and not (run_dir / "metrics_val.json").exists()
    best = run_dir / "pytorch_model.bin.best"
    best_record = {"path": str(best), "sha256": hashlib.sha256(best.read_bytes()).hexdigest()}
    record = json.loads((run_dir / "metrics_test.json").read_text())["provenance"]
    assert record["checkpoint"] == {"trained_in_this_run": True, **best_record}
    assert 0.0 <= trained["majority_baseline"] <= 100.0 and trained["num_test"] == 24
    assert set(trained["by_type"]) == {"colour", "shape", "motion"}
    # --do_eval of the best checkpoint gives the numbers the training run ended with.
    evaluated = main_vqa.main(argv(qa_data, tmp_path / "eval", "--skl", "0") + [
        "--do_train", "0", "--do_eval", "--init_model", str(run_dir / "pytorch_model.bin.best")])
    assert evaluated["acc_top1"] == trained["acc_top1"] and evaluated["acc_top5"] == trained["acc_top5"]
    record = json.loads((tmp_path / "eval" / "metrics_test.json").read_text())["provenance"]
    assert record["checkpoint"] == best_record and record["weights"] == {"init_model": best_record}


def test_an_answer_outside_the_vocabulary_counts_only_in_the_standard_protocol(qa_data, tmp_path):
    vocab = json.loads((qa_data / "qa" / "train_ans2label.json").read_text())
    rows = [json.loads(line) for line in (qa_data / "qa" / "test.jsonl").read_text().splitlines()]
    # 16 training clips do not cover every colour/shape/motion: some test answers are already unseen.
    unseen = sum(r["answer"] not in vocab for r in rows)
    first_known = next(i for i, r in enumerate(rows) if r["answer"] in vocab)
    rows[first_known]["answer"] = "zebra"
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = argv(qa_data, tmp_path / "out", "--skl", "0") + ["--do_train", "0", "--do_eval"]
    metrics = main_vqa.main(base + ["--test_csv", str(test_file)])
    assert metrics["num_test"] == 24 and metrics["num_out_of_vocab"] == unseen + 1
    assert metrics["num_test_reference"] == 24 - unseen - 1
    written = [json.loads(line) for line in (tmp_path / "out" / "answers_test.jsonl").read_text().splitlines()]
    assert written[first_known]["answer"] == "zebra" and len(written) == 24


def test_missing_vocabulary_is_named(qa_data, tmp_path):
    args = argv(qa_data, tmp_path / "out") + ["--data_path", str(tmp_path / "nope.json")]
    with pytest.raises(DataError, match="nope.json"):
        main_vqa.main(args)


def test_the_published_command_parses():
    published = ("--do_train --num_thread_reader=8 --epochs=5 --batch_size=32 --n_display=50 "
                 "--train_csv data/MSR-VTT/qa/train.jsonl --val_csv data/MSR-VTT/qa/test.jsonl "
                 "--data_path data/MSR-VTT/qa/train_ans2label.json --features_path videos --lr 1e-4 "
                 "--max_words 32 --max_frames 12 --batch_size_val 16 --datatype msrvtt --expand_msrvtt_sentences "
                 "--feature_framerate 1 --coef_lr 1e-3 --freeze_layer_num 0 --slice_framepos 2 --loose_type "
                 "--linear_patch 2d --estimator E --output_dir out --kl 2 --skl 1 --local_rank 0").split()
    cfg = parse_with_config(vqa.parser(), published)
    assert (cfg.do_train, cfg.do_eval, cfg.workers, cfg.video_framerate, cfg.slice_framepos) == (1, 0, 8, 1.0, "uniform")
    assert (cfg.kl, cfg.skl, cfg.rate, cfg.t_rate1, cfg.v_rate1) == (2.0, 1.0, [0.4, 0.4, 0.2], 0.125, 0.25)
    assert cfg.base_encoder == "ViT-B/16"
    with pytest.raises(SystemExit):
        parse_with_config(vqa.parser(), ["--linear_patch", "3d"])
