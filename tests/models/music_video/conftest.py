"""The BPVMR golden file, the reference model loaded from it, and small random models for property tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import load_music_video_model
from models.music_video import build_music_video_model

GOLDEN_FILE = "bpvmr_reference_io.pt"
TEST_BATCHES = (slice(0, 4), slice(4, 8), slice(8, 10))  # test batch size 4: 10 clips -> 4, 4, 2


@pytest.fixture(scope="session")
def bpvmr(golden_dir: Path) -> dict:
    return torch.load(golden_dir / GOLDEN_FILE, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def reference_model(bpvmr):
    """The golden's weights with the reference's behaviour (attention over the batch), in eval mode."""
    return load_music_video_model(bpvmr["state_dict"], attention="batch").eval()


def random_inputs(num: int, seed: int = 0, segments: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"music": torch.randn(num, segments, 768, generator=generator),
            "music_beat": (torch.rand(num, segments, 25, generator=generator) > 0.7).float(),
            "video": torch.randn(num, segments, 512, generator=generator),
            "video_beat": (torch.rand(num, segments, 25, generator=generator) > 0.7).float()}


@pytest.fixture()
def small_model():
    """A small random model over 6 segments with time attention, in eval mode."""
    torch.manual_seed(0)
    return build_music_video_model(embed_dim=16, num_heads=4, num_layers=1, num_segments=6).eval()
