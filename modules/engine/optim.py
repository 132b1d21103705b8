"""Optimiser parameter groups and the warm-up + cosine learning-rate schedule of the HBI recipe."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

def _no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm-layer weights and every other 0-d/1-d tensor (gains, class embedding, logit scale).

    The reference meant the same (`no_decay = ['bias', 'LayerNorm.bias', 'LayerNorm.weight']`), but matched
    names: CLIP's norms are called `ln_*`, so there only biases escaped decay. Here the rule goes by shape.
    """
    return param.ndim < 2 or name.endswith(".bias")


def param_groups(model: nn.Module, lr: float, coef_lr: float, weight_decay: float) -> list[dict]:
    """Four named groups: backbone (names under `model.backbone_prefix`, lr * coef_lr) / new layers (lr), each
    with and without decay.

    Frozen parameters are left out; empty groups are dropped. DDP wrappers are unwrapped so names match.
    """
    model = model.module if hasattr(model, "module") else model
    prefix = getattr(model, "backbone_prefix", None)
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if prefix and name.startswith(prefix) else "other"
        decay = not _no_decay(name, param)
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
