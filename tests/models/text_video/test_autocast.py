"""WTI and HBI under fp16 autocast: scoring and the training loss run, stay finite and close to fp32.

CPU autocast supports float16, so the half-precision paths of GPU training and evaluation are checked here
(the token-weight softmax used to fill masked logits with -9e15, which does not fit in fp16).
"""
from __future__ import annotations

import pytest
import torch

from models.clip.adapter import ClipConfig
from models.text_video import build_retrieval_model
from models.text_video.interaction import masked_softmax_weights

WIDTH = 64
CONFIG = ClipConfig(embed_dim=WIDTH, image_size=32, patch_size=16, vision_width=64, vision_layers=1,
                    context_length=16, vocab_size=1000, text_width=WIDTH, text_layers=1)


def build(name: str):
    torch.manual_seed(0)
    options = {"jitter": False, "rate": (1.0, 1.0, 1.0)} if name == "hbi" else {}
    return build_retrieval_model(CONFIG, name, num_hidden_layers=1, **options)


def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 999, (4, 12), generator=g)
    text_mask = torch.ones(4, 12, dtype=torch.long)
    text_mask[:, 8:] = 0
    text_mask[1, 5:] = 0
    frames = torch.randn(4, 4, 3, 32, 32, generator=g)
    video_mask = torch.ones(4, 4, dtype=torch.long)
    video_mask[2, 2:] = 0
    return ids * text_mask, text_mask, frames, video_mask


def fp16():
    return torch.autocast("cpu", dtype=torch.float16)


@pytest.mark.parametrize("name", ["wti", "hbi"])
def test_training_loss_under_fp16_autocast(name):
    model = build(name).train()
    inputs = batch()
    expected = model.training_losses(*inputs)
    with fp16():
        losses = model.training_losses(*inputs)
    for key, value in expected.items():
        assert torch.isfinite(losses[key]), key
        torch.testing.assert_close(losses[key].float(), value, atol=2e-2, rtol=1e-2)
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["wti", "hbi"])
@torch.no_grad()
def test_scoring_under_fp16_autocast(name):
    model = build(name).eval()
    ids, text_mask, frames, video_mask = batch()
    expected = model.similarity(model.encode_text(ids, text_mask), text_mask,
                                model.encode_video(frames, video_mask), video_mask)
    with fp16():
        sims = model.similarity(model.encode_text(ids, text_mask), text_mask,
                                model.encode_video(frames, video_mask), video_mask)
    assert torch.isfinite(sims).all()
    torch.testing.assert_close(sims.float(), expected, atol=1e-2, rtol=1e-2)


def test_weight_softmax_in_fp32_is_the_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g)
    mask = (torch.arange(7)[None] < torch.tensor([7, 3, 1, 5, 0])[:, None]).long()  # last row: fully masked
    reference = torch.softmax(logits.masked_fill(mask == 0, -9e15), dim=-1)
    assert torch.equal(masked_softmax_weights(logits, mask), reference)
    half = masked_softmax_weights(logits.half(), mask)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), reference, atol=1e-3, rtol=1e-3)
