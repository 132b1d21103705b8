"""Every HAP-VR golden tensor: the training forward, the evaluation path for one pair, the pseudo-labels and
each loss term at the published settings."""
from __future__ import annotations

import pytest
import torch

from models.video_video import (HapvrLoss, frame_ap_loss, infonce_loss, pseudo_labels, sshn_loss,
                                video_ap_loss)
from tests.helpers import close


@pytest.fixture(scope="module")
def forward(reference_network, hapvr_io):
    with torch.no_grad():
        return reference_network.training_forward(hapvr_io["features"])


@pytest.fixture(scope="module")
def labels(hapvr_io):
    return pseudo_labels(hapvr_io["dino_features"], 0.35, 0.35)


@pytest.mark.parametrize("index, key", [(0, "frame_level_sim"), (1, "video_sim"), (2, "reg_loss")])
def test_training_forward(forward, hapvr_io, index, key):
    assert forward[index].shape == hapvr_io[key].shape
    assert close(forward[index], hapvr_io[key])


def test_inference_for_one_pair(reference_network, hapvr_io):
    with torch.no_grad():
        sim = reference_network.video_similarity(hapvr_io["query"], hapvr_io["target"])
    assert sim.ndim == 0
    assert close(sim, hapvr_io["inference_sim"][0, 0])


def test_pseudo_labels(labels, hapvr_io):
    assert torch.equal(labels[0], hapvr_io["pseudo_pos"])
    assert torch.equal(labels[1], hapvr_io["pseudo_neg"])


def test_video_ap_loss(forward, hapvr_io):
    assert close(video_ap_loss(forward[1], hapvr_io["labels"], sigma=0.05, rho=0.1), hapvr_io["loss_video_ap"])


def test_frame_ap_loss(forward, labels, hapvr_io):
    loss = frame_ap_loss(forward[0], *labels, hapvr_io["labels"], sigma=0.05, rho=5.0)
    assert close(loss, hapvr_io["loss_frame_ap"])


def test_infonce_loss(forward, hapvr_io):
    assert close(infonce_loss(forward[1], hapvr_io["labels"], temperature=0.03), hapvr_io["loss_infonce"])


def test_sshn_loss(forward, hapvr_io):
    hard_negative, self_term = sshn_loss(forward[1], hapvr_io["labels"])
    assert close(torch.stack([hard_negative, self_term]), hapvr_io["loss_sshn"])


def test_the_combined_loss_at_the_published_weights(forward, labels, hapvr_io):
    terms = HapvrLoss()(*forward, hapvr_io["labels"], *labels)
    expected = {"video_ap": "loss_video_ap", "frame_ap": "loss_frame_ap", "infonce": "loss_infonce",
                "reg": "reg_loss"}
    for term, key in expected.items():
        assert close(terms[term], hapvr_io[key]), term
    assert close(torch.stack([terms["hardneg"], terms["self"]]), hapvr_io["loss_sshn"])
    sshn = hapvr_io["loss_sshn"].sum()
    total = (hapvr_io["loss_infonce"] + 6 * hapvr_io["loss_frame_ap"] + 4 * hapvr_io["loss_video_ap"]
             + 3 * sshn + hapvr_io["reg_loss"])
    assert close(terms["total"], total)
