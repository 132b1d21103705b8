"""The DINO teacher: CLS features (N, 384), the official checkpoint's key layout and DINO's training-checkpoint
wrappers load strictly, wrong files and missing paths stop with one line naming --pretrained_DINO_path."""
from __future__ import annotations

import argparse

import pytest
import torch

from models.video_video import pseudo_labels
from models.video_video.dino import build_dino_teacher
from models.video_video.feature_extractor import imagenet_normalise
from models.weights import CheckpointError


def official_layout(depth: int = 12, dim: int = 384, patches: int = 196) -> dict[str, tuple[int, ...]]:
    """Key -> shape of dino_deitsmall16_pretrain.pth, written out from DINO's vision_transformer.vit_small."""
    keys = {"cls_token": (1, 1, dim), "pos_embed": (1, patches + 1, dim), "patch_embed.proj.weight": (dim, 3, 16, 16),
            "patch_embed.proj.bias": (dim,)}
    for i in range(depth):
        block = {"norm1.weight": (dim,), "norm1.bias": (dim,), "attn.qkv.weight": (3 * dim, dim),
                 "attn.qkv.bias": (3 * dim,), "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
                 "norm2.weight": (dim,), "norm2.bias": (dim,), "mlp.fc1.weight": (4 * dim, dim),
                 "mlp.fc1.bias": (4 * dim,), "mlp.fc2.weight": (dim, 4 * dim), "mlp.fc2.bias": (dim,)}
        keys.update({f"blocks.{i}.{key}": shape for key, shape in block.items()})
    keys.update({"norm.weight": (dim,), "norm.bias": (dim,)})
    return keys


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    """A state dict in the official layout: a seeded ViT-S/16's tensors under the official names."""
    vit = build_dino_teacher(random_init=True, seed=7).vit.state_dict()
    return {key: vit[key].clone() for key in official_layout()}


@pytest.fixture(scope="module")
def official_file(official_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("dino") / "dino_deitsmall16_pretrain.pth"
    torch.save(official_state, path)
    return path


def _same_weights(teacher, state: dict[str, torch.Tensor]) -> bool:
    own = teacher.vit.state_dict()
    return set(own) == set(state) and all(torch.equal(own[key], value) for key, value in state.items())


def test_timm_names_are_the_official_ones():
    own = build_dino_teacher(random_init=True).vit.state_dict()
    assert {key: tuple(value.shape) for key, value in own.items()} == official_layout()


def test_random_init_gives_cls_features_frozen_and_seeded():
    teacher = build_dino_teacher(random_init=True, seed=1)
    frames = torch.randn(2, 3, 224, 224)
    features = teacher(frames)
    assert features.shape == (2, 384) and teacher.dims == 384 and not features.requires_grad
    # The CLS token after the last block's final LayerNorm: DINO's get_intermediate_layers(x, 1)[0][:, 0].
    with torch.no_grad():
        assert torch.allclose(features, teacher.vit.forward_features(frames)[:, 0], atol=1e-6)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not teacher.vit.training
    assert torch.equal(teacher(frames), build_dino_teacher(random_init=True, seed=1)(frames))
    positives, negatives = pseudo_labels(teacher(torch.randn(4, 3, 224, 224)).view(2, 2, 384), 0.5, 0.5)
    assert positives.shape == negatives.shape == (2, 2, 2, 2)


def test_the_official_checkpoint_loads(official_state, official_file):
    assert _same_weights(build_dino_teacher(official_file), official_state)


def test_training_checkpoints_load_their_teacher(official_state, tmp_path):
    head = {"head.mlp.0.weight": torch.zeros(2048, 384), "head.last_layer.weight_g": torch.ones(65536, 1)}
    student = {f"module.backbone.{key}": value + 1 for key, value in official_state.items()}
    student.update({f"module.{key}": value for key, value in head.items()})
    full = {"teacher": {**{f"backbone.{key}": value for key, value in official_state.items()}, **head},
            "student": student, "optimizer": {"state": {}, "param_groups": [{"lr": 0.0}]}, "epoch": 100,
            "args": argparse.Namespace(arch="vit_small", patch_size=16)}
    torch.save(full, tmp_path / "checkpoint.pth")
    assert _same_weights(build_dino_teacher(tmp_path / "checkpoint.pth"), official_state)
    torch.save({"student": student}, tmp_path / "student.pth")
    shifted = {key: value + 1 for key, value in official_state.items()}
    assert _same_weights(build_dino_teacher(tmp_path / "student.pth"), shifted)
    torch.save({"state_dict": {f"module.{key}": value for key, value in official_state.items()}},
               tmp_path / "wrapped.pth")
    assert _same_weights(build_dino_teacher(tmp_path / "wrapped.pth"), official_state)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("blocks.3.attn.qkv.bias"), "missing key blocks.3.attn.qkv.bias"),
    (lambda s: s.__setitem__("head.weight", torch.zeros(1000, 384)), "unexpected key head.weight"),
    (lambda s: s.__setitem__("pos_embed", torch.zeros(1, 50, 384)),
     r"pos_embed has shape \(1, 50, 384\), the ViT expects \(1, 197, 384\)"),
])
def test_a_wrong_file_is_refused_naming_the_key(official_state, tmp_path, change, message):
    state = dict(official_state)
    change(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=f"^--pretrained_DINO_path .*bad.pth: {message}"):
        build_dino_teacher(tmp_path / "bad.pth")


def test_missing_paths_and_archs_name_the_flag(tmp_path):
    with pytest.raises(CheckpointError, match=r"^--pretrained_DINO_path: no DINO weights given"):
        build_dino_teacher()
    with pytest.raises(CheckpointError, match=r"^--pretrained_DINO_path .*none.pth: DINO weight file not found$"):
        build_dino_teacher(tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"^--pretrained_DINO_path .*junk.pth: not a readable checkpoint"):
        build_dino_teacher(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match=r"^--DINO_arch vit_huge: expected one of vit_small, vit_base"):
        build_dino_teacher(arch="vit_huge", random_init=True)


def test_reference_pixels_feed_the_raw_frames():
    teacher = build_dino_teacher(random_init=True, reference_pixels=True)
    pixels = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        expected = teacher.vit(pixels.float())
    assert torch.allclose(teacher(imagenet_normalise(pixels)), expected, atol=1e-3, rtol=1e-4)
