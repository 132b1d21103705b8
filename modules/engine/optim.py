"""Optimiser parameter groups, AdamW settings and the learning-rate schedules (the HBI recipe's warm-up + cosine by
default; a system may give its own, e.g. HAP-VR's warm-up from a floor then cosine to a floor)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AdamWSettings:
    """AdamW as a system's reference ran it: the CLIP recipe's betas (0.9, 0.98) and eps 1e-6 with no decay on 1-d
    parameters by default; torch's defaults with decay on every parameter for HAP-VR."""

    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    decay_every_parameter: bool = False


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm-layer weights and every other 0-d/1-d tensor (gains, class embedding, logit scale).

    The reference meant the same (`no_decay = ['bias', 'LayerNorm.bias', 'LayerNorm.weight']`), but matched
    names: CLIP's norms are called `ln_*`, so there only biases escaped decay. Here the rule goes by shape.
    """
    return param.ndim < 2 or name.endswith(".bias")


def param_groups(model: nn.Module, lr: float, coef_lr: float, weight_decay: float,
                 decay_every_parameter: bool = False) -> list[dict]:
    """Four named groups: backbone (names under `model.backbone_prefix`, lr * coef_lr) / new layers (lr), each
    with and without decay (`decay_every_parameter`: all with).

    Frozen parameters are left out; empty groups are dropped. DDP wrappers are unwrapped so names match.
    """
    model = model.module if hasattr(model, "module") else model
    prefix = getattr(model, "backbone_prefix", None)
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if prefix and name.startswith(prefix) else "other"
        decay = decay_every_parameter or not _no_decay(name, param)
        key = f"{part}_{'decay' if decay else 'no_decay'}"
        group = groups.setdefault(key, {
            "name": key,
            "params": [],
            "lr": lr * coef_lr if part == "backbone" else lr,
            "weight_decay": weight_decay if decay else 0.0,
        })
        group["params"].append(param)
    order = ("backbone_decay", "other_decay", "backbone_no_decay", "other_no_decay")
    return [groups[k] for k in order if k in groups]


@dataclass
class WarmupCosine:
    """LR multiplier of the reference (`warmup_cosine` of its BertAdam) as a function of the optimiser step.

    With progress x = step / total_steps: x / warmup while x < warmup, then 0.5 * (1 + cos(pi * x)).
    The cosine runs over the whole of training, not over the part after warm-up, so the multiplier peaks
    just below 1 (0.976 at warmup 0.1) and reaches 0 at the last step; step 0 has multiplier 0, as in the
    reference, whose BertAdam read its step counter before incrementing it. A callable object (not a lambda)
    so LambdaLR saves its fields in the checkpoint.
    """

    total_steps: int
    warmup_proportion: float

    def __call__(self, step: int) -> float:
        x = min(step, self.total_steps) / self.total_steps
        if x < self.warmup_proportion:
            return x / self.warmup_proportion
        return 0.5 * (1.0 + math.cos(math.pi * x))


@dataclass
class WarmupCosineFloor:
    """HAP-VR's schedule (timm's CosineLRScheduler stepped per iteration, no warm-up prefix) as an LR multiplier:
    linear from `warmup_init` to 1 over `warmup_steps`, then floor + (1 - floor) * (1 + cos(pi * step / total)) / 2,
    the cosine counted from step 0 over `total_steps` (so it starts just below 1 after warm-up), `floor` after."""

    total_steps: int
    warmup_steps: int
    warmup_init: float
    floor: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_init + step * (1.0 - self.warmup_init) / self.warmup_steps
        if step >= self.total_steps:
            return self.floor
        return self.floor + 0.5 * (1.0 - self.floor) * (1.0 + math.cos(math.pi * step / self.total_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_proportion: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine over `total_steps`, the REAL number of optimiser steps (steps per epoch * epochs).

    Difference from the reference: it passed `len(train_loader) * 5` whatever `--epochs` was, so with more
    than 5 epochs the cosine ran past 0 and climbed again, and with fewer it never decayed to 0.
    Call `scheduler.step()` once after every `optimizer.step()`.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= warmup_proportion < 1.0:
        raise ValueError(f"warmup_proportion must be in [0, 1), got {warmup_proportion}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(total_steps, warmup_proportion))
