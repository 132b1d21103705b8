"""The reference behaviour (attention="batch", beat_orientation="reference") reproduces the BPVMR golden vectors:
embeddings per test batch, pooled music beats, both similarity orientations, the batch loss, the metrics and
QB-Norm on the golden querybank."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.music_video import LOGIT_SCALE
from modules.evaluation.metrics import retrieval_metrics, v2t_metrics
from modules.evaluation.music_video import querybank_terms
from modules.qbnorm import qb_norm_weighted
from tests.helpers import close
from tests.models.music_video.conftest import TEST_BATCHES

GOLDEN_METRIC_NAMES = {"R1": "R1", "R5": "R5", "R10": "R10", "R50": "R50", "MdR": "MedR", "MnR": "MeanR"}
DIRECTIONS = {"t2v": retrieval_metrics, "v2t": v2t_metrics}  # t2v = music -> video


def embed(model, inputs: dict, batches) -> tuple[dict, dict]:
    """Music and video embeddings of `inputs`, computed batch by batch as the golden cut them."""
    music, video = [], []
    with torch.no_grad():
        for part in batches:
            music.append(model.encode_music(inputs["music"][part], inputs["music_beat"][part]))
            video.append(model.encode_video(inputs["video"][part], inputs["video_beat"][part]))
    return ({key: torch.cat([m[key] for m in music]) for key in music[0]},
            {key: torch.cat([v[key] for v in video]) for key in video[0]})


def as_golden(metrics: dict) -> dict:
    return {GOLDEN_METRIC_NAMES[key]: value for key, value in metrics.items()}


def golden_metrics(expected: dict) -> dict:
    return {key: value for key, value in expected.items() if key in GOLDEN_METRIC_NAMES.values()}


@pytest.fixture(scope="module")
def test_embeddings(bpvmr, reference_model):
    return embed(reference_model, bpvmr["inputs_test"], TEST_BATCHES)


@pytest.fixture(scope="module")
def test_terms(reference_model, test_embeddings):
    with torch.no_grad():
        return reference_model.similarity_terms(*test_embeddings)


def test_logit_scale_is_the_golden_one(bpvmr):
    assert math.isclose(LOGIT_SCALE, float(bpvmr["clip_logit_scale"].double().exp()), rel_tol=1e-6)


@pytest.mark.parametrize("split, batches", [("test", TEST_BATCHES), ("train", (slice(0, 4), slice(4, 8),
                                                                              slice(8, 12), slice(12, 16)))])
def test_embeddings_per_batch(bpvmr, reference_model, split, batches):
    music, video = embed(reference_model, bpvmr[f"inputs_{split}"], batches)
    expected = bpvmr[f"embeds_{split}"]
    for key, value in {**music, **video}.items():
        assert close(value, expected[key]), key


@pytest.mark.parametrize("batch_size", [1, 10])
def test_embeddings_depend_on_the_batch_as_the_reference(bpvmr, reference_model, batch_size):
    batches = [slice(i, i + batch_size) for i in range(0, 10, batch_size)]
    music, video = embed(reference_model, bpvmr["inputs_test"], batches)
    expected = bpvmr["batch_coupling"][f"bs{batch_size}"]
    for key, value in {**music, **video}.items():
        assert close(value, expected[key]), key


def test_video_beat_full_and_pooled_music_beats_per_batch(bpvmr, reference_model):
    inputs = bpvmr["inputs_test"]
    for part, expected in zip(TEST_BATCHES, bpvmr["embeds_test_per_batch"]):
        with torch.no_grad():
            beats = reference_model.video_beat_linear(inputs["video_beat"][part])
            full = reference_model.video_beat_transformer(beats)
            music = reference_model.encode_music(inputs["music"][part], inputs["music_beat"][part])
            video = reference_model.encode_video(inputs["video"][part], inputs["video_beat"][part])
            pooled = reference_model.pooled_music_beats(music, video)
        assert close(full, expected["video_beat_full"])
        assert close(pooled, expected["music_beat_pool"])


def test_pooled_music_beats_of_the_test_set(bpvmr, reference_model, test_embeddings):
    with torch.no_grad():
        pooled = reference_model.pooled_music_beats(*test_embeddings)
    assert pooled.shape == (10, 10, 64)
    assert close(pooled, bpvmr["music_beats_pooled_test"])


def test_similarity_terms_and_both_orientations(bpvmr, reference_model, test_embeddings, test_terms):
    feature, beat = test_terms
    assert close(feature, bpvmr["sims_feature_mv"][:, 0])
    assert close(beat.T, bpvmr["sims_beat_vm"][:, 0])  # the reference's beat term is video x music
    with torch.no_grad():
        for orientation, key in (("reference", "sims_ref"), ("fixed", "sims_fixed")):
            sims = reference_model.similarity(*test_embeddings, beat_orientation=orientation)
            assert close(sims, bpvmr[key][:, 0]), orientation


def test_batch_sims_and_loss(bpvmr, reference_model):
    inputs = bpvmr["inputs_test"]
    losses = []
    for part, sims_expected, loss_expected in zip(TEST_BATCHES, bpvmr["batch_sims"], bpvmr["batch_loss"]):
        with torch.no_grad():
            music = reference_model.encode_music(inputs["music"][part], inputs["music_beat"][part])
            video = reference_model.encode_video(inputs["video"][part], inputs["video_beat"][part])
            assert close(reference_model.similarity(music, video, "reference"), sims_expected)
            loss = reference_model.loss(music, video, beat_orientation="reference")
        assert close(loss, torch.tensor(loss_expected))
        losses.append(loss)
    assert close(torch.stack(losses).mean(), torch.tensor(bpvmr["val_loss"]))  # the mean over the batches


def test_training_forward_is_the_batch_loss(bpvmr):
    """forward (the trainer's call) with the reference orientation gives the golden batch loss."""
    from models import load_music_video_model

    model = load_music_video_model(bpvmr["state_dict"], attention="batch", beat_orientation="reference").eval()
    part, inputs = TEST_BATCHES[0], bpvmr["inputs_test"]
    with torch.no_grad():
        out = model(*(inputs[key][part] for key in model.input_keys))
    assert close(out["total"], torch.tensor(bpvmr["batch_loss"][0]))


@pytest.mark.parametrize("name", ["ref", "fixed", "feature_only"])
@pytest.mark.parametrize("direction", ["t2v", "v2t"])
def test_metrics(bpvmr, reference_model, test_embeddings, test_terms, name, direction):
    feature, _ = test_terms
    with torch.no_grad():
        sims = (feature if name == "feature_only" else
                reference_model.similarity(*test_embeddings, "reference" if name == "ref" else "fixed"))
    ours = as_golden(DIRECTIONS[direction](sims))
    assert ours == golden_metrics(bpvmr["metrics"][f"{name}_{direction}"])


@pytest.mark.parametrize("mode", ["mode1", "mode2"])
@pytest.mark.parametrize("direction", ["t2v", "v2t"])
def test_qbnorm_on_the_golden_querybank(bpvmr, reference_model, test_terms, mode, direction):
    """QB-Norm (k 1, beta 50) of the reference-orientation terms against the golden querybank terms."""
    feature, beat = (t.double().numpy() for t in test_terms)
    terms = [feature, beat.T]  # the reference orientation
    bank_name = "m2v" if direction == "t2v" else "v2m"
    bank = [bpvmr["querybank"][f"Data1_{bank_name}_train_{term}_sims"][:, 0].double().numpy()
            for term in ("feature", "beat")]
    out = qb_norm_weighted(bank, terms, [1.0, reference_model.beat_weight], mode=mode, k=1, beta=50,
                           transpose=direction == "v2t")
    expected = bpvmr["qb_sims"][f"{direction}_{mode}"][:, 0].double().numpy()
    if mode == "mode1":  # rescored query rows hold log-scores, the official code the ratios; the rest stay raw
        raw = terms[0] + reference_model.beat_weight * terms[1]
        axis = 1 if direction == "t2v" else 0
        kept = np.isclose(out, raw, rtol=0, atol=1e-6).all(axis=axis, keepdims=True)
        assert not kept.all()
        out_values = np.where(kept, out, np.exp(out))
    else:
        out_values = out
    assert close(torch.from_numpy(out_values), torch.from_numpy(expected))
    ours = as_golden(DIRECTIONS[direction](out))
    assert ours == golden_metrics(bpvmr["metrics"][f"qb_{direction}_{mode}"])
    assert ours == golden_metrics(bpvmr["trainer_metrics"][f"qb_{direction}_{mode}"])


def test_the_querybank_the_model_builds_is_the_golden_one(bpvmr, reference_model, test_embeddings):
    """querybank_terms (training clips x test gallery, per direction and term) equals the files the reference's
    commented code wrote, so test_qb_norm.py without --querybank_dir scores what the official files would."""
    train = embed(reference_model, bpvmr["inputs_train"], (slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 16)))
    bank = querybank_terms(reference_model, train, test_embeddings)
    for direction in ("m2v", "v2m"):
        for term, ours in zip(("feature", "beat"), bank[direction]):
            expected = bpvmr["querybank"][f"Data1_{direction}_train_{term}_sims"][:, 0]
            assert close(torch.from_numpy(ours), expected), (direction, term)
