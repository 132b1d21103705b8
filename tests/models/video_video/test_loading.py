"""load_hapvr_model: plain state dicts, reference checkpoints with an argparse.Namespace read by the restricted
unpickler (which refuses anything else), options from the checkpoint's args, one-line errors."""
from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch

from models import load_hapvr_model
from models.weights import CheckpointError
from tests.helpers import close

# The train.py arguments of the published scripts/train.sh that matter to the network, plus some that do not.
PUBLISHED_ARGS = dict(similarity_network="ViSiL", backbone="resnet", dims=512, attention=True, binarization=False,
                      binary_bits=512, f2f_sim_module="TopKChamfer", v2v_sim_module="TopKChamfer", f_topk_rate=0.1,
                      v_topk_rate=0.03, loss_list=["TBInnerQuadLinearAP", "QuadLinearAP", "InfoNCE", "SSHN"],
                      lambda_viv=(0.3, 0.7), learning_rate=4e-5, window_sz=28)


def checkpoint(state: dict, path: Path, **changes) -> Path:
    """A checkpoint laid out as the reference's utils.save_model writes it."""
    args = argparse.Namespace(**{**PUBLISHED_ARGS, **changes})
    torch.save({"args": args, "model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 4e-5}]},
                "global_step": 1500}, path)
    return path


def test_a_plain_state_dict_takes_the_published_options(hapvr_state, tmp_path):
    for source in (hapvr_state, tmp_path / "plain.pth"):
        torch.save(hapvr_state, tmp_path / "plain.pth")
        network = load_hapvr_model(source)
        assert (network.config.f_topk_rate, network.config.v_topk_rate) == (0.1, 0.03)
        assert network.attention is not None and network.config.dims == 512


def test_a_namespace_checkpoint_loads_and_scores(hapvr_state, hapvr_io, tmp_path):
    network = load_hapvr_model(checkpoint(hapvr_state, tmp_path / "model.pth"))
    with torch.no_grad():
        assert close(network.video_similarity(hapvr_io["query"], hapvr_io["target"]),
                     hapvr_io["inference_sim"][0, 0])


def test_options_come_from_the_args_and_the_caller_wins(hapvr_state, tmp_path):
    path = checkpoint(hapvr_state, tmp_path / "model.pth", f_topk_rate=0.3, v2v_sim_module="Chamfer")
    assert (load_hapvr_model(path).config.f_topk_rate, load_hapvr_model(path).config.v_topk_rate) == (0.3, 0.0)
    assert load_hapvr_model(path, v_topk_rate=0.1).config.v_topk_rate == 0.1


def test_missing_args_take_the_reference_constructor_defaults(hapvr_state, tmp_path):
    path = tmp_path / "bare.pth"
    torch.save({"args": argparse.Namespace(attention=True), "model": hapvr_state}, path)
    assert load_hapvr_model(path).config.v_topk_rate == 0.1


def test_a_network_without_attention(hapvr_state, tmp_path):
    state = {key: value for key, value in hapvr_state.items() if key.startswith("comparator_module.")}
    network = load_hapvr_model(checkpoint(state, tmp_path / "noatt.pth", attention=False))
    assert network.attention is None


class Payload:
    """Unpickling this would run a shell command that leaves a file behind."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused(hapvr_state, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"args": Payload(marker), "model": hapvr_state}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to unpickle \(it holds \S*system") as err:
        load_hapvr_model(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_a_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": [1, 2]}, "args": Path("x")}, protocol=2))
    with pytest.raises(CheckpointError, match=r"plain\.pkl: (refused to unpickle|not a readable checkpoint)"):
        load_hapvr_model(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent\.pth: checkpoint file not found"):
        load_hapvr_model(tmp_path / "absent.pth")


def test_a_missing_key_is_named(hapvr_state, tmp_path):
    state = {key: value for key, value in hapvr_state.items() if key != "comparator_module.fconv.bias"}
    with pytest.raises(CheckpointError, match=r"broken\.pth: missing key comparator_module\.fconv\.bias"):
        load_hapvr_model(checkpoint(state, tmp_path / "broken.pth"))


def test_an_unexpected_key_is_named(hapvr_state):
    with pytest.raises(CheckpointError, match=r"state dict: unexpected key binarization\.W"):
        load_hapvr_model({**hapvr_state, "binarization.W": torch.zeros(2, 2)})


def test_a_wrong_shape_is_named(hapvr_state, tmp_path):
    state = {**hapvr_state, "comparator_module.conv2.weight": torch.zeros(64, 32, 5, 5)}
    with pytest.raises(CheckpointError, match=r"shape\.pth: comparator_module\.conv2\.weight has shape "
                                              r"\(64, 32, 5, 5\), the network expects \(64, 32, 3, 3\)"):
        torch.save(state, tmp_path / "shape.pth")
        load_hapvr_model(tmp_path / "shape.pth")


@pytest.mark.parametrize("changes, message", [
    ({"binarization": True}, r"args\.binarization = True is not supported"),
    ({"f2f_sim_module": "Max"}, r"args\.f2f_sim_module = 'Max' is not supported"),
    ({"attention": False}, r"args\.attention = False but the state dict has attention\.transform\.weight"),
    ({"dims": 256}, r"args\.dims = 256 but attention\.transform\.weight is \(512, 512\)"),
])
def test_args_that_do_not_fit_are_named(hapvr_state, tmp_path, changes, message):
    with pytest.raises(CheckpointError, match=r"args\.pth: " + message):
        load_hapvr_model(checkpoint(hapvr_state, tmp_path / "args.pth", **changes))


def test_a_non_tensor_entry_is_named(hapvr_state):
    with pytest.raises(CheckpointError, match=r"state dict: comparator_module\.conv1\.bias is not a tensor"):
        load_hapvr_model({"model": {**hapvr_state, "comparator_module.conv1.bias": [0.0]}})
