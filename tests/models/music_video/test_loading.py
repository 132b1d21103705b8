"""load_music_video_model: sizes read off reference state dicts (golden and full size), reference checkpoints,
files, and one-line errors naming the file and the key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import load_music_video_model
from models.music_video import build_music_video_model
from models.weights import CheckpointError
from tests.helpers import close


@pytest.fixture(scope="module")
def default_shapes(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "bpvmr_default_state_dict_shapes.json").read_text())


def random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) * 0.02 for key, shape in shapes.items()}


def test_golden_state_dict_sizes_and_round_trip(bpvmr):
    model = load_music_video_model(bpvmr["state_dict"], attention="batch")
    assert model.music_linear.out_features == 64 and len(model.music_transformer.layers) == 1
    assert len(model.video_beat_transformer.layers) == 3
    assert model.music_transformer.layers[0].linear1.out_features == 2048
    own = model.reference_state_dict()
    assert list(own) == list(bpvmr["state_dict"])
    assert all(torch.equal(own[key], value) for key, value in bpvmr["state_dict"].items())


def test_full_size_state_dict_from_the_published_shapes(default_shapes):
    shapes = default_shapes["keys"]
    model = load_music_video_model(random_state(shapes))
    assert model.music_linear.out_features == 256 and len(model.music_transformer.layers) == 6
    assert len(model.video_beat_transformer.layers) == 8 and model.attention == "time"
    assert sum(p.numel() for p in model.parameters()) == default_shapes["num_params"]
    assert {k: list(v.shape) for k, v in model.reference_state_dict().items()} == shapes
    built = build_music_video_model()
    assert {k: v.shape for k, v in built.reference_state_dict().items()} == \
        {k: v.shape for k, v in model.reference_state_dict().items()}


@pytest.mark.parametrize("as_file", [False, True])
def test_a_reference_checkpoint_loads(bpvmr, reference_model, tmp_path, as_file):
    optimizer = torch.optim.AdamW(reference_model.parameters())
    checkpoint = {"epoch": 3, "state_dict": bpvmr["state_dict"], "optimizer": optimizer.state_dict()}
    source = checkpoint
    if as_file:
        source = tmp_path / "checkpoint-epoch3.pth"
        torch.save(checkpoint, source)
    model = load_music_video_model(source, attention="batch").eval()
    inputs = bpvmr["inputs_test"]
    with torch.no_grad():
        music = model.encode_music(inputs["music"][:4], inputs["music_beat"][:4])
    assert close(music["music_data"], bpvmr["embeds_test"]["music_data"][:4])


def test_a_data_parallel_prefix_is_dropped(bpvmr):
    state = {f"module.{key}": value for key, value in bpvmr["state_dict"].items()}
    assert load_music_video_model(state).music_linear.out_features == 64


def save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_a_missing_key_is_named_with_the_file(bpvmr, tmp_path):
    state = dict(bpvmr["state_dict"])
    del state["beat_pool.layer_norm3.bias"]
    path = save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"broken\.pth: missing key beat_pool\.layer_norm3\.bias") as err:
        load_music_video_model(path)
    assert "\n" not in str(err.value)


def test_a_missing_size_key_is_named(bpvmr, tmp_path):
    state = {key: value for key, value in bpvmr["state_dict"].items() if not key.startswith("music_linear.")}
    with pytest.raises(CheckpointError, match=r"nolinear\.pth: missing key music_linear\.weight"):
        load_music_video_model(save(state, tmp_path / "nolinear.pth"))


def test_an_unexpected_key_is_named(bpvmr, tmp_path):
    state = {**bpvmr["state_dict"], "pose_linear.weight": torch.zeros(2, 2)}
    with pytest.raises(CheckpointError, match=r"extra\.pth: unexpected key pose_linear\.weight"):
        load_music_video_model(save(state, tmp_path / "extra.pth"))


def test_a_wrong_shape_is_named(bpvmr, tmp_path):
    state = dict(bpvmr["state_dict"])
    state["beat_pool.linear_proj.weight"] = torch.zeros(64, 32)
    with pytest.raises(CheckpointError, match=r"shape\.pth: beat_pool\.linear_proj\.weight has shape \(64, 32\), "
                                              r"the model expects \(64, 64\)"):
        load_music_video_model(save(state, tmp_path / "shape.pth"))


def test_a_video_beat_encoder_of_the_wrong_depth_is_named(bpvmr):
    state = {key: value for key, value in bpvmr["state_dict"].items()
             if not key.startswith("video_beat_transformer.layers.2.")}
    with pytest.raises(CheckpointError, match=r"state dict: missing key video_beat_transformer\.layers\.2\."):
        load_music_video_model(state)


def test_heads_that_do_not_divide_the_width(bpvmr):
    with pytest.raises(CheckpointError, match="not divisible by 5 heads"):
        load_music_video_model(bpvmr["state_dict"], num_heads=5)


def test_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent\.pth: weight file not found"):
        load_music_video_model(tmp_path / "absent.pth")
