"""dataloaders/video_video/augmentations.py and video_in_video.py: the options are the published flags, the weak
view is mild, the strong view composes TT / crop / GT / FT in the reference's order, RandAugment is one draw per
clip, ViV puts a resized clip inside another, and explicit generators alone decide every draw."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from dataloaders.video_video.augmentations import (AugmentationOptions, StrongAugmentations, WeakAugmentations,
                                                   augmentation_rng, make_pair, rand_augment,
                                                   random_resized_crop_box)
from dataloaders.video_video.video_in_video import place_inside, video_in_video, viv_box

SMALL = dict(window_sz=6, frame_sz=48)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def levels(frames: int, height: int = 60, width: int = 80) -> torch.Tensor:
    """uint8 (frames, 3, H, W) whose frame t is the constant 4 * t + 4: crops, flips and resizes keep it."""
    values = (4 * torch.arange(frames) + 4).to(torch.uint8)
    return values[:, None, None, None].expand(frames, 3, height, width).contiguous()


def frame_levels(clip: torch.Tensor) -> list[int]:
    return [int(v) for v in clip.float().mean((1, 2, 3)).round()]


def photo(frames: int = 4, height: int = 60, width: int = 80, seed: int = 0) -> torch.Tensor:
    """uint8 (frames, 3, H, W): smooth colour ramps plus mild noise, a different picture per frame."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    out = []
    for _ in range(frames):
        a, b, c = g.uniform(40, 200, 3)
        image = np.stack([a + 50 * y, b + 40 * x, c + 30 * (x + y) / 2]) + g.normal(0, 4, (3, height, width))
        out.append(np.clip(image, 0, 255))
    return torch.from_numpy(np.stack(out).astype(np.uint8))


def test_options_are_the_published_flags():
    options = AugmentationOptions()
    assert (options.augmentations, options.n_raug, options.m_raug, options.p_overlay, options.p_blur) == \
           ("GT,FT,TT,ViV", 2, 9, 0.3, 0.5)
    assert (options.p_tsd, options.p_ff, options.p_sm, options.p_rev, options.p_pau) == (0.5, 0.1, 0.1, 0.1, 0.1)
    assert (options.p_shuffle, options.p_dropout, options.p_content, options.p_viv) == (0.5, 0.3, 0.5, 0.3)
    assert options.lambda_viv == (0.3, 0.7) and options.window_sz == 32 and options.frame_sz == 224
    flags = argparse.Namespace(window_sz=28, lambda_viv="0.2,0.6", augmentations="GT,TT", batch_sz=64, p_ff=None)
    parsed = AugmentationOptions.from_flags(flags)
    assert parsed.window_sz == 28 and parsed.lambda_viv == (0.2, 0.6) and parsed.enabled == {"GT", "TT"}
    assert parsed.p_ff == 0.1
    for bad in (dict(augmentations="GT,XX"), dict(p_tsd=0.9), dict(lambda_viv=(0.7, 0.3)), dict(p_blur=1.5)):
        with pytest.raises(ValueError):
            AugmentationOptions(**bad)


def test_augmentation_rng_depends_on_seed_epoch_index_only():
    draw = lambda *key: augmentation_rng(*key).integers(0, 2**62, 4).tolist()  # noqa: E731
    assert draw(1, 2, 3) == draw(1, 2, 3)
    assert len({tuple(draw(*key)) for key in [(1, 2, 3), (1, 2, 4), (1, 3, 3), (2, 2, 3)]}) == 4


def test_crop_box_follows_the_area_and_ratio_rule():
    for seed in range(30):
        top, left, h, w = random_resized_crop_box(100, 200, (0.5, 1.0), rng(seed))
        assert 0 <= top <= 100 - h and 0 <= left <= 200 - w
        assert 0.45 <= h * w / 20000 <= 1.0 and 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_weak_view_is_a_mild_consecutive_window(dtype):
    weak = WeakAugmentations(AugmentationOptions(**SMALL))
    clip = levels(12)
    out = weak(clip if dtype == torch.uint8 else clip.float() / 255, rng(3))
    assert out.shape == (6, 3, 48, 48) and out.dtype == dtype
    values = frame_levels(out if dtype == torch.uint8 else out * 255)
    assert values == list(range(values[0], values[0] + 24, 4))  # consecutive frames, pixel values untouched
    # mild: against the whole picture resized, a weak view differs by a few levels (a ramp along y, flip-proof)
    ramp = torch.linspace(30, 220, 60)[None, None, :, None].expand(12, 3, 60, 80).to(torch.uint8).contiguous()
    whole = F.resize(ramp[:6], [48, 48], interpolation=InterpolationMode.BILINEAR, antialias=True).float()
    for seed in range(5):
        view = weak(ramp, rng(seed)).float()
        assert (view - whole).abs().mean() < 0.12 * 190


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_strong_view_shape_dtype_range(dtype):
    strong = StrongAugmentations(AugmentationOptions(**SMALL))
    clip = photo(12) if dtype == torch.uint8 else photo(12).float() / 255
    for seed in range(4):
        out = strong(clip, rng(seed))
        assert out.shape == (6, 3, 48, 48) and out.dtype == dtype
        assert 0 <= float(out.min()) and float(out.max()) <= (255 if dtype == torch.uint8 else 1)


def test_strong_view_runs_tt_before_the_window():
    only_reverse = AugmentationOptions(**SMALL, augmentations="TT", p_tsd=0, p_ff=0, p_sm=0, p_rev=1, p_pau=0)
    values = frame_levels(StrongAugmentations(only_reverse)(levels(12), rng(0)))
    assert values == list(range(values[0], values[0] - 24, -4))
    plain = frame_levels(StrongAugmentations(AugmentationOptions(**SMALL, augmentations=""))(levels(12), rng(0)))
    assert plain == list(range(plain[0], plain[0] + 24, 4))


def test_rand_augment_is_one_draw_per_clip():
    clip = photo(5, 48, 48)
    for seed in range(6):
        whole = rand_augment(clip, 2, 9, rng(seed))
        for t in range(5):  # the same ops and magnitudes as on that frame alone with the same draw
            assert torch.equal(whole[t], rand_augment(clip[t:t + 1], 2, 9, rng(seed))[0])
    still = photo(1, 48, 48).expand(5, -1, -1, -1).contiguous()
    outs = [rand_augment(still, 2, 9, rng(seed)) for seed in range(6)]
    assert all(bool((o == o[0]).all()) for o in outs)  # frames stay mutually consistent
    assert any(not torch.equal(o[0], still[0]) for o in outs)


def test_rand_augment_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    rand_augment(photo(2, 32, 32), 2, 9, rng(1))
    assert torch.equal(state, torch.get_rng_state())


def test_pair_seeded_and_views_independent():
    options = AugmentationOptions(**SMALL)
    weak, strong = WeakAugmentations(options), StrongAugmentations(options)
    clip = photo(12)
    a = make_pair(clip, weak, strong, augmentation_rng(0, 0, 5))
    b = make_pair(clip, weak, strong, augmentation_rng(0, 0, 5))
    c = make_pair(clip, weak, strong, augmentation_rng(0, 0, 6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    other_weak = WeakAugmentations(AugmentationOptions(window_sz=6, frame_sz=32))
    assert torch.equal(make_pair(clip, other_weak, strong, augmentation_rng(0, 0, 5))[1], a[1])


def test_viv_box_size_and_borders():
    top, bottom, left, right = viv_box(100, 200, 0.5, rng(0))
    assert 0 <= top < bottom <= 100 and 0 <= left < right <= 200
    assert bottom - top <= int(100 * 0.5 ** 0.5) and right - left <= int(200 * 0.5 ** 0.5)
    sizes = {viv_box(100, 200, 0.5, rng(s))[1] - viv_box(100, 200, 0.5, rng(s))[0] for s in range(40)}
    assert max(sizes) == 2 * (int(100 * 0.5 ** 0.5) // 2) and min(sizes) < max(sizes)  # cut near the borders


def test_video_in_video_places_the_resized_clip_inside_another():
    videos = torch.stack([photo(3, 40, 40, seed=s) for s in range(3)])
    mixed, labels = video_in_video(videos, rng(4), p=1.0, lambda_viv=(0.3, 0.7))
    assert mixed.shape == videos.shape and mixed.dtype == torch.uint8
    assert torch.equal(labels.diagonal(), torch.ones(3))
    for i in range(3):
        (j,) = [k for k in range(3) if k != i and labels[i, k] > 0]
        assert 0.3 <= float(labels[i, j]) <= 0.7
        differs = (mixed[i] != videos[j]).any(0).any(0).numpy()  # (H, W) where the host was covered
        rows, cols = np.nonzero(differs)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        inner = F.resize(videos[i], [int(bottom - top), int(right - left)], antialias=True)
        assert torch.equal(mixed[i][..., top:bottom, left:right], inner)
        outside = torch.ones(40, 40, dtype=torch.bool)
        outside[top:bottom, left:right] = False
        assert torch.equal(mixed[i][..., outside], videos[j][..., outside])
    assert torch.equal(place_inside(videos[0], videos[1], (5, 5, 0, 10)), videos[0])  # an empty box


def test_video_in_video_off_and_single_clip():
    videos = torch.stack([photo(2, 16, 16, seed=s) for s in range(4)])
    same, labels = video_in_video(videos, rng(0), p=0.0)
    assert torch.equal(same, videos) and torch.equal(labels, torch.eye(4))
    one, labels = video_in_video(videos[:1], rng(0), p=1.0)
    assert torch.equal(one, videos[:1]) and torch.equal(labels, torch.eye(1))
    strong = StrongAugmentations(AugmentationOptions(augmentations="GT,FT,TT", p_viv=1.0))
    assert torch.equal(strong.mix(videos, rng(0))[0], videos)
