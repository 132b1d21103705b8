"""Banzhaf-interaction labels: golden expectation of the reference, Monte-Carlo convergence, shapiq oracle."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modules.banzhaf import SCALE, banzhaf_labels

INPUT_KEYS = ("sim_map", "text_mask", "video_mask", "text_weight", "video_weight")


@pytest.fixture(scope="module")
def golden(golden_dir):
    return torch.load(golden_dir / "banzhaf_reference_expectation.pt", weights_only=True)


def _inputs(golden):
    return [golden[k] for k in INPUT_KEYS]


def random_inputs(num_text: int, num_video: int, seed: int, batch: int = 1, ties: bool = False):
    """Masked maps (B,T,V) in [-0.3, 0.5] (coarsely rounded when ties), padding, softmaxed weights; float64."""
    gen = torch.Generator().manual_seed(seed)
    text_mask = (torch.rand(batch, num_text, generator=gen) < 0.8).double()
    video_mask = (torch.rand(batch, num_video, generator=gen) < 0.8).double()
    text_mask[:, 0], video_mask[:, 0] = 1, 1
    sim = torch.rand(batch, num_text, num_video, generator=gen, dtype=torch.float64) * 0.8 - 0.3
    if ties:
        sim = torch.round(sim * 5) / 5
    sim = sim * text_mask[:, :, None] * video_mask[:, None, :]
    text_weight = torch.randn(batch, num_text, generator=gen, dtype=torch.float64)
    video_weight = torch.randn(batch, num_video, generator=gen, dtype=torch.float64)
    text_weight = text_weight.masked_fill(text_mask == 0, -9e15).softmax(-1)
    video_weight = video_weight.masked_fill(video_mask == 0, -9e15).softmax(-1)
    return sim, text_mask, video_mask, text_weight, video_weight


# ---- plain oracles in numpy, written from the definitions in modules/banzhaf.py (one coalition at a time) ----

def _softmax(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Softmax over the kept entries, 0 elsewhere (the reference's fill with -9e15)."""
    shifted = np.where(keep, logits - logits[keep].max(), -np.inf)
    weights = np.exp(shifted)
    return weights / weights.sum()


def _wti(table: np.ndarray, text_w: np.ndarray, video_w: np.ndarray) -> float:
    """Weighted token-wise score of a (T,V) table with weights over rows and columns."""
    return float((table.max(1) @ text_w + table.max(0) @ video_w) / 2)


def game_value(scores, text_w, video_w, in_text, in_video) -> float:
    """v(S): the map outside A x C set to 0, weights re-softmaxed over A and C; 0 if a side is empty."""
    if not in_text.any() or not in_video.any():
        return 0.0
    table = scores * in_text[:, None] * in_video[None, :]
    return _wti(table, _softmax(text_w, in_text), _softmax(video_w, in_video))


def reference_joint(scores, text_w, video_w, in_text, in_video, t, v) -> float:
    """w_tv(S): coalition map plus the single cell (t, v); weights softmaxed a second time with t's and v's."""
    table = scores * in_text[:, None] * in_video[None, :]
    table[t, v] = scores[t, v]
    with_t, with_v = in_text.copy(), in_video.copy()
    with_t[t], with_v[v] = True, True
    a = _softmax(text_w, in_text) if in_text.any() else np.zeros_like(text_w)
    c = _softmax(video_w, in_video) if in_video.any() else np.zeros_like(video_w)
    a[t], c[v] = text_w[t], video_w[v]
    return _wti(table, _softmax(a, with_t), _softmax(c, with_v))


def plain_interaction(scores, text_mask, video_mask, text_w, video_w, definition) -> np.ndarray:
    """Enumerate S over the other real players for every real cell: (T,V) float64 (numpy inputs)."""
    num_text, num_video = scores.shape
    text_real, video_real = text_mask > 0, video_mask > 0
    out = np.zeros((num_text, num_video))
    for t, v in itertools.product(range(num_text), range(num_video)):
        if not (text_real[t] and video_real[v]):
            continue
        others_t = [r for r in range(num_text) if r != t and text_real[r]]
        others_v = [c for c in range(num_video) if c != v and video_real[c]]
        terms = []
        for bits in itertools.product([False, True], repeat=len(others_t) + len(others_v)):
            in_text = np.zeros(num_text, dtype=bool)
            in_video = np.zeros(num_video, dtype=bool)
            in_text[[r for r, b in zip(others_t, bits) if b]] = True
            in_video[[c for c, b in zip(others_v, bits[len(others_t):]) if b]] = True
            with_t, with_v = in_text.copy(), in_video.copy()
            with_t[t], with_v[v] = True, True
            if definition == "standard":
                joint = game_value(scores, text_w, video_w, with_t, with_v)
            else:
                joint = reference_joint(scores, text_w, video_w, in_text, in_video, t, v)
            terms.append(joint - game_value(scores, text_w, video_w, with_t, in_video)
                         - game_value(scores, text_w, video_w, in_text, with_v)
                         + game_value(scores, text_w, video_w, in_text, in_video))
        out[t, v] = sum(terms) / len(terms)
    return out


# ---- golden vectors ----

def test_exact_reference_matches_golden_expectation(golden):
    labels = banzhaf_labels(*_inputs(golden), exact=True)
    expected = golden["expected_banzhaf"]
    assert labels.shape == expected.shape and labels.dtype == expected.dtype
    torch.testing.assert_close(labels, expected, rtol=1e-3, atol=1e-3)


def test_monte_carlo_converges_to_golden_expectation(golden):
    expected = golden["expected_banzhaf"]
    labels = banzhaf_labels(*_inputs(golden), samples=2000, generator=torch.Generator().manual_seed(0))
    assert float((labels - expected).abs().max()) < 0.03 * float(expected.abs().max())


def test_reference_monte_carlo_run_is_as_close_as_ours(golden):
    """Sanity of the golden file itself: the reference's own 2000-sample run lies within the same band."""
    expected = golden["expected_banzhaf"]
    assert float((golden["reference_mc_2000"] - expected).abs().max()) < 0.03 * float(expected.abs().max())


def test_definitions_differ_on_golden_input(golden):
    reference = banzhaf_labels(*_inputs(golden), exact=True)
    standard = banzhaf_labels(*_inputs(golden), exact=True, definition="standard")
    assert float((reference - standard).abs().max()) > 1.0


# ---- independent plain oracle (covers ties, one-row and one-column maps, padding) ----

@pytest.mark.parametrize("definition", ["reference", "standard"])
@pytest.mark.parametrize("shape,seed,ties", [((1, 1), 0, False), ((1, 3), 1, False), ((3, 1), 2, False),
                                             ((3, 3), 3, True), ((4, 3), 4, False), ((2, 4), 5, True)])
def test_exact_matches_plain_enumeration(definition, shape, seed, ties):
    inputs = random_inputs(*shape, seed=seed, ties=ties)
    labels = banzhaf_labels(*inputs, exact=True, definition=definition)[0]
    sim, text_mask, video_mask, text_w, video_w = (x[0].numpy() for x in inputs)
    expected = plain_interaction(sim * SCALE, text_mask, video_mask, text_w, video_w, definition)
    np.testing.assert_allclose(labels.numpy(), expected, rtol=1e-9, atol=1e-8)


# ---- the standard definition against shapiq's exact Banzhaf interaction index ----

def _shapiq_bii(inputs):
    """shapiq's order-2 Banzhaf interactions of the coalition game (players: T words then V frames)."""
    shapiq = pytest.importorskip("shapiq")
    sim, text_mask, video_mask, text_w, video_w = (x[0].numpy() for x in inputs)
    num_text = sim.shape[0]
    scores = sim * SCALE
    text_real, video_real = text_mask > 0, video_mask > 0

    def value_function(coalitions: np.ndarray) -> np.ndarray:
        rows = np.asarray(coalitions, dtype=bool)
        return np.array([game_value(scores, text_w, video_w, row[:num_text] & text_real, row[num_text:] & video_real)
                         for row in rows])

    computer = shapiq.ExactComputer(value_function, n_players=sim.shape[0] + sim.shape[1])
    return computer("BII", order=2)


@settings(max_examples=15, deadline=None)
@given(shape=st.integers(1, 5).flatmap(lambda t: st.tuples(st.just(t), st.integers(1, 6 - t))),
       seed=st.integers(0, 10_000), ties=st.booleans())
def test_standard_equals_shapiq_banzhaf_interaction(shape, seed, ties):
    """Random games of up to 6 players (T + V <= 6)."""
    num_text, num_video = shape
    inputs = random_inputs(num_text, num_video, seed=seed, ties=ties)
    labels = banzhaf_labels(*inputs, exact=True, definition="standard")[0]
    interactions = _shapiq_bii(inputs)
    text_mask, video_mask = inputs[1][0], inputs[2][0]
    for t, v in itertools.product(range(num_text), range(num_video)):
        expected = interactions[(t, num_text + v)] if text_mask[t] > 0 and video_mask[v] > 0 else 0.0
        assert labels[t, v].item() == pytest.approx(expected, rel=1e-7, abs=1e-7)


# ---- behaviour ----

def test_padded_cells_are_zero_and_output_has_input_dtype():
    inputs = [x.float() for x in random_inputs(5, 4, seed=7, batch=3)]
    labels = banzhaf_labels(*inputs, samples=50, generator=torch.Generator().manual_seed(0))
    padded = ~((inputs[1][:, :, None] > 0) & (inputs[2][:, None, :] > 0))
    assert labels.dtype == torch.float32 and labels.shape == inputs[0].shape
    assert bool(padded.any()) and bool((labels[padded] == 0).all())
    assert bool(torch.isfinite(labels).all())


def test_same_seed_same_labels_and_seeds_differ():
    inputs = random_inputs(6, 5, seed=8, batch=2)
    first = banzhaf_labels(*inputs, samples=30, generator=torch.Generator().manual_seed(1))
    again = banzhaf_labels(*inputs, samples=30, generator=torch.Generator().manual_seed(1))
    other = banzhaf_labels(*inputs, samples=30, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_standard_monte_carlo_converges():
    inputs = random_inputs(4, 4, seed=9, batch=2)
    exact = banzhaf_labels(*inputs, exact=True, definition="standard")
    estimate = banzhaf_labels(*inputs, samples=4000, generator=torch.Generator().manual_seed(3),
                              definition="standard")
    assert float((estimate - exact).abs().max()) < 0.05 * float(exact.abs().max())


def test_exact_refuses_too_many_players():
    inputs = random_inputs(12, 9, seed=10)
    with pytest.raises(ValueError, match="21 players exceeds 20"):
        banzhaf_labels(*inputs, exact=True)


@pytest.mark.parametrize("kwargs,match", [({"definition": "textbook"}, "definition must be one of"),
                                          ({"samples": 0}, "samples must be >= 1")])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        banzhaf_labels(*random_inputs(2, 2, seed=0), **kwargs)


def test_shape_mismatch_names_the_argument():
    sim, text_mask, video_mask, text_w, video_w = random_inputs(3, 2, seed=0)
    with pytest.raises(ValueError, match="video_weight must have shape"):
        banzhaf_labels(sim, text_mask, video_mask, text_w, video_w[:, :1])
