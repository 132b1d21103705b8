"""The HAP-VR golden files, the reference network loaded from them, and small random inputs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models import load_hapvr_model

STATE_FILE = "hapvr_visil_state_dict.pt"
IO_FILE = "hapvr_reference_io.pt"


@pytest.fixture(scope="session")
def hapvr_state(golden_dir: Path) -> dict:
    return torch.load(golden_dir / STATE_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def hapvr_io(golden_dir: Path) -> dict:
    return torch.load(golden_dir / IO_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def reference_network(hapvr_state):
    """The golden weights at the published rates (f2f 0.1, v2v 0.03)."""
    return load_hapvr_model(hapvr_state)


def random_videos(lengths, dims: int = 512, regions: int = 9, seed: int = 0) -> list[torch.Tensor]:
    """L2-normalised random region features (T, regions, dims), one per length."""
    generator = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(t, regions, dims, generator=generator), dim=-1) for t in lengths]
