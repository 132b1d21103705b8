"""Shared fixtures: paths to ../shared (golden vectors, real annotation files)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = SHARED / "golden"
    if not path.is_dir():
        pytest.skip(f"golden vectors not found at {path} (they live in ../shared/golden beside the checkout)")
    return path


@pytest.fixture(scope="session")
def real_dir() -> Path:
    path = SHARED / "real"
    if not path.is_dir():
        pytest.skip(f"real annotation files not found at {path} (they live in ../shared/real beside the checkout)")
    return path


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """16 training and 8 test clips of the synthetic demo data, 32x32 pixels."""
    from dataloaders.synthetic.clips import generate_demo_data

    root = tmp_path_factory.mktemp("demo")
    generate_demo_data(root, num_train=16, num_test=8, frames=8, fps=8, size=32, seed=0)
    return root
