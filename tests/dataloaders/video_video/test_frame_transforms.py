"""dataloaders/video_video/frame_transforms.py: overlays change one region only, blur removes high frequencies,
every frame draws for itself, dtype and range are kept."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from dataloaders.video_video import frame_transforms as ft


def textured(frames: int = 1, size: int = 64, dtype: torch.dtype = torch.uint8, seed: int = 0) -> torch.Tensor:
    """(frames, 3, size, size) uniform noise (high-frequency content), uint8 or float in 0..1."""
    clip = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (frames, 3, size, size), dtype=np.uint8))
    return clip if dtype == torch.uint8 else clip.to(dtype) / 255


def changed_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) bounding the pixels that differ between two frames (C, H, W), or None."""
    rows, cols = np.nonzero((before != after).any(0).numpy())
    return None if len(rows) == 0 else (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)


def test_composite_touches_only_its_box():
    frame = textured()[0]
    out = ft.composite(frame.clone(), np.array([255.0, 0.0, 0.0]), np.full((10, 20), 0.8, np.float32), 5, 7)
    assert changed_box(frame, out) == (5, 15, 7, 27)
    expected = frame[:, 5:15, 7:27].float() * 0.2 + torch.tensor([255.0, 0, 0])[:, None, None] * 0.8
    assert torch.equal(out[:, 5:15, 7:27], expected.round().to(torch.uint8))


@pytest.mark.parametrize("overlay", [ft.overlay_text, ft.overlay_emoji])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_overlay_changes_a_region_only(overlay, dtype):
    drawn = 0
    for seed in range(6):
        frame = textured(size=96, dtype=dtype, seed=seed)[0]
        out = overlay(frame.clone(), np.random.default_rng(seed))
        assert out.dtype == dtype and out.shape == frame.shape
        assert 0 <= float(out.min()) and float(out.max()) <= (255 if dtype == torch.uint8 else 1)
        box = changed_box(frame, out)
        if box is None:
            continue
        drawn += 1
        top, bottom, left, right = box
        assert bottom - top <= 0.5 * 96 + 2  # at most half the short side high (the text box or the emoji)
        outside = torch.ones(96, 96, dtype=torch.bool)
        outside[top:bottom, left:right] = False
        assert torch.equal(out[:, outside], frame[:, outside])
        assert (bottom - top) * (right - left) < 96 * 96
    assert drawn >= 5


def test_emoji_is_a_disc_of_one_face_colour():
    colour, coverage = ft.draw_emoji(60, np.random.default_rng(2))
    assert colour.shape == (60, 60, 3) and coverage.shape == (60, 60)
    assert coverage[30, 30] == 1.0 and coverage[0, 0] == 0.0 and coverage[30, 2] > 0  # a filled disc
    assert 0.7 < coverage.mean() < 0.8  # about pi / 4 of the square


def high_frequency_energy(clip: torch.Tensor) -> float:
    x = clip.float()
    return float(((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean())


def test_blur_lowers_high_frequency_energy():
    clip = textured(3)
    energies = [high_frequency_energy(ft.gaussian_blur(clip, np.full(3, s))) for s in (0.5, 1.0, 2.0)]
    assert energies[0] < high_frequency_energy(clip) and energies[0] > energies[1] > energies[2]
    out = ft.gaussian_blur(clip, np.array([0.5, 1.0, 2.0]))
    assert out.dtype == torch.uint8 and abs(float(out.float().mean()) - float(clip.float().mean())) < 1.0


def test_blur_is_torchvisions_gaussian_frame_by_frame():
    clip = textured(3, dtype=torch.float32)
    for sigma in (0.6, 1.7):
        radius = int(np.ceil(3 * sigma))
        ours = ft.gaussian_blur(clip, np.full(3, sigma))
        reference = F.gaussian_blur(clip, [2 * radius + 1] * 2, [sigma, sigma])
        assert torch.allclose(ours, reference, atol=1e-5)
    # one convolution, each frame its own sigma; a narrow kernel on the wide support differs by its cut-off tails only
    mixed = ft.gaussian_blur(clip, np.array([0.6, 1.7, 1.0]))
    for t, sigma in enumerate((0.6, 1.7, 1.0)):
        assert torch.allclose(mixed[t], ft.gaussian_blur(clip[t:t + 1], np.array([sigma]))[0], atol=1e-3)


def test_frame_transforms_decide_per_frame():
    still = textured(1, size=64).expand(8, -1, -1, -1).contiguous()  # 8 identical frames
    rng = np.random.default_rng(0)
    assert torch.equal(ft.frame_transforms(still, rng, p_overlay=0.0, p_blur=0.0), still)
    overlaid = ft.frame_transforms(still, np.random.default_rng(1), p_overlay=1.0, p_blur=0.0)
    assert len({tuple(o.flatten()[::7].tolist()) for o in overlaid}) == 8  # every frame its own overlays
    blurred = ft.frame_transforms(still, np.random.default_rng(1), p_overlay=0.0, p_blur=1.0)
    assert all(high_frequency_energy(b) < high_frequency_energy(still[0]) for b in blurred)
    some = ft.frame_transforms(still, np.random.default_rng(5), p_overlay=0.0, p_blur=0.5)
    assert 0 < sum(torch.equal(s, still[0]) for s in some) < 8


def test_frame_transforms_seeded():
    clip = textured(4, dtype=torch.float32)
    a = ft.frame_transforms(clip, np.random.default_rng(7), 0.5, 0.5)
    b = ft.frame_transforms(clip, np.random.default_rng(7), 0.5, 0.5)
    c = ft.frame_transforms(clip, np.random.default_rng(8), 0.5, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.dtype == torch.float32
