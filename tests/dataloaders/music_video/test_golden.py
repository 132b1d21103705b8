"""The "chunk" rule reproduces the reference dataset class bit for bit (golden bpvmr_reference_io.pt): the inputs
it made of the raw test and training clips, and the probes on ramps of chosen lengths (NaN rows of an empty
feature included)."""
from __future__ import annotations

import pytest
import torch

from dataloaders.music_video import segment_beats, segment_features


@pytest.fixture(scope="module")
def golden(golden_dir):
    return torch.load(golden_dir / "bpvmr_reference_io.pt", weights_only=True)


def same(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal to 1e-6 with NaN at the same positions."""
    nan = expected.isnan()
    return actual.shape == expected.shape and torch.equal(actual.isnan(), nan) and \
        bool(((actual - expected).abs()[~nan] <= 1e-6).all())


@pytest.mark.parametrize("split", ["test", "train"])
def test_chunk_mode_reproduces_the_reference_inputs(golden, split):
    inputs = golden[f"inputs_{split}"]
    assert [c["id"] for c in golden[f"raw_{split}"]] == golden[f"{split}_ids"]
    for i, clip in enumerate(golden[f"raw_{split}"]):
        assert same(segment_features(clip["video"]["video_clip_feature"], 30, mode="chunk"), inputs["video"][i])
        assert same(segment_features(clip["music"]["music_bert_feature"], 30, mode="chunk"), inputs["music"][i])
        assert same(segment_beats(clip["video_beat"]["video_beat"], 30, 25, mode="chunk"), inputs["video_beat"][i])
        assert same(segment_beats(clip["music_beat"]["music_beat"], 30, 25, mode="chunk"), inputs["music_beat"][i])


def probe_input(name: str) -> torch.Tensor:
    """The probe ramps: feature `video_T<T>` = arange(2T) as (T, 2); beat `beat_L<L>` = a beat every 7th frame
    (inferred from the stored outputs: these inputs reproduce every probe exactly)."""
    kind, length = name.split("_")
    n = int(length[1:])
    if kind == "video":
        return torch.arange(2 * n, dtype=torch.float32).reshape(n, 2)
    return (torch.arange(n) % 7 == 0).float()


def test_chunk_mode_reproduces_every_probe(golden):
    probes = golden["preprocess_probes"]
    assert len(probes) == 13
    for name, expected in probes.items():
        x = probe_input(name)
        if name.startswith("video"):
            if len(x) == 0:
                with pytest.warns(RuntimeWarning, match="NaN rows"):
                    actual = segment_features(x, 30, mode="chunk")
            else:
                actual = segment_features(x, 30, mode="chunk")
        else:
            actual = segment_beats(x, 30, 25, mode="chunk")
        assert same(actual, expected), name
    assert probes["video_T0"].isnan().all()
    assert (probes["video_T31"][16:] == 0).all() and (probes["video_T31"][:16] != 0).all()  # 16 of 30 filled


def test_chunk_beats_are_piece_means_not_max_or_sum(golden):
    """L=900: torch.chunk(beat, 750) gives 450 pieces of 2 frames; a beat in a piece counts 0.5, the rest is 0."""
    grid = golden["preprocess_probes"]["beat_L900"]
    assert set(grid.unique().tolist()) == {0.0, 0.5}
    assert (grid.flatten()[450:] == 0).all()
