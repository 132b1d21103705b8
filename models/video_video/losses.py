"""HAP-VR training losses, computed in fp32 (inputs are cast up and autocast is switched off inside).

N videos of a batch, `labels` (N, N) binary with a positive diagonal. Published weights (scripts/train.sh):
total = InfoNCE + inner_parameter * frame AP + 4 * video AP + lambda_parameter * (hard-negative + self)
+ r_parameter * regulariser, with inner_parameter 6, lambda_parameter 3, r_parameter 1.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import torch
from torch import nn


def in_fp32(loss: Callable) -> Callable:
    """Runs `loss` with autocast off and its tensor arguments (scores and labels) cast to fp32."""
    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        args = [a.float() if torch.is_tensor(a) else a for a in args]
        kwargs = {k: v.float() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        device = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return loss(*args, **kwargs)
    return wrapper


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """1 where x > 0, else 0 (no gradient)."""
    return (x > 0).to(x.dtype)


def quad_linear(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Smooth step of the AP losses: 0 below -sigma, (x/sigma + 1)^2 on [-sigma, 0], 2x/sigma + 1 above 0."""
    quadratic = (x / sigma) ** 2 + 2 * x / sigma + 1
    return torch.where(x > 0, 2 * x / sigma + 1, torch.where(x >= -sigma, quadratic, torch.zeros_like(x)))


def _ap_ratios(diff: torch.Tensor, positive: torch.Tensor, scored: torch.Tensor, sigma: float, rho: float,
               exclude: torch.Tensor) -> torch.Tensor:
    """rank among positives / rank among all, for rows of differences s_j - s_i (..., J) of one positive item i:
    positives j count rho * heaviside, `scored` non-positives count quad_linear, the item itself (`exclude`) and
    everything else nothing."""
    zero = torch.zeros((), dtype=diff.dtype, device=diff.device)
    pos_terms = torch.where(positive & ~exclude, rho * heaviside(diff), zero)
    neg_terms = torch.where(scored & ~positive & ~exclude, quad_linear(diff, sigma), zero)
    pos_rank = 1 + pos_terms.sum(-1)
    return pos_rank / (pos_rank + neg_terms.sum(-1))


@in_fp32
def video_ap_loss(sim: torch.Tensor, labels: torch.Tensor, sigma: float = 0.05, rho: float = 0.1) -> torch.Tensor:
    """QuadLinear-AP over video similarities (N, N): 1 - mean over queries of the smoothed AP of their row.
    Only the positive (query, item) pairs are ranked: O(positives x N), not the reference's N^3."""
    positive = labels > 0
    query, item = positive.nonzero(as_tuple=True)
    diff = sim[query] - sim[query, item][:, None]  # (P, N): s_qj - s_qi
    exclude = torch.arange(sim.shape[1], device=sim.device)[None] == item[:, None]
    pos_j = positive[query]
    ratios = _ap_ratios(diff, pos_j, torch.ones_like(pos_j), sigma, rho, exclude) * labels[query, item]
    per_query = torch.zeros(sim.shape[0], dtype=sim.dtype, device=sim.device).index_add_(0, query, ratios)
    counts = labels.sum(-1)
    # Rows without a positive are left out (the reference divides by their zero count: NaN).
    has = counts > 0
    return 1 - (per_query[has] / counts[has]).mean()


@in_fp32
def frame_ap_loss(frame_sim: torch.Tensor, pseudo_pos: torch.Tensor, pseudo_neg: torch.Tensor,
                  labels: torch.Tensor, sigma: float = 0.05, rho: float = 5.0) -> torch.Tensor:
    """Inner (frame-level) QuadLinear-AP of the positive video pairs: `frame_sim`, `pseudo_pos`, `pseudo_neg`
    (N, N, T, T) with binary pseudo-labels per query frame row. For each query frame, its pseudo-positive target
    frames are ranked against each other (rho * heaviside) and against its pseudo-negatives (quad_linear);
    1 - the label-weighted mean over video pairs of the mean over query frames of that AP.
    Only pairs with labels > 0 are computed (the reference builds all N^2 pairs and masks most away)."""
    first, second = (labels > 0).nonzero(as_tuple=True)
    sim = frame_sim[first, second]  # (P, T, T)
    pos = pseudo_pos[first, second] > 0
    neg = pseudo_neg[first, second] > 0
    frames = sim.shape[-1]
    diff = sim[:, :, None, :] - sim[:, :, :, None]  # (P, T, i, j): s_j - s_i
    exclude = torch.eye(frames, dtype=torch.bool, device=sim.device)
    ratios = _ap_ratios(diff, pos[:, :, None, :], neg[:, :, None, :], sigma, rho, exclude)
    zero = torch.zeros((), dtype=sim.dtype, device=sim.device)
    per_frame = torch.where(pos, ratios, zero).sum(-1) / pos.sum(-1)
    weights = labels[first, second]
    return 1 - (per_frame.mean(-1) * weights).sum() / labels.sum()


@in_fp32
def infonce_loss(sim: torch.Tensor, labels: torch.Tensor, temperature: float = 0.03) -> torch.Tensor:
    """InfoNCE of each positive off-diagonal pair against the negatives of its row (N, N) -> scalar:
    -log(e_ij / (e_ij + sum_neg e_ik + 1e-6)), e = exp(sim / temperature), averaged per row, then over rows.
    Computed in log space (exp(1 / 0.03) is near the fp32 limit and far past fp16's)."""
    logits = sim / temperature
    negatives = torch.where(labels == 0, logits, torch.full_like(logits, float("-inf")))
    epsilon = torch.full_like(logits[:, :1], math.log(1e-6))
    log_rest = torch.logsumexp(torch.cat([negatives, epsilon], dim=1), dim=1, keepdim=True)
    nll = torch.logaddexp(logits, log_rest) - logits
    identity = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    weights = torch.where(identity, torch.zeros_like(labels), labels)
    counts = weights.sum(1)
    has = counts > 0  # rows without an off-diagonal positive are left out (NaN in the reference)
    return ((nll * weights).sum(1)[has] / counts[has]).mean()


@in_fp32
def sshn_loss(sim: torch.Tensor, labels: torch.Tensor, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-supervised hard-negative loss (N, N) -> (hard-negative term, self term):
    -mean log(1 - hardest negative of each row) and -mean log(self-similarity), both clamped at `eps`.
    A row without negatives takes -100 as its hardest negative, as in the reference."""
    hardest = torch.where(labels == 0, sim, torch.full_like(sim, -100.0)).amax(dim=1)
    hard_negative = -(1 - hardest).clamp(min=eps).log().mean()
    self_term = -torch.diagonal(sim).clamp(min=eps).log().mean()
    return hard_negative, self_term


@in_fp32
def similarity_regularization(sim: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0) -> torch.Tensor:
    """Sum of how far each comparator output lies outside [min_val, max_val] (any shape) -> scalar."""
    return (min_val - sim).clamp(min=0).sum() + (sim - max_val).clamp(min=0).sum()


LOSS_NAMES = ("TBInnerQuadLinearAP", "QuadLinearAP", "InfoNCE", "SSHN")  # the reference's --loss_selected names


class HapvrLoss(nn.Module):
    """The weighted HAP-VR objective. Argument names are the reference's train.py flags; defaults are the
    published scripts/train.sh values; `selected` the terms of --loss_selected (the regulariser is always on).
    Without pseudo-labels the frame term is left out."""

    def __init__(self, lambda_parameter: float = 3.0, r_parameter: float = 1.0, inner_parameter: float = 6.0,
                 ap_weight: float = 4.0, qlap_sigma: float = 0.05, qlap_rho: float = 0.1,
                 innerAP_qlap_sigma: float = 0.05, innerAP_qlap_rho: float = 5.0, temperature: float = 0.03,
                 selected: tuple[str, ...] = LOSS_NAMES):
        super().__init__()
        unknown = set(selected) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"unknown losses {sorted(unknown)}; expected some of {', '.join(LOSS_NAMES)}")
        self.selected = frozenset(selected)
        self.lambda_parameter = lambda_parameter
        self.r_parameter = r_parameter
        self.inner_parameter = inner_parameter
        self.ap_weight = ap_weight  # hard-coded 4 in the reference's training loop
        self.qlap_sigma, self.qlap_rho = qlap_sigma, qlap_rho
        self.inner_sigma, self.inner_rho = innerAP_qlap_sigma, innerAP_qlap_rho
        self.temperature = temperature

    def forward(self, frame_sim: torch.Tensor, video_sim: torch.Tensor, reg: torch.Tensor, labels: torch.Tensor,
                pseudo_pos: Optional[torch.Tensor] = None,
                pseudo_neg: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """`training_forward`'s outputs, labels (N, N) and optionally pseudo-labels (N, N, T, T) -> every term
        (`infonce`, `video_ap`, `frame_ap`, `hardneg`, `self`, `reg`) and their weighted `total`, fp32 scalars."""
        terms = {"reg": reg.float()}
        total = self.r_parameter * terms["reg"]
        if "InfoNCE" in self.selected:
            terms["infonce"] = infonce_loss(video_sim, labels, self.temperature)
            total = total + terms["infonce"]
        if "QuadLinearAP" in self.selected:
            terms["video_ap"] = video_ap_loss(video_sim, labels, self.qlap_sigma, self.qlap_rho)
            total = total + self.ap_weight * terms["video_ap"]
        if "SSHN" in self.selected:
            terms["hardneg"], terms["self"] = sshn_loss(video_sim, labels)
            total = total + self.lambda_parameter * (terms["hardneg"] + terms["self"])
        if pseudo_pos is not None and "TBInnerQuadLinearAP" in self.selected:
            terms["frame_ap"] = frame_ap_loss(frame_sim, pseudo_pos, pseudo_neg, labels, self.inner_sigma,
                                              self.inner_rho)
            total = total + self.inner_parameter * terms["frame_ap"]
        terms["total"] = total
        return terms
