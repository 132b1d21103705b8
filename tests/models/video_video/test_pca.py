"""PCA whitening: a fit whitens its sample, streaming equals one batch, files round-trip in both layouts the
reference uses, and malformed files stop with one line naming the file and key."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.video_video.pca import EPS, PCAStats, PCAWhitening, fit_pca, load_pca, random_pca, save_pca
from models.weights import CheckpointError


def correlated(count: int = 4000, features: int = 24, seed: int = 0) -> np.ndarray:
    """Vectors (count, features) with a non-zero mean and a spread of variances over two orders of magnitude."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(features, features)) * np.logspace(0, -2, features)[:, None]
    return rng.normal(size=(count, features)) @ mixing + 3.0 + rng.uniform(size=features)


def test_a_fit_whitens_its_sample():
    vectors = correlated()
    params = fit_pca(vectors, 10)
    assert params["mean"].shape == (24,) and params["d"].shape == (10,) and params["V"].shape == (24, 10)
    assert np.all(np.diff(params["d"]) <= 0)  # largest first
    np.testing.assert_allclose(params["mean"], vectors.mean(0), atol=1e-10)
    np.testing.assert_allclose(params["V"].T @ params["V"], np.eye(10), atol=1e-10)
    pca = PCAWhitening.from_params(params, 10)
    white = pca.whiten(torch.from_numpy(vectors).float()).double().numpy()
    np.testing.assert_allclose(white.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(10), atol=1e-3)


def test_the_eigenpairs_are_those_of_the_covariance():
    vectors = correlated()
    params = fit_pca(vectors, 24)
    covariance = np.cov(vectors.T, bias=True)
    np.testing.assert_allclose(covariance @ params["V"], params["V"] * params["d"], atol=1e-10)
    assert np.isclose(PCAStats().update(vectors).total_variance(), np.trace(covariance))


def test_streaming_equals_one_batch_and_signs_are_fixed():
    vectors = correlated(seed=1)
    stats = PCAStats()
    for chunk in np.array_split(vectors, 7):
        stats.update(torch.from_numpy(chunk).float())
    streamed, whole = stats.fit(6), fit_pca(vectors.astype(np.float32), 6)
    for key in ("mean", "d", "V"):
        np.testing.assert_allclose(streamed[key], whole[key], rtol=1e-6, atol=1e-8)
    peaks = np.abs(whole["V"]).argmax(0)
    assert (whole["V"][peaks, np.arange(6)] > 0).all()


def test_forward_centres_projects_scales_and_normalises():
    params = {"mean": np.array([1.0, 2.0, 3.0]), "d": np.array([1.0, 4.0, 0.25]),
              "V": np.eye(3)}  # axes in file order: kept by eigenvalue, 4 then 1
    pca = PCAWhitening.from_params(params, 2)
    x = torch.tensor([[3.0, 6.0, 0.0]])
    expected = torch.tensor([[4.0 / np.sqrt(4.0 + EPS), 2.0 / np.sqrt(1.0 + EPS)]])
    assert torch.allclose(pca.whiten(x), expected.float())
    assert torch.allclose(pca(x), torch.nn.functional.normalize(expected.float(), dim=-1))


@pytest.mark.parametrize("suffix", [".npz", ".pth"])
def test_files_round_trip(tmp_path, suffix):
    params = fit_pca(correlated(), 8)
    path = tmp_path / f"pca{suffix}"
    if suffix == ".npz":
        save_pca(path, params)
    else:  # the released pca_resnet50_vcdb_1M.pth: a dict of tensors, all axes, eigh's ascending order
        full = fit_pca(correlated(), 24)
        torch.save({key: torch.from_numpy(np.ascontiguousarray(value[..., ::-1] if key != "mean" else value))
                    for key, value in full.items()}, path)
    loaded = load_pca(path, dims=8)
    expected = PCAWhitening.from_params(params, 8)
    x = torch.from_numpy(correlated(10, seed=5)).float()
    assert torch.allclose(loaded(x), expected(x), atol=1e-5)


def test_a_random_pca_is_orthonormal_and_seeded():
    pca = random_pca(3840, 512, seed=3)
    assert pca.projection.shape == (3840, 512) and not pca.mean.any()
    assert torch.allclose(pca.projection.T @ pca.projection, torch.eye(512), atol=1e-4)
    assert torch.equal(pca.projection, random_pca(3840, 512, seed=3).projection)
    assert not torch.equal(pca.projection, random_pca(3840, 512, seed=4).projection)


def test_bad_files_name_the_file_and_key(tmp_path):
    params = fit_pca(correlated(), 8)
    with pytest.raises(CheckpointError, match="missing.npz: PCA file not found"):
        load_pca(tmp_path / "missing.npz")
    np.savez(tmp_path / "keys.npz", pca_mean=params["mean"], d=params["d"], V=params["V"])
    with pytest.raises(CheckpointError, match=r"keys.npz: missing key mean \(expected mean, d, V"):
        load_pca(tmp_path / "keys.npz", dims=8)
    np.savez(tmp_path / "shape.npz", mean=params["mean"][:5], d=params["d"], V=params["V"])
    with pytest.raises(CheckpointError, match=r"shape.npz: expected mean \(D,\), d \(K,\), V \(D, K\)"):
        load_pca(tmp_path / "shape.npz", dims=8)
    save_pca(tmp_path / "few.npz", params)
    with pytest.raises(CheckpointError, match="few.npz: 8 principal axes, cannot keep dims = 512"):
        load_pca(tmp_path / "few.npz")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable PCA file"):
        load_pca(tmp_path / "junk.pt")


def test_a_fit_needs_more_vectors_than_axes():
    with pytest.raises(ValueError, match="fitting 8 axes needs more than 8 vectors, got 8"):
        fit_pca(correlated(8), 8)
