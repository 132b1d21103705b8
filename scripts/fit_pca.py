"""Fits the PCA whitening of HAP-VR's frame features: the file `--pca_path` takes.

    python -m scripts.fit_pca --frames DIR --resnet_path resnet50-0676ba61.pth --out pca.npz [--samples 10000]

DIR holds one folder of JPEG frames per video (DIR/<video>/<frame>.jpg, as frame extraction writes them).
`--samples` frames are drawn from all of them without replacement (seeded; all frames when there are fewer),
resized (short side to `--size`, bicubic) and centre-cropped to `--size` x `--size`, ImageNet-normalised and
passed through the ResNet-50; their L3-iMAC region vectors (9 x 3840 per frame at 224) are accumulated into a
float64 mean and covariance, whose top `--dims` eigenpairs are written as an .npz with keys mean (3840,),
d (dims,) eigenvalues, V (3840, dims) eigenvectors: the reference's PCALayer layout, read by
models.video_video.pca.load_pca. The reference's released file came from 1M region vectors of VCDB frames.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dataloaders.errors import DataError
from dataloaders.video.transforms import resize_and_crop
from models.video_video.feature_extractor import REGION_DIMS, RegionFeatureExtractor, imagenet_normalise, load_resnet50
from models.video_video.pca import PCAStats, save_pca
from modules.engine.checkpoint import atomic_write
from modules.engine.errors import RunError, cli

EXTENSIONS = (".jpg", ".jpeg")


def find_frames(root: Path) -> list[Path]:
    """Every DIR/<video>/<frame>.jpg, sorted, or a DataError naming DIR and the layout expected."""
    if not root.is_dir():
        raise DataError(f"--frames {root}: folder not found")
    frames = sorted(p for p in root.glob("*/*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not frames:
        raise DataError(f"--frames {root}: no frames found (expected {root}/<video>/<frame>.jpg)")
    return frames


def sample_frames(frames: list[Path], samples: int, seed: int) -> list[Path]:
    """`samples` of `frames` drawn without replacement by `seed`, in file order (all of them if fewer)."""
    if samples >= len(frames):
        return list(frames)
    picked = np.random.default_rng(seed).choice(len(frames), size=samples, replace=False)
    return [frames[i] for i in np.sort(picked)]


class FrameFiles(Dataset):
    """Image files -> uint8 RGB (3, size, size): short side resized to `size` (bicubic), centre crop."""

    def __init__(self, paths: list[Path], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: not a readable image")
        frame = resize_and_crop(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[None], self.size)[0]
        return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.fit_pca",
                                description="Fit the PCA whitening of the ResNet-50 L3-iMAC region vectors.")
    p.add_argument("--frames", type=Path, required=True, help="folder of DIR/<video>/<frame>.jpg frames")
    p.add_argument("--resnet_path", type=Path, required=True,
                   help="torchvision ImageNet ResNet-50 state dict (resnet50-*.pth)")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write (keys mean, d, V)")
    p.add_argument("--samples", type=int, default=10000, help="frames to sample (default 10000; 9 vectors each)")
    p.add_argument("--dims", type=int, default=512, help="principal axes to keep (default 512)")
    p.add_argument("--size", type=int, default=224, help="frame side after resize and centre crop (default 224)")
    p.add_argument("--batch_size", type=int, default=64, help="frames per ResNet batch (default 64)")
    p.add_argument("--workers", type=int, default=4, help="image-reading processes (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the frame sample (default 0)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="device of the ResNet (default cuda when available)")
    p.add_argument("--overwrite", type=int, choices=(0, 1), default=0, help="1: replace an existing --out")
    return p


def _check(args: argparse.Namespace) -> None:
    for flag, value, low in (("--samples", args.samples, 1), ("--dims", args.dims, 1), ("--size", args.size, 32),
                             ("--batch_size", args.batch_size, 1), ("--workers", args.workers, 0)):
        if value < low:
            raise RunError(f"{flag} must be at least {low}, got {value}")
    if args.dims > REGION_DIMS:
        raise RunError(f"--dims must be at most {REGION_DIMS}, got {args.dims}")
    if args.out.suffix != ".npz":
        raise RunError(f"--out {args.out}: expected an .npz file name")
    if args.out.exists() and not args.overwrite:
        raise RunError(f"--out {args.out} already exists; pass --overwrite 1 to replace it")


@torch.no_grad()
def accumulate(extractor: RegionFeatureExtractor, loader: DataLoader, device: torch.device) -> PCAStats:
    """Region vectors of every frame the loader gives, summed into PCAStats on `device`."""
    stats = PCAStats()
    for frames in tqdm(loader, desc="region vectors", unit="batch", leave=False):
        regions = extractor.region_vectors(imagenet_normalise(frames.to(device)))
        stats.update(regions.reshape(-1, regions.shape[-1]))
    return stats


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    _check(args)
    paths = sample_frames(find_frames(args.frames), args.samples, args.seed)
    device = torch.device(args.device)
    extractor = RegionFeatureExtractor(load_resnet50(args.resnet_path)).to(device)
    loader = DataLoader(FrameFiles(paths, args.size), batch_size=args.batch_size, num_workers=args.workers,
                        pin_memory=device.type == "cuda")
    stats = accumulate(extractor, loader, device)
    if stats.count <= args.dims:
        raise RunError(f"{stats.count} region vectors from {len(paths)} frames cannot fit {args.dims} axes "
                       "(raise --samples or add frames)")
    params = stats.fit(args.dims)
    atomic_write(args.out, lambda f: save_pca(f, params))
    explained = float(params["d"].sum() / stats.total_variance())
    print(f"wrote {args.out}: {args.dims} axes from {stats.count} region vectors of {len(paths)} frames, "
          f"{explained:.1%} of the variance")


if __name__ == "__main__":
    cli(main)
