"""The frames of a clip -> normalised CLIP input (T, 3, S, S).

Evaluation: the reference's torchvision chain on each PIL frame, pixel for pixel: Resize(size, BICUBIC) (short
side to `size`, long side int(size * long / short), PIL's antialiased bicubic, which rounds to uint8 between its
horizontal and vertical passes; torch's bicubic on tensors differs by up to 2/255), CenterCrop(size) (offsets
int(round((side - size) / 2))), ToTensor (/ 255), Normalize with the CLIP mean and std.
Training adds, before the resize, a RandAugment drawn once per clip and applied to every frame, like the
reference's timm 'rand-m7-n4-mstd0.5-inc1' video augment: 4 ops at magnitude 7 of 10. Differences:
torchvision's op set (it includes Identity), a fixed magnitude instead of the 0.5-std jitter, and every
drawn op applied (timm applies each with probability 0.5).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# timm magnitudes run 0..10, torchvision's over num_magnitude_bins - 1 steps: 11 bins make 7 mean 7/10.
_RAND_AUGMENT = v2.RandAugment(num_ops=4, magnitude=7, num_magnitude_bins=11,
                               interpolation=InterpolationMode.BILINEAR, fill=128)


def augment_clip(video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Clip-consistent RandAugment of uint8 (T, 3, H, W): one draw of ops and magnitudes for all frames."""
    if generator is None:
        return _RAND_AUGMENT(video)
    # v2.RandAugment draws from the global RNG; fork it so a seeded generator alone decides the draw.
    seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _RAND_AUGMENT(video)


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after torchvision's Resize(size): short side to size, long side int(size * long / short)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_and_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, size, size, 3): PIL bicubic resize of the short side, then the centre crop."""
    height, width = frames.shape[1:3]
    out_h, out_w = resized_size(height, width, size)
    top, left = int(round((out_h - size) / 2.0)), int(round((out_w - size) / 2.0))
    if (out_h, out_w) == (height, width):  # torchvision returns the image unchanged at its size
        return frames[:, top:top + size, left:left + size]
    # One PIL call per frame: PIL has no batched resize, and its fixed-point passes are what the reference computes.
    return np.stack([np.asarray(Image.fromarray(frame).resize((out_w, out_h), Image.Resampling.BICUBIC))
                     [top:top + size, left:left + size] for frame in frames])


def frames_to_tensor(frames: np.ndarray, size: int, train: bool,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (T, H, W, 3) RGB -> float32 (T, 3, size, size), normalised with the CLIP mean and std."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    frames = np.ascontiguousarray(frames)
    if train:
        video = augment_clip(torch.from_numpy(frames).permute(0, 3, 1, 2), generator)
        frames = np.ascontiguousarray(video.permute(0, 2, 3, 1).numpy())
    video = torch.from_numpy(np.ascontiguousarray(resize_and_crop(frames, size))).permute(0, 3, 1, 2)
    video = video.to(torch.float32).div_(255.0)
    return F.normalize(video, mean=list(CLIP_MEAN), std=list(CLIP_STD))


def pad_frames(video: torch.Tensor, max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (T, 3, S, S) at the end to (max_frames, 3, S, S); mask int64 (max_frames,) is 1 on real frames."""
    count = video.shape[0]
    if count > max_frames:
        raise ValueError(f"clip has {count} frames, more than max_frames={max_frames}")
    padded = video.new_zeros((max_frames, *video.shape[1:]))
    padded[:count] = video
    mask = torch.zeros(max_frames, dtype=torch.int64)
    mask[:count] = 1
    return padded, mask
