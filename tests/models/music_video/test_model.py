"""Behaviour the reference lacks: clips embedded independently of their batch (attention over time), the beat term
in the fixed orientation, chunked scoring, the trainer contract with gathered embeddings."""
from __future__ import annotations

import pytest
import torch

from models.music_video import build_music_video_model
from modules.engine.optim import param_groups
from tests.helpers import close
from tests.models.music_video.conftest import random_inputs


def embed(model, inputs: dict) -> tuple[dict, dict]:
    with torch.no_grad():
        return (model.encode_music(inputs["music"], inputs["music_beat"]),
                model.encode_video(inputs["video"], inputs["video_beat"]))


def test_default_sizes_and_shapes():
    torch.manual_seed(0)
    model = build_music_video_model().eval()
    inputs = random_inputs(3, segments=30)
    music, video = embed(model, inputs)
    assert music["music_data"].shape == (3, 30 * 512) and music["music_beat"].shape == (3, 30, 256)
    assert video["video_data"].shape == (3, 30 * 512) and video["video_beat_pool"].shape == (3, 256)
    assert model.similarity(music, video).shape == (3, 3)
    assert len(model.music_beat_transformer.layers) == 6 and len(model.video_beat_transformer.layers) == 8
    assert model.input_spec == {} and model.backbone_prefix is None


def test_time_attention_embeds_a_clip_independently_of_its_batch(small_model):
    inputs = random_inputs(5, seed=1)
    first = {key: value[[0, 1, 2]] for key, value in inputs.items()}
    second = {key: value[[3, 2, 4]] for key, value in inputs.items()}  # clip 2 again, with other clips
    (music_a, video_a), (music_b, video_b) = embed(small_model, first), embed(small_model, second)
    for key in music_a:
        assert close(music_a[key][2], music_b[key][1]), key
    for key in video_a:
        assert close(video_a[key][2], video_b[key][1]), key


def test_batch_attention_couples_the_clips_of_a_batch():
    torch.manual_seed(0)
    model = build_music_video_model(embed_dim=16, num_layers=1, num_segments=6, attention="batch").eval()
    inputs = random_inputs(4, seed=1)
    music_all, _ = embed(model, inputs)
    music_two, _ = embed(model, {key: value[:2] for key, value in inputs.items()})
    assert not close(music_all["music_data"][:2], music_two["music_data"])


def changed_column_test(model, beat_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """|sims after - sims before| in both orientations when candidate video 2 is replaced by another one."""
    inputs = random_inputs(4, seed=2)
    other = random_inputs(1, seed=3)
    changed = {key: value.clone() for key, value in inputs.items()}
    for key in ("video", "video_beat"):
        changed[key][2] = other[key][0]
    diffs = []
    for orientation in ("fixed", "reference"):
        sims = []
        for data in (inputs, changed):
            music, video = embed(model, data)
            if beat_only:  # a constant feature term: only the beat term is informative
                music["music_data"] = torch.ones_like(music["music_data"])
                video["video_data"] = torch.ones_like(video["video_data"])
            with torch.no_grad():
                sims.append(model.similarity(music, video, beat_orientation=orientation))
        diffs.append((sims[1] - sims[0]).abs())
    return diffs[0], diffs[1]


@pytest.mark.parametrize("beat_only", [True, False])
def test_fixed_orientation_changes_only_the_changed_candidates_column(small_model, beat_only):
    fixed, reference = changed_column_test(small_model, beat_only)
    others = [0, 1, 3]
    assert fixed[:, 2].max() > 1e-4
    assert fixed[:, others].max() == 0
    # the published sum scores row 2 with video 2's beat pool: the whole row moves, other columns included
    assert reference[2, others].max() > 1e-4


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 100])
def test_chunked_similarity_equals_every_pair_at_once(small_model, chunk_size):
    music, _ = embed(small_model, random_inputs(5, seed=4))
    _, video = embed(small_model, random_inputs(3, seed=5))
    with torch.no_grad():
        feature, beat = small_model.similarity_terms(music, video, chunk_size=chunk_size)
        pooled = small_model.pooled_music_beats(music, video)  # (5, 3, D), unchunked
    expected_beat = torch.nn.functional.cosine_similarity(pooled, video["video_beat_pool"][None], dim=-1)
    assert feature.shape == beat.shape == (5, 3)
    assert close(beat, expected_beat)
    with torch.no_grad():
        assert close(small_model.similarity(music, video, chunk_size=chunk_size),
                     small_model.similarity(music, video))


def test_reference_orientation_needs_a_square_matrix(small_model):
    music, _ = embed(small_model, random_inputs(3, seed=4))
    _, video = embed(small_model, random_inputs(2, seed=5))
    with pytest.raises(ValueError, match="as many music as video"):
        small_model.similarity(music, video, beat_orientation="reference")


def test_wrong_input_shapes_are_named(small_model):
    inputs = random_inputs(2)
    with pytest.raises(ValueError, match=r"music: expected \(B, 6, 768\)"):
        small_model.encode_music(inputs["video"], inputs["music_beat"])
    with pytest.raises(ValueError, match="video_beat"):
        small_model.encode_video(inputs["video"], inputs["video_beat"][:, :3])


def test_forward_gathers_every_embedding_and_equals_the_global_batch_loss(small_model):
    """Two simulated processes: rank 0 embeds its half, `gather` appends rank 1's embeddings; the loss is the
    one-process loss of the whole batch, and gradients reach the parameters."""
    inputs = random_inputs(6, seed=6)
    keys = small_model.input_keys
    with torch.no_grad():
        whole = small_model(*(inputs[key] for key in keys))["total"]
        rank1 = {key: value[3:] for key, value in inputs.items()}
        remote = [*small_model.encode_music(rank1["music"], rank1["music_beat"]).values(),
                  *small_model.encode_video(rank1["video"], rank1["video_beat"]).values()]
    calls = []

    def gather(tensor: torch.Tensor) -> torch.Tensor:
        other = remote[len(calls)]
        calls.append(tuple(tensor.shape))
        return torch.cat([tensor, other])

    local = small_model(*(inputs[key][:3] for key in keys), gather=gather)["total"]
    assert len(calls) == 4  # music_data, music_beat (the beat pooling needs it), video_data, video_beat_pool
    assert close(local.detach(), whole)
    local.backward()
    assert small_model.beat_pool.cross_attn.q_proj.weight.grad.abs().sum() > 0
    assert small_model.music_linear.weight.grad.abs().sum() > 0


def test_training_uses_the_fixed_orientation_by_default(small_model):
    inputs = random_inputs(4, seed=7)
    music, video = embed(small_model, inputs)
    with torch.no_grad():
        total = small_model(*(inputs[key] for key in small_model.input_keys))["total"]
    assert close(total, small_model.loss(music, video, "fixed"))
    assert not close(total, small_model.loss(music, video, "reference"))


def test_every_parameter_trains_at_the_base_rate(small_model):
    groups = param_groups(small_model, lr=1e-4, coef_lr=1e-3, weight_decay=0.2)
    assert {group["name"] for group in groups} == {"other_decay", "other_no_decay"}
    assert all(group["lr"] == 1e-4 for group in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(small_model.parameters()))


@pytest.mark.parametrize("option, value", [("attention", "segments"), ("beat_orientation", "transposed")])
def test_unknown_options_are_refused(option, value):
    with pytest.raises(ValueError, match=option):
        build_music_video_model(embed_dim=16, num_layers=1, **{option: value})
