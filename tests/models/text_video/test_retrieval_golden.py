"""The WTI model against the reference implementation's outputs (../shared/golden/hbi_reference_*.pt)."""
import pytest
import torch

from models.weights import CheckpointError
from models.text_video import load_retrieval_model
from tests.helpers import close


@pytest.fixture(scope="module")
def reference(golden_dir):
    io = torch.load(golden_dir / "hbi_reference_io.pt", weights_only=True)
    model = load_retrieval_model(golden_dir / "hbi_reference_state_dict.pt", model="wti", num_hidden_layers=1)
    return model.eval(), io


def test_reports_keys_of_other_models_as_unused(reference):
    model, _ = reference
    assert any(k.startswith("banzhafteacher.") for k in model.unused_keys)
    assert any(k.startswith("t_ctm0.") for k in model.unused_keys)
    assert not any(k.startswith(("clip.", "text_weight_fc.", "transformerClip.")) for k in model.unused_keys)


@torch.no_grad()
def test_text_video_features_and_entity_similarity(reference):
    model, io = reference
    text = model.encode_text(io["text_ids"], io["text_mask"])
    video = model.encode_video(io["video"], io["video_mask"])
    assert close(text, io["text_feat"])
    assert close(video, io["video_feat"])
    sims = model.similarity(text, io["text_mask"], video, io["video_mask"])
    assert sims.shape == (4, 4)
    assert close(sims, io["entity_sim"])


@torch.no_grad()
def test_reference_state_dict_round_trip(reference, golden_dir):
    model, _ = reference
    exported = model.reference_state_dict()
    original = torch.load(golden_dir / "hbi_reference_state_dict.pt", weights_only=True)
    assert set(exported) <= set(original)
    for key, value in exported.items():
        assert torch.equal(value, original[key]), key


def test_partial_checkpoint_names_missing_keys(golden_dir, tmp_path):
    state = torch.load(golden_dir / "hbi_reference_state_dict.pt", weights_only=True)
    del state["text_weight_fc.0.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="text_weight_fc.0.weight"):
        load_retrieval_model(tmp_path / "partial.pt", model="wti", num_hidden_layers=1)


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_retrieval_model(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_retrieval_model(tmp_path / "missing.pt")
