"""Frame features of HAP-VR (the reference's ResNet extractor from S2VS/ViSiL): frames -> 9 region vectors of 512.

An ImageNet ResNet-50 (torchvision layout, frozen, eval mode) runs on ImageNet-normalised frames (N, 3, H, W).
L3-iMAC over the outputs of layer1..layer4 (256 + 512 + 1024 + 2048 = 3840 channels): each stage is max-pooled
with a k x k kernel and stride ceil(k / 2) into 3 x 3 overlapping regions, each region vector L2-normalised over
channels; then every stage is max-pooled adaptively to one 3 x 3 grid and normalised again, the stages are
concatenated and each 3840-d region vector is L2-normalised. PCA whitening to `dims` (512) and an L2 norm follow.

The kernels: for 224 x 224 frames (stage maps 56, 28, 14, 7) the reference's constants 28, 14, 6, 3, which are
the largest kernels that fit 3 windows at stride ceil(k / 2); other sizes take that rule on the short side of each
stage's map, so every frame gives 3 x 3 regions (the reference keeps the 224 kernels at any size).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet, resnet50

from models.video_video.pca import PCAWhitening, load_pca, random_pca
from models.weights import CheckpointError, check_strict, read_state_dict

STAGES = ("layer1", "layer2", "layer3", "layer4")
STAGE_CHANNELS = (256, 512, 1024, 2048)
REGION_DIMS = sum(STAGE_CHANNELS)  # 3840
GRID = 3  # regions per side: 9 region vectors per frame
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # HAP-VR's VideoNormalizer (S2VS used 0.45 / 0.225)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The ImageNet classifier of a torchvision file: not part of the extractor (the reference deletes `fc`).
_CLASSIFIER = ("fc.weight", "fc.bias")


def imac_kernel(side: int, regions: int = GRID) -> int:
    """The largest kernel k such that max-pooling `side` cells with stride ceil(k / 2) gives >= `regions` windows
    (56, 28, 14, 7 -> 28, 14, 6, 3, the reference's); 1 when the side is shorter than `regions`."""
    for kernel in range(side, 0, -1):
        stride = -(-kernel // 2)
        if (side - kernel) // stride + 1 >= regions:
            return kernel
    return 1


def imac_regions(stages: Sequence[torch.Tensor], grid: int = GRID) -> torch.Tensor:
    """L3-iMAC of stage maps [(N, C_s, H_s, W_s), ...] -> unit region vectors (N, grid * grid, sum C_s), regions in
    row-major order of the grid."""
    pooled = []
    for x in stages:
        kernel = imac_kernel(min(x.shape[-2:]), grid)
        pooled.append(F.normalize(F.max_pool2d(x, kernel, stride=-(-kernel // 2)), p=2, dim=1))
    # Identity at 224 x 224 (every stage already 3 x 3); elsewhere it brings the stages onto one grid.
    pooled = [F.normalize(F.adaptive_max_pool2d(x, grid), p=2, dim=1) for x in pooled]
    regions = torch.cat(pooled, dim=1).flatten(2).transpose(1, 2)
    return F.normalize(regions, p=2, dim=-1)


class RegionFeatureExtractor(nn.Module):
    """Normalised frames (N, 3, H, W) -> region features (N, 9, dims), unit length; see the module docstring.

    Frozen: no parameter needs a gradient, and `train()` leaves it in eval mode, so batch-norm statistics never
    change when it sits inside a model that is being trained. Without `pca`, forward returns the 3840-d vectors."""

    def __init__(self, backbone: ResNet, pca: Optional[PCAWhitening] = None):
        super().__init__()
        if pca is not None and pca.in_dims != REGION_DIMS:
            raise ValueError(f"the PCA takes {pca.in_dims}-d vectors, the ResNet-50 regions are {REGION_DIMS}-d")
        backbone.fc = nn.Identity()  # unused; keeps its weights out of the module
        self.backbone = backbone
        self.pca = pca
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "RegionFeatureExtractor":
        return super().train(False)

    @property
    def dims(self) -> int:
        return self.pca.dims if self.pca is not None else REGION_DIMS

    def stage_maps(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) -> the outputs of layer1..layer4, (N, C_s, H_s, W_s)."""
        if frames.ndim != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"expected normalised float frames (N, 3, H, W), got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(frames))))
        maps = []
        for name in STAGES:
            x = getattr(net, name)(x)
            maps.append(x)
        return maps

    def region_vectors(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> the L3-iMAC region vectors before PCA, (N, 9, 3840), unit length."""
        return imac_regions(self.stage_maps(frames))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        regions = self.region_vectors(frames)
        return regions if self.pca is None else self.pca(regions)


def _seeded_resnet50(seed: int) -> ResNet:
    """torchvision's ResNet-50 with its own random initialisation, drawn from `seed` (the global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return resnet50(weights=None)


def load_resnet50(path: Union[str, Path], flag: str = "--resnet_path") -> ResNet:
    """torchvision's ResNet-50 with the weights of a torchvision ImageNet state dict (`resnet50-*.pth`).

    Strict: every weight present with its shape, no other key, except the ImageNet classifier (`fc.*`, unused)
    and `*.num_batches_tracked` (absent from older files; not used in eval mode). A `module.` prefix is removed.
    Problems raise a one-line CheckpointError naming the flag, the file and the key."""
    if not Path(path).is_file():
        raise CheckpointError(f"{flag} {path}: ResNet-50 weight file not found")
    name = f"{flag} {path}"
    try:
        state = read_state_dict(path)
    except CheckpointError as error:
        raise CheckpointError(f"{flag} {error}") from None
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    net = resnet50(weights=None)
    check_strict(net.state_dict(), state, name, "ResNet-50", "torchvision's ResNet-50 state dict",
                 optional=lambda key: key in _CLASSIFIER or key.endswith("num_batches_tracked"))
    net.load_state_dict(state, strict=False)  # checked above; strict would refuse files without num_batches_tracked
    return net


def build_region_extractor(resnet_path: Optional[Union[str, Path]] = None,
                           pca_path: Optional[Union[str, Path]] = None, dims: int = 512,
                           random_init: bool = False, seed: int = 0) -> RegionFeatureExtractor:
    """The HAP-VR frame feature extractor from local files: the ImageNet ResNet-50 (`--resnet_path`) and the
    PCA-whitening file (`--pca_path`, see models.video_video.pca). Nothing is downloaded. With `random_init`, a
    path left out is replaced by random weights (a randomly initialised ResNet-50, a random orthonormal PCA,
    both drawn from `seed`): for demos and tests only, the features mean nothing."""
    if resnet_path is None and not random_init:
        raise CheckpointError("--resnet_path: no ResNet-50 weights given (expected torchvision's ImageNet state "
                              "dict, e.g. resnet50-0676ba61.pth; nothing is downloaded)")
    if pca_path is None and not random_init:
        raise CheckpointError("--pca_path: no PCA-whitening file given (expected an .npz or .pt with mean, d, V, "
                              "e.g. the reference's pca_resnet50_vcdb_1M.pth or the output of scripts.fit_pca)")
    backbone = _seeded_resnet50(seed) if resnet_path is None else load_resnet50(resnet_path)
    if pca_path is None:
        pca = random_pca(REGION_DIMS, dims, seed)
    else:
        if not Path(pca_path).is_file():
            raise CheckpointError(f"--pca_path {pca_path}: PCA file not found")
        try:
            pca = load_pca(pca_path, dims)
        except CheckpointError as error:
            raise CheckpointError(f"--pca_path {error}") from None
    if pca.in_dims != REGION_DIMS:
        raise CheckpointError(f"--pca_path {pca_path}: mean has {pca.in_dims} entries, the ResNet-50 region "
                              f"vectors have {REGION_DIMS}")
    return RegionFeatureExtractor(backbone, pca)


def imagenet_normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB frames (N, 3, H, W) -> float32 (N, 3, H, W): / 255, then ImageNet mean and std (the reference's
    VideoNormalizer)."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(1, 3, 1, 1)
    return (frames.float() / 255.0 - mean) / std
