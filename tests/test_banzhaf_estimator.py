"""banzhaf_estimator.py end to end on tiny synthetic data."""
import torch

import banzhaf_estimator
from models.text_video.estimator import BanzhafEstimator
from tests.helpers import train_argv


def test_trains_estimator_and_reports_held_out_metrics(tiny_demo, tmp_path):
    out = tmp_path / "est"
    args = train_argv(tiny_demo, out, "--banzhaf_samples", "8", "--lr", "1e-2")
    metrics = banzhaf_estimator.main(args)
    assert metrics["num_pairs"] == 8 and metrics["mse"] > 0 and -1 <= metrics["spearman"] <= 1
    state = torch.load(out / "pytorch_model.bin.0", weights_only=True)
    assert {"cnn1.weight", "bn.running_mean", "cnn2.bias", "Q", "K", "V"} <= set(state)
    BanzhafEstimator().load_state_dict(state)  # the format --estimator reads
    assert "epoch 1: mse" in (out / "log.txt").read_text()
