"""PCA whitening of the 3840-d region vectors to 512 dimensions, as the reference's PCALayer does it.

File layout (the reference's): `mean` (D,), `d` (K,) eigenvalues, `V` (D, K) eigenvectors as columns, K >= dims,
in any order (the top `dims` by eigenvalue are taken). `.npz` files are read with numpy (the reference's `save`),
anything else with torch.load(weights_only=True) (the released `pca_resnet50_vcdb_1M.pth`: a dict of tensors).
Forward: (x - mean) @ V_k diag(1 / sqrt(d_k + eps)), eps = 1e-7, then L2-normalised.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.weights import CheckpointError

PCA_KEYS = ("mean", "d", "V")
EPS = 1e-7  # the reference's; below the eigenvalues it guards, so it only matters for degenerate directions
Params = dict[str, np.ndarray]


class PCAWhitening(nn.Module):
    """(..., D) -> (..., dims): centre, project on the top principal axes scaled by 1 / sqrt(eigenvalue), L2-norm.

    Frozen: mean and projection are buffers (they travel with state_dict and .to(), never reach an optimiser)."""

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor):
        super().__init__()
        if mean.ndim != 1 or projection.ndim != 2 or projection.shape[0] != mean.shape[0]:
            raise ValueError(f"expected mean (D,) and projection (D, dims), got {tuple(mean.shape)} and "
                             f"{tuple(projection.shape)}")
        self.register_buffer("mean", mean.float())
        self.register_buffer("projection", projection.float())

    @property
    def in_dims(self) -> int:
        return self.projection.shape[0]

    @property
    def dims(self) -> int:
        return self.projection.shape[1]

    @classmethod
    def from_params(cls, params: Params, dims: int, eps: float = EPS, name: str = "PCA parameters") -> "PCAWhitening":
        """From `{"mean", "d", "V"}` (checked; see the module docstring), keeping the `dims` largest eigenvalues."""
        mean, eigvals, eigvecs = check_params(params, dims, name)
        top = np.argsort(-eigvals, kind="stable")[:dims]
        if (eigvals[top] + eps <= 0).any():
            raise CheckpointError(f"{name}: the top {dims} eigenvalues in d must be positive")
        projection = eigvecs[:, top] / np.sqrt(eigvals[top] + eps)
        return cls(torch.from_numpy(mean), torch.from_numpy(projection))

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., dims), before the L2 norm: unit covariance on the sample the PCA was fitted on."""
        if x.shape[-1] != self.in_dims:
            raise ValueError(f"expected vectors (..., {self.in_dims}), got shape {tuple(x.shape)}")
        return (x - self.mean) @ self.projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.whiten(x), p=2, dim=-1)


def check_params(params: dict, dims: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (D,), d (K,), V (D, K)) as float64 arrays, or a CheckpointError naming `name` and the key."""
    missing = [key for key in PCA_KEYS if key not in params]
    if missing:
        raise CheckpointError(f"{name}: missing key {missing[0]} (expected {', '.join(PCA_KEYS)}: mean (D,), "
                              f"eigenvalues d (K,), eigenvectors V (D, K))")
    arrays = {}
    for key in PCA_KEYS:
        value = params[key]
        value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if value.dtype.kind not in "fiu" or not np.isfinite(value).all():
            raise CheckpointError(f"{name}: {key} must hold finite numbers (got dtype {value.dtype})")
        arrays[key] = value.astype(np.float64)
    mean, eigvals, eigvecs = (arrays[key] for key in PCA_KEYS)
    if mean.ndim != 1 or eigvals.ndim != 1 or eigvecs.shape != (mean.shape[0], eigvals.shape[0]):
        raise CheckpointError(f"{name}: expected mean (D,), d (K,), V (D, K); got mean {mean.shape}, "
                              f"d {eigvals.shape}, V {eigvecs.shape}")
    if not 0 < dims <= eigvals.shape[0]:
        raise CheckpointError(f"{name}: {eigvals.shape[0]} principal axes, cannot keep dims = {dims}")
    return mean, eigvals, eigvecs


def read_pca(path: Union[str, Path]) -> dict:
    """The raw content of a PCA file (`.npz` through numpy, else a torch file of tensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: PCA file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, ValueError, OSError, RuntimeError, EOFError) as error:
        first = str(error).splitlines()[0][:200] if str(error) else ""
        raise CheckpointError(f"{path}: not a readable PCA file ({type(error).__name__}: {first})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a dict with keys {', '.join(PCA_KEYS)}, got "
                              f"{type(content).__name__}")
    return content


def load_pca(path: Union[str, Path], dims: int = 512, eps: float = EPS) -> PCAWhitening:
    """A `PCAWhitening` to `dims` dimensions from a PCA file; problems raise a one-line CheckpointError."""
    return PCAWhitening.from_params(read_pca(path), dims, eps, name=str(path))


def save_pca(file: Union[str, Path, BinaryIO], params: Params) -> None:
    """Writes `{"mean", "d", "V"}` as an `.npz` that `load_pca` (and the reference's PCALayer.load) reads."""
    np.savez(file, **{key: np.asarray(params[key], dtype=np.float32) for key in PCA_KEYS})


def random_pca(in_dims: int, dims: int, seed: int = 0) -> PCAWhitening:
    """Zero mean and a random orthonormal (in_dims, dims) projection: demos and tests without a fitted file."""
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(in_dims, dims, generator=generator, dtype=torch.float64))
    return PCAWhitening(torch.zeros(in_dims), basis.float())


class PCAStats:
    """Streaming mean and covariance of vectors (M, D) in float64, in bounded memory, for `fit`.

    Sums are taken around the first batch's mean: the region vectors are non-negative with a mean much larger
    than their spread, and centred sums keep the covariance from cancelling away."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: Optional[torch.Tensor] = None
        self.total: Optional[torch.Tensor] = None
        self.scatter: Optional[torch.Tensor] = None

    def update(self, vectors: Union[torch.Tensor, np.ndarray]) -> "PCAStats":
        """Adds vectors (M, D) (on any device; the sums stay on it)."""
        x = torch.as_tensor(vectors).detach().to(torch.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"expected vectors (M, D) with M > 0, got shape {tuple(x.shape)}")
        if self.shift is None:
            self.shift = x.mean(0)
            self.total = torch.zeros_like(self.shift)
            self.scatter = x.new_zeros(x.shape[1], x.shape[1])
        elif x.shape[1] != self.shift.shape[0]:
            raise ValueError(f"expected vectors (M, {self.shift.shape[0]}), got shape {tuple(x.shape)}")
        x = x.to(self.shift.device) - self.shift
        self.count += x.shape[0]
        self.total += x.sum(0)
        self.scatter += x.T @ x
        return self

    def covariance(self) -> torch.Tensor:
        """(D, D) float64: the covariance of the vectors added so far, normalised by their count M."""
        if self.shift is None:
            raise ValueError("no vectors to fit a PCA on")
        centred = self.total / self.count
        return self.scatter / self.count - torch.outer(centred, centred)

    def total_variance(self) -> float:
        """The trace of the covariance: what the kept eigenvalues are a fraction of."""
        return float(torch.diagonal(self.covariance()).sum())

    def fit(self, dims: int) -> Params:
        """`{"mean" (D,), "d" (dims,), "V" (D, dims)}`: the top `dims` eigenpairs of the covariance (1 / M), largest
        first, each eigenvector's largest entry made positive so that a refit gives the same file. (The reference's
        train_pca took the eigenvalues of the unnormalised scatter; after the final L2 norm both give the same
        features, up to eps.)"""
        if self.shift is None:
            raise ValueError("no vectors to fit a PCA on")
        features = self.shift.shape[0]
        if not 0 < dims <= features:
            raise ValueError(f"dims must be in 1..{features}, got {dims}")
        if self.count <= dims:
            # M vectors span at most M - 1 centred directions; whitening the others would blow up rounding noise.
            raise ValueError(f"fitting {dims} axes needs more than {dims} vectors, got {self.count}")
        eigvals, eigvecs = np.linalg.eigh(self.covariance().cpu().numpy())
        top = np.argsort(-eigvals, kind="stable")[:dims]
        eigvals, eigvecs = eigvals[top], eigvecs[:, top]
        peak = np.abs(eigvecs).argmax(0)
        eigvecs = eigvecs * np.sign(eigvecs[peak, np.arange(dims)])
        mean = (self.shift + self.total / self.count).cpu().numpy()
        return {"mean": mean, "d": np.clip(eigvals, 0.0, None), "V": eigvecs}


def fit_pca(vectors: Union[torch.Tensor, np.ndarray], dims: int) -> Params:
    """PCA-whitening parameters `{"mean", "d", "V"}` of vectors (M, D), for the top `dims` axes (see PCAStats)."""
    return PCAStats().update(vectors).fit(dims)
