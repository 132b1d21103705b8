"""HapvrNetwork: shapes and key names, cached indexing, the padded batched scorer against single pairs, the
top-k paths beyond k = 1, gradients and autocast."""
from __future__ import annotations

import pytest
import torch

from models.video_video import HapvrConfig, HapvrNetwork, topk_count
from models.video_video.chamfer import masked_topk_chamfer, topk_chamfer
from tests.models.video_video.conftest import random_videos


def padded(videos):
    lengths = torch.tensor([v.shape[0] for v in videos])
    batch = torch.zeros(len(videos), int(lengths.max()), *videos[0].shape[1:])
    for i, video in enumerate(videos):
        batch[i, :video.shape[0]] = video
    return batch, lengths


def test_state_dict_keys_are_the_reference_ones(reference_network, hapvr_state):
    own = reference_network.state_dict()
    assert set(own) == set(hapvr_state)
    assert all(own[key].shape == value.shape for key, value in hapvr_state.items())
    assert set(HapvrNetwork(HapvrConfig(attention=False)).state_dict()) == \
        {key for key in hapvr_state if key.startswith("comparator_module.")}


def test_training_forward_shapes():
    torch.manual_seed(0)
    x = torch.stack(random_videos([12] * 3, dims=16, regions=4))
    frame_sim, video_sim, reg = HapvrNetwork(HapvrConfig(dims=16))(x)
    assert frame_sim.shape == (3, 3, 12, 12) and video_sim.shape == (3, 3) and reg.shape == ()
    assert ((video_sim >= 0) & (video_sim <= 1)).all()


def test_index_video_caching_gives_video_similarity(reference_network, hapvr_io):
    with torch.no_grad():
        query, target = hapvr_io["query"], hapvr_io["target"]
        cached = reference_network.indexed_similarity(reference_network.index_video(query),
                                                       reference_network.index_video(target))
        assert torch.equal(cached, reference_network.video_similarity(query, target))


@pytest.mark.parametrize("rates", [(0.1, 0.03), (0.3, 0.5), (0.0, 1.0)])
def test_padded_scores_equal_single_pairs(hapvr_state, rates):
    """Lengths odd and even at both pooling stages, queries and targets of different lengths in one grid."""
    network = HapvrNetwork(HapvrConfig(f_topk_rate=rates[0], v_topk_rate=rates[1]))
    network.load_state_dict(hapvr_state)
    queries = random_videos([4, 7, 20, 11], seed=1)
    targets = random_videos([37, 5, 9, 16, 6], seed=2)
    with torch.no_grad():
        q_batch, q_lengths = padded([network.index_video(v) for v in queries])
        t_batch, t_lengths = padded([network.index_video(v) for v in targets])
        # Garbage in the padding must not matter either: the scorer masks what it is given.
        q_batch[0, 4:] = 5.0
        grid = network.score_grid(q_batch, q_lengths, t_batch, t_lengths)
        single = torch.tensor([[float(network.video_similarity(q, t)) for t in targets] for q in queries])
    assert grid.shape == (4, 5)
    assert (grid - single).abs().max() <= 1e-5


def test_index_video_zeroes_padded_frames(reference_network):
    batch, lengths = padded(random_videos([4, 6]))
    batch[0, 4:] = 1.0
    indexed = reference_network.index_video(batch, lengths)
    assert (indexed[0, 4:] == 0).all() and (indexed[1] != 0).any()


def test_masked_topk_chamfer_matches_whole_maps():
    generator = torch.Generator().manual_seed(0)
    maps = [torch.randn(h, w, generator=generator) for h, w in [(3, 7), (5, 2), (1, 9)]]
    grid = torch.full((3, 5, 9), 7.0)
    for i, m in enumerate(maps):
        grid[i, :m.shape[0], :m.shape[1]] = m
    rows, cols = torch.tensor([3, 5, 1]), torch.tensor([7, 2, 9])
    for rate in (0.03, 0.3, 0.5, 1.0):
        expected = torch.stack([topk_chamfer(m[None], topk_count(m.shape[1], rate))[0] for m in maps])
        assert torch.allclose(masked_topk_chamfer(grid, rows, cols, rate), expected, atol=1e-6)


def test_topk_count_rounds_like_python():
    assert [topk_count(n, 0.03) for n in (4, 16, 50, 84)] == [1, 1, 2, 3]  # 50 * 0.03 = 1.5 -> 2 (half to even)
    assert topk_count(9, 0.1) == 1 and topk_count(25, 0.1) == 2 and topk_count(16, 0.35) == 6


def test_short_and_misshapen_inputs_are_refused(reference_network):
    short, = random_videos([3])
    with pytest.raises(ValueError, match="3 frames, the comparator needs at least 4"):
        reference_network.video_similarity(short, short)
    with pytest.raises(ValueError, match=r"D = 512, got shape \(5, 9, 64\)"):
        reference_network.video_similarity(torch.zeros(5, 9, 64), torch.zeros(5, 9, 64))


def test_gradients_reach_every_parameter(hapvr_state, hapvr_io):
    network = HapvrNetwork()
    network.load_state_dict(hapvr_state)
    _, video_sim, reg = network.training_forward(hapvr_io["features"][:4])
    (video_sim.sum() + reg).backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_training_forward_under_bf16_autocast(reference_network, hapvr_io):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        frame_sim, video_sim, reg = reference_network.training_forward(hapvr_io["features"])
    assert reg.dtype == torch.float32
    assert (video_sim.float() - hapvr_io["video_sim"]).abs().max() < 0.05


def test_the_blocked_training_forward_equals_the_whole_one_with_its_gradients(hapvr_state, hapvr_io):
    from models import load_hapvr_model

    x = hapvr_io["features"]
    outputs, grads = [], []
    for max_elements in (1 << 40, 2 * (16 * 9) ** 2 * 6):  # one block; blocks of 2 query rows (3 blocks)
        network = load_hapvr_model(hapvr_state)
        frame_sim, video_sim, reg = network.training_forward(x, max_elements=max_elements)
        (frame_sim.mean() + video_sim.sum() + reg).backward()
        outputs.append((frame_sim.detach(), video_sim.detach(), reg.detach()))
        grads.append({k: p.grad.clone() for k, p in network.named_parameters()})
    for whole, blocked in zip(*outputs):
        torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=1e-5)
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], atol=1e-6, rtol=1e-4)
