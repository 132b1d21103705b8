"""The HAP-VR frame feature extractor: L3-iMAC against hand computations and the reference's fixed kernels,
(N, 9, 512) unit features, strict torchvision ResNet-50 loading, and one-line errors naming the flag."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet50

from models.video_video.feature_extractor import (REGION_DIMS, RegionFeatureExtractor, build_region_extractor,
                                                  imac_kernel, imac_regions, imagenet_normalise, load_resnet50)
from models.video_video.pca import load_pca, random_pca, save_pca
from models.weights import CheckpointError


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return resnet50(weights=None).state_dict()


@pytest.fixture(scope="module")
def resnet_file(resnet_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("resnet") / "resnet50-random.pth"
    torch.save(resnet_state, path)
    return path


def test_the_kernels_are_the_references_at_224():
    assert [imac_kernel(side) for side in (56, 28, 14, 7)] == [28, 14, 6, 3]
    for side in range(3, 200):  # the rule: the largest kernel that still fits 3 windows
        kernel = imac_kernel(side)
        assert (side - kernel) // math.ceil(kernel / 2) + 1 >= 3
        assert all((side - k) // math.ceil(k / 2) + 1 < 3 for k in range(kernel + 1, side + 1))
    assert imac_kernel(2) == imac_kernel(1) == 1


def _window_max(x: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    return x[0, :, rows, cols].amax(dim=(-2, -1))


def test_imac_against_a_hand_computation():
    torch.manual_seed(1)
    a = torch.randn(1, 2, 7, 7)  # kernel 3, stride 2: windows 0:3, 2:5, 4:7
    b = torch.randn(1, 3, 14, 14)  # kernel 6, stride 3: windows 0:6, 3:9, 6:12 (rows 12, 13 left out)
    c = torch.randn(1, 2, 2, 2)  # kernel 1: a 2 x 2 grid, spread onto 3 x 3 as bins 0:1, 0:2, 1:2
    windows = {7: [slice(0, 3), slice(2, 5), slice(4, 7)], 14: [slice(0, 6), slice(3, 9), slice(6, 12)]}
    spread = [[0], [0, 1], [1]]
    expected = []
    for i in range(3):
        for j in range(3):
            va = F.normalize(_window_max(a, windows[7][i], windows[7][j]), dim=0)
            vb = F.normalize(_window_max(b, windows[14][i], windows[14][j]), dim=0)
            cells = torch.stack([F.normalize(c[0, :, r, s], dim=0) for r in spread[i] for s in spread[j]])
            vc = F.normalize(cells.amax(0), dim=0)
            expected.append(F.normalize(torch.cat([va, vb, vc]), dim=0))
    got = imac_regions([a, b, c])
    assert got.shape == (1, 9, 7)
    assert torch.allclose(got[0], torch.stack(expected), atol=1e-6)


def _reference_l3_imac(maps: list[torch.Tensor]) -> torch.Tensor:
    """S2VS's ResNet.extract_region_vectors pooling with its fixed kernels 28, 14, 6, 3 (valid at 224)."""
    tensors = []
    for x, size in zip(maps, (28, 14, 6, 3)):
        tensors.append(F.normalize(F.max_pool2d(x, [size, size], int(np.ceil(size / 2))), p=2, dim=1))
    tensors = [F.normalize(F.adaptive_max_pool2d(t, tensors[-1].shape[2:]), p=2, dim=1) for t in tensors]
    x = torch.cat(tensors, 1)
    return F.normalize(x.view(x.shape[0], x.shape[1], -1).permute(0, 2, 1), p=2, dim=-1)


def test_imac_equals_the_reference_on_224_frames():
    extractor = build_region_extractor(random_init=True)
    frames = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        maps = extractor.stage_maps(frames)
        assert [tuple(m.shape[1:]) for m in maps] == [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]
        assert torch.allclose(imac_regions(maps), _reference_l3_imac(maps), atol=1e-6)


@pytest.mark.parametrize("size", [64, 96])
def test_features_are_nine_unit_vectors_per_frame(size):
    extractor = build_region_extractor(random_init=True, seed=2)
    frames = imagenet_normalise(torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8))
    with torch.no_grad():
        features = extractor(frames)
        regions = extractor.region_vectors(frames)
    assert features.shape == (3, 9, 512) and regions.shape == (3, 9, REGION_DIMS)
    assert torch.allclose(features.norm(dim=-1), torch.ones(3, 9), atol=1e-5)
    assert torch.allclose(regions.norm(dim=-1), torch.ones(3, 9), atol=1e-5)


def test_random_init_is_seeded_frozen_and_stays_in_eval_mode():
    first, again = build_region_extractor(random_init=True, seed=5), build_region_extractor(random_init=True, seed=5)
    state, other = first.state_dict(), again.state_dict()
    assert all(torch.equal(state[key], other[key]) for key in state)
    assert not torch.equal(state["backbone.conv1.weight"],
                           build_region_extractor(random_init=True, seed=6).state_dict()["backbone.conv1.weight"])
    assert not any(p.requires_grad for p in first.parameters())
    first.train()
    assert not first.training and not first.backbone.layer1[0].bn1.training


def test_a_torchvision_state_dict_loads_strictly(resnet_state, resnet_file, tmp_path):
    net = load_resnet50(resnet_file)
    assert all(torch.equal(net.state_dict()[key], value) for key, value in resnet_state.items())
    # Older torchvision files lack num_batches_tracked; a state dict saved without the classifier also loads.
    trimmed = {k: v for k, v in resnet_state.items() if not k.endswith("num_batches_tracked") and
               not k.startswith("fc.")}
    torch.save({"module." + k: v for k, v in trimmed.items()}, tmp_path / "trimmed.pth")
    assert torch.equal(load_resnet50(tmp_path / "trimmed.pth").layer4[2].conv3.weight,
                       resnet_state["layer4.2.conv3.weight"])


def test_the_stages_are_torchvisions(resnet_state, resnet_file):
    extractor = RegionFeatureExtractor(load_resnet50(resnet_file))
    reference = resnet50(weights=None)
    reference.load_state_dict(resnet_state)
    reference.eval()
    seen = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(reference, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
    frames = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference(frames)
        maps = extractor.stage_maps(frames)
    assert all(torch.equal(m, seen[name]) for m, name in zip(maps, ("layer1", "layer2", "layer3", "layer4")))


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("layer2.1.bn2.running_var"), "missing key layer2.1.bn2.running_var"),
    (lambda s: s.__setitem__("layer1.0.conv_1.weight", s.pop("layer1.0.conv1.weight")),
     "missing key layer1.0.conv1.weight"),
    (lambda s: s.__setitem__("head.weight", torch.zeros(1)), "unexpected key head.weight"),
    (lambda s: s.__setitem__("conv1.weight", torch.zeros(64, 3, 3, 3)),
     r"conv1.weight has shape \(64, 3, 3, 3\), ResNet-50 expects \(64, 3, 7, 7\)"),
])
def test_a_wrong_state_dict_is_refused_naming_the_key(resnet_state, tmp_path, change, message):
    state = dict(resnet_state)
    change(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=f"--resnet_path .*bad.pth: {message}"):
        load_resnet50(tmp_path / "bad.pth")


def test_files_build_the_extractor(resnet_file, tmp_path):
    pca = random_pca(REGION_DIMS, 512, seed=1)
    save_pca(tmp_path / "pca.npz", {"mean": pca.mean.numpy(), "d": np.ones(512), "V": pca.projection.numpy()})
    extractor = build_region_extractor(resnet_file, tmp_path / "pca.npz", dims=64)
    direct = RegionFeatureExtractor(load_resnet50(resnet_file), load_pca(tmp_path / "pca.npz", 64))
    frames = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = extractor(frames)
        assert features.shape == (2, 9, 64)
        assert torch.allclose(features, direct(frames))
    # A ResNet file with --random_init keeps the ResNet and draws only the PCA.
    assert build_region_extractor(resnet_file, random_init=True).pca.dims == 512


def test_missing_paths_name_the_flag(resnet_file, tmp_path):
    with pytest.raises(CheckpointError, match=r"^--resnet_path: no ResNet-50 weights given"):
        build_region_extractor(pca_path=tmp_path / "pca.npz")
    with pytest.raises(CheckpointError, match=r"^--pca_path: no PCA-whitening file given"):
        build_region_extractor(resnet_path=resnet_file)
    with pytest.raises(CheckpointError, match=r"^--resnet_path .*nothing.pth: ResNet-50 weight file not found$"):
        build_region_extractor(tmp_path / "nothing.pth", tmp_path / "pca.npz")
    with pytest.raises(CheckpointError, match=r"^--pca_path .*nothing.npz: PCA file not found$"):
        build_region_extractor(resnet_file, tmp_path / "nothing.npz")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"^--resnet_path .*junk.pth: not a readable weight file"):
        build_region_extractor(tmp_path / "junk.pth", tmp_path / "pca.npz")
    save_pca(tmp_path / "small.npz", {"mean": np.zeros(3840), "d": np.ones(8), "V": np.eye(3840, 8)})
    with pytest.raises(CheckpointError, match=r"^--pca_path .*small.npz: 8 principal axes, cannot keep dims = 512"):
        build_region_extractor(resnet_file, tmp_path / "small.npz")


def test_frames_must_be_normalised_floats():
    extractor = build_region_extractor(random_init=True)
    with pytest.raises(ValueError, match="expected normalised float frames"):
        extractor(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected normalised float frames"):
        extractor(torch.zeros(1, 64, 64, 3))
