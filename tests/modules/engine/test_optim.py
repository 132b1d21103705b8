"""Parameter groups and the warm-up + cosine schedule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from modules.engine.optim import WarmupCosineFloor, build_scheduler, param_groups


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(4)  # CLIP's norm naming, which the reference's name list missed
        self.proj = nn.Linear(4, 4)
        self.class_embedding = nn.Parameter(torch.zeros(4))


class _Model(nn.Module):
    backbone_prefix = "clip."

    def __init__(self) -> None:
        super().__init__()
        self.clip = _Block()
        self.clip.logit_scale = nn.Parameter(torch.tensor(1.0))
        self.head = nn.Linear(4, 2)
        self.norm = nn.LayerNorm(2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_groups_lrs_and_decay() -> None:
    model = _Model()
    groups = {g["name"]: g for g in param_groups(model, lr=1e-4, coef_lr=1e-3, weight_decay=0.2)}
    assert set(groups) == {"backbone_decay", "backbone_no_decay", "other_decay", "other_no_decay"}
    assert _names(model, groups["backbone_decay"]) == {"clip.proj.weight"}
    assert _names(model, groups["backbone_no_decay"]) == {
        "clip.ln_1.weight", "clip.ln_1.bias", "clip.proj.bias", "clip.class_embedding", "clip.logit_scale"}
    assert _names(model, groups["other_decay"]) == {"head.weight"}
    assert _names(model, groups["other_no_decay"]) == {"head.bias", "norm.weight", "norm.bias"}
    assert groups["backbone_decay"]["lr"] == pytest.approx(1e-7) and groups["backbone_no_decay"]["lr"] == pytest.approx(1e-7)
    assert groups["other_decay"]["lr"] == 1e-4 and groups["other_no_decay"]["lr"] == 1e-4
    assert groups["backbone_decay"]["weight_decay"] == 0.2 and groups["other_decay"]["weight_decay"] == 0.2
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["other_no_decay"]["weight_decay"] == 0.0


def test_groups_feed_an_optimizer_and_unwrap_module() -> None:
    model = _Model()

    class Wrapper(nn.Module):  # stands in for DistributedDataParallel's `.module`
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.module = inner

    groups = param_groups(Wrapper(model), lr=1e-4, coef_lr=1e-3, weight_decay=0.2)
    optimizer = torch.optim.AdamW(groups, lr=1e-4)
    assert [g["name"] for g in optimizer.param_groups][0] == "backbone_decay"
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def _lrs(total: int, warmup: float = 0.1) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = build_scheduler(optimizer, total_steps=total, warmup_proportion=warmup)
    lrs = []
    for _ in range(total + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_schedule_values() -> None:
    lrs = _lrs(total=100)
    assert lrs[0] == 0.0  # the reference's first update also used multiplier 0
    assert lrs[5] == pytest.approx(2.0 * 0.5)  # halfway through warm-up
    assert lrs[10] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.1)))  # end of warm-up: cosine of x
    assert lrs[50] == pytest.approx(1.0)  # midpoint: half the base lr
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)  # zero at total_steps
    assert max(lrs) <= 2.0 and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # decreasing after warm-up


def test_schedule_spans_real_steps_and_guards() -> None:
    short, long = _lrs(total=40), _lrs(total=400)
    assert short[20] == pytest.approx(long[200])
    assert _lrs(total=10, warmup=0.0)[0] == pytest.approx(2.0)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler(optimizer, total_steps=0)


def test_hapvr_schedule_is_timms_cosine_stepped_per_iteration():
    from timm.scheduler.cosine_lr import CosineLRScheduler  # timm is a dependency (HAP-VR's DINO teacher)

    lr, total, warmup = 4e-5, 300, 10
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    timm = CosineLRScheduler(optimizer, t_initial=total, lr_min=0.1 * lr, warmup_t=warmup,
                             warmup_lr_init=0.01 * lr, t_in_epochs=False)
    ours = WarmupCosineFloor(total, warmup, warmup_init=0.01, floor=0.1)
    for step in list(range(0, 20)) + [150, 299, 300, 400]:
        timm.step_update(num_updates=step)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr * ours(step), rel=1e-9), step


def test_decay_every_parameter_puts_biases_in_the_decayed_group():
    model = torch.nn.Linear(3, 2)
    assert {g["name"] for g in param_groups(model, 1e-3, 1.0, 0.01)} == {"other_decay", "other_no_decay"}
    groups = param_groups(model, 1e-3, 1.0, 0.01, decay_every_parameter=True)
    assert [g["name"] for g in groups] == ["other_decay"] and len(groups[0]["params"]) == 2
