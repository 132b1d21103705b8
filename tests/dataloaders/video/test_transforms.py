"""frames_to_tensor / pad_frames: shapes, normalisation, short-side resize, clip-consistent augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dataloaders.video.transforms import CLIP_MEAN, CLIP_STD, augment_clip, frames_to_tensor, pad_frames, resized_size


def test_shape_dtype_and_normalisation():
    frames = np.full((5, 40, 60, 3), 255, dtype=np.uint8)
    out = frames_to_tensor(frames, 32, train=False)
    assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
    expected = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), expected, atol=1e-4)
    zeros = frames_to_tensor(np.zeros((1, 8, 8, 3), np.uint8), 8, train=False)
    assert torch.allclose(zeros[0, :, 0, 0], -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD), atol=1e-6)


def test_short_side_resize_then_centre_crop():
    # 20 x 80 frame, white in columns 20..60, black at both ends. Short side 20 -> 10 gives 10 x 40 (white in
    # columns 10..30) and the centre crop keeps columns 15..25: all white. Squashing to 10 x 10 would show black.
    frame = np.zeros((20, 80, 3), np.uint8)
    frame[:, 20:60] = 255
    out = frames_to_tensor(frame[None], 10, train=False)
    white = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert torch.allclose(out[0, 0], torch.full((10, 10), white), atol=1e-4)
    # Tall frame: the short side is the width.
    tall = np.zeros((90, 30, 3), np.uint8)
    assert frames_to_tensor(tall[None], 15, train=False).shape == (1, 3, 15, 15)


def reference_chain(size: int) -> T.Compose:
    """The reference's test transform (rawvideo_util / dataloader_retrieval), applied to PIL images."""
    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                      lambda image: image.convert("RGB"), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])


# (height, width, size): landscape and portrait downscaling, upscaling, odd sides (centre-crop rounding),
# square, and a short side already at size (no resize, crop only).
SHAPES = [(240, 320, 224), (320, 240, 224), (90, 160, 224), (160, 90, 224), (37, 50, 64), (101, 257, 64),
          (257, 101, 63), (100, 100, 48), (224, 300, 224), (360, 640, 224), (481, 853, 224)]


@pytest.mark.parametrize("height,width,size", SHAPES)
def test_test_time_pixels_equal_the_reference_pil_chain(height, width, size):
    rng = np.random.default_rng(height * 1000 + width)
    frames = rng.integers(0, 256, (3, height, width, 3), dtype=np.uint8)  # noise: the hardest case for resampling
    frames[1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]  # and a smooth ramp
    expected = torch.stack([reference_chain(size)(Image.fromarray(f)) for f in frames])
    got = frames_to_tensor(frames, size, train=False)
    assert got.shape == expected.shape == (3, 3, size, size)
    assert torch.equal(got, expected), float((got - expected).abs().max())


def test_training_augments_then_takes_the_reference_chain():
    frames = np.random.default_rng(1).integers(0, 256, (4, 90, 120, 3), dtype=np.uint8)
    got = frames_to_tensor(frames, 64, train=True, generator=torch.Generator().manual_seed(7))
    augmented = augment_clip(torch.from_numpy(frames).permute(0, 3, 1, 2), torch.Generator().manual_seed(7))
    expected = torch.stack([reference_chain(64)(Image.fromarray(f.permute(1, 2, 0).numpy())) for f in augmented])
    assert torch.equal(got, expected)


def test_resized_size_is_torchvisions_rule():
    for height, width, size in SHAPES:
        assert T.Resize(size)(Image.new("RGB", (width, height))).size[::-1] == resized_size(height, width, size)


def test_augmentation_is_clip_consistent_and_seeded():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    clip = np.repeat(frame[None], 6, axis=0)
    a = frames_to_tensor(clip, 32, train=True, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a[0], a[t]) for t in range(1, 6))  # same ops and magnitudes on every frame
    b = frames_to_tensor(clip, 32, train=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    draws = [frames_to_tensor(clip[:1], 32, train=True, generator=torch.Generator().manual_seed(s)) for s in range(6)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    plain = frames_to_tensor(clip[:1], 32, train=False)
    assert any(not torch.equal(plain, d) for d in draws)


def test_seeded_augmentation_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    frames_to_tensor(np.zeros((2, 16, 16, 3), np.uint8), 8, train=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)


def test_pad_frames():
    video = torch.ones(3, 3, 4, 4)
    padded, mask = pad_frames(video, 5)
    assert padded.shape == (5, 3, 4, 4) and mask.dtype == torch.int64
    assert mask.tolist() == [1, 1, 1, 0, 0]
    assert padded[:3].eq(1).all() and padded[3:].eq(0).all()
    with pytest.raises(ValueError, match="max_frames"):
        pad_frames(video, 2)


def test_rejects_wrong_layout():
    with pytest.raises(ValueError, match="uint8 frames"):
        frames_to_tensor(np.zeros((2, 3, 16, 16), np.uint8), 8, train=False)
