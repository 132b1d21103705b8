"""The HAP-VR losses against direct per-item transcriptions of their formulas on random batches (the selective
computation must give the same values), log-space stability, fp32 under autocast, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from models.video_video import (HapvrLoss, frame_ap_loss, infonce_loss, pseudo_labels, quad_linear,
                                similarity_regularization, sshn_loss, video_ap_loss)

GROUPS = [0, 0, 0, 1, 1, 2, 3, 3]  # a group of three, two pairs and a singleton


def group_labels(groups=GROUPS) -> torch.Tensor:
    g = torch.tensor(groups)
    return (g[:, None] == g[None, :]).float()


def heaviside(x: float) -> float:
    return 1.0 if x > 0 else 0.0


def ql(x: float, sigma: float) -> float:
    return float(quad_linear(torch.tensor(x, dtype=torch.float64), sigma))


def smoothed_ap(row, positive, scored, sigma, rho) -> float:
    """Mean over positive items i of (1 + positives ranked above i) / (1 + everything ranked above i)."""
    ratios = []
    for i in range(len(row)):
        if not positive[i]:
            continue
        pos_rank = 1 + sum(rho * heaviside(row[j] - row[i]) for j in range(len(row)) if j != i and positive[j])
        neg = sum(ql(row[j] - row[i], sigma) for j in range(len(row)) if j != i and scored[j] and not positive[j])
        ratios.append(pos_rank / (pos_rank + neg))
    return sum(ratios) / len(ratios)


@pytest.fixture()
def batch():
    generator = torch.Generator().manual_seed(0)
    labels = group_labels()
    sim = (torch.rand(8, 8, generator=generator) * 0.4 + 0.3 + 0.3 * labels).clamp(max=1)
    frame_sim = torch.rand(8, 8, 10, 10, generator=generator)
    pos, neg = pseudo_labels(torch.randn(8, 10, 32, generator=generator), 0.3, 0.4)
    return sim, frame_sim, pos, neg, labels


def test_quad_linear_pieces():
    x = torch.tensor([-1.0, -0.05, -0.025, 0.0, 0.1])
    assert torch.allclose(quad_linear(x, 0.05), torch.tensor([0.0, 0.0, 0.25, 1.0, 5.0]))


def test_video_ap_equals_its_formula(batch):
    sim, _, _, _, labels = batch
    rows = sim.double().tolist()
    expected = 1 - sum(smoothed_ap(rows[q], labels[q].bool().tolist(), [True] * 8, 0.05, 0.1)
                       for q in range(8)) / 8
    assert math.isclose(float(video_ap_loss(sim, labels, 0.05, 0.1)), expected, rel_tol=1e-5, abs_tol=1e-6)


def test_frame_ap_equals_its_formula(batch):
    _, frame_sim, pos, neg, labels = batch
    total = 0.0
    for a, b in labels.nonzero().tolist():
        per_frame = [smoothed_ap(frame_sim[a, b, f].double().tolist(), pos[a, b, f].bool().tolist(),
                                 neg[a, b, f].bool().tolist(), 0.05, 5.0) for f in range(10)]
        total += sum(per_frame) / len(per_frame)
    expected = 1 - total / float(labels.sum())
    loss = frame_ap_loss(frame_sim, pos, neg, labels, 0.05, 5.0)
    assert math.isclose(float(loss), expected, rel_tol=1e-5, abs_tol=1e-6)


def test_infonce_equals_its_formula(batch):
    sim, _, _, _, labels = batch
    logits = (sim.double() / 0.03).exp()
    rows = []
    for q in range(8):
        negatives = float(logits[q][labels[q] == 0].sum())
        terms = [-math.log(float(logits[q, j]) / (float(logits[q, j]) + negatives + 1e-6))
                 for j in range(8) if j != q and labels[q, j]]
        if terms:  # the singleton's row has no off-diagonal positive and is left out
            rows.append(sum(terms) / len(terms))
    assert math.isclose(float(infonce_loss(sim, labels, 0.03)), sum(rows) / len(rows), rel_tol=1e-5)


def test_infonce_is_finite_where_exp_overflows():
    labels = group_labels([0, 0, 1, 1])
    sim = torch.tensor([[1.0, 0.5, 0.6, 0.1], [0.5, 1.0, 0.1, 0.3], [0.6, 0.1, 1.0, 0.8], [0.1, 0.3, 0.8, 1.0]])
    loss = infonce_loss(sim, labels, temperature=0.001)  # exp(1000) is inf in any float format
    assert torch.isfinite(loss)
    # Only row 0 ranks a negative (0.6) above its positive (0.5): -log(e^500 / (e^500 + e^600)) ~ 100; 4 rows.
    assert math.isclose(float(loss), 100 / 4, rel_tol=1e-4)


def test_sshn_terms(batch):
    sim, _, _, _, labels = batch
    hard_negative, self_term = sshn_loss(sim, labels)
    hardest = [max(float(sim[q, j]) for j in range(8) if not labels[q, j]) for q in range(8)]
    assert math.isclose(float(hard_negative), -sum(math.log(max(1 - h, 1e-3)) for h in hardest) / 8, rel_tol=1e-5)
    assert math.isclose(float(self_term), -float(torch.diagonal(sim).clamp(min=1e-3).log().mean()), rel_tol=1e-6)


def test_similarity_regularization_counts_only_the_excess():
    assert float(similarity_regularization(torch.tensor([-1.5, -1.0, 0.3, 1.0, 1.25]))) == pytest.approx(0.75)


def test_losses_are_fp32_and_finite_under_bf16_autocast(batch):
    sim, frame_sim, pos, neg, labels = batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = HapvrLoss()(frame_sim.bfloat16(), sim.bfloat16(), torch.tensor(0.5).bfloat16(), labels, pos, neg)
    for name, value in terms.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
    plain = HapvrLoss()(frame_sim.bfloat16().float(), sim.bfloat16().float(), torch.tensor(0.5), labels, pos, neg)
    assert torch.allclose(terms["total"], plain["total"], rtol=1e-5)


def test_gradients_flow_through_every_term(batch):
    sim, frame_sim, pos, neg, labels = batch
    sim, frame_sim = sim.clone().requires_grad_(), frame_sim.clone().requires_grad_()
    terms = HapvrLoss()(frame_sim, sim, (sim * 3).sum() * 0, labels, pos, neg)
    terms["total"].backward()
    assert torch.isfinite(sim.grad).all() and sim.grad.abs().sum() > 0
    assert torch.isfinite(frame_sim.grad).all() and frame_sim.grad.abs().sum() > 0
    for name in ("video_ap", "frame_ap", "infonce", "hardneg", "self"):
        assert terms[name].requires_grad, name


def test_without_pseudo_labels_the_frame_term_is_left_out(batch):
    sim, frame_sim, _, _, labels = batch
    terms = HapvrLoss()(frame_sim, sim, torch.tensor(0.0), labels)
    assert "frame_ap" not in terms
    expected = terms["infonce"] + 4 * terms["video_ap"] + 3 * (terms["hardneg"] + terms["self"])
    assert torch.allclose(terms["total"], expected)


def test_pseudo_label_rates_are_checked():
    with pytest.raises(ValueError, match="sum to at most 1"):
        pseudo_labels(torch.randn(2, 4, 8), 0.6, 0.5)
