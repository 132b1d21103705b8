"""Contrastive losses in fp32."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# CLIP caps the learnable temperature at 100; the trainer clamps the parameter after every step.
MAX_LOGIT_SCALE = math.log(100.0)


def cross_entropy_diagonal(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log softmax at the diagonal; (B, B) -> scalar (the reference's CrossEn)."""
    return -torch.diagonal(F.log_softmax(logits.float(), dim=-1)).mean()


def symmetric_infonce(sims: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a (B, B) text-row similarity matrix whose diagonal holds the true pairs."""
    logits = sims.float() * scale
    return (cross_entropy_diagonal(logits) + cross_entropy_diagonal(logits.T)) / 2


def softmax_kl(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) || softmax(logits)) over the last dim, averaged over every element (not per row),
    as the reference's KL (`F.kl_div(..., reduction='mean')`). Gradients reach both arguments."""
    log_target = F.log_softmax(target_logits.float(), dim=-1)
    return (log_target.exp() * (log_target - F.log_softmax(logits.float(), dim=-1))).mean()
