"""Weight files that do not fit the model stop with one line naming the file and the key (CheckpointError)."""
from __future__ import annotations

import re

import pytest
import torch

from models.clip.adapter import ClipBackbone, ClipConfig
from models.text_video import build_retrieval_model, load_retrieval_model
from models.weights import CheckpointError

TINY = ClipConfig(embed_dim=64, image_size=32, patch_size=16, vision_width=64, vision_layers=1,
                  context_length=16, vocab_size=100, text_width=64, text_layers=1)


def checkpoint(tmp_path, edit=None, layers: int = 1):
    """A repository checkpoint (reference names, CLIP under `clip.`) of a tiny WTI model, edited by `edit`."""
    torch.manual_seed(0)
    state = build_retrieval_model(TINY, "wti", num_hidden_layers=layers).reference_state_dict()
    if edit:
        edit(state)
    path = tmp_path / "model.bin"
    torch.save(state, path)
    return path


def message(path, layers: int = 1) -> str:
    with pytest.raises(CheckpointError) as error:
        load_retrieval_model(path, model="wti", num_hidden_layers=layers)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_missing_clip_weights_name_the_file_and_the_first_keys(tmp_path):
    def drop(state):
        for key in [k for k in state if k.startswith("clip.visual.transformer.resblocks.0.")][:7]:
            del state[key]
    path = checkpoint(tmp_path, drop)
    found = message(path)
    assert re.fullmatch(rf"{re.escape(str(path))}: lacks 7 CLIP weight\(s\) the model needs: "
                        r"(clip\.visual\.transformer\.resblocks\.0\.[\w.]+, ){5}\.\.\. \(7 in all\)", found), found


def test_changed_positional_embedding_is_blamed_on_itself(tmp_path):
    def shorten(state):
        state["clip.positional_embedding"] = state["clip.positional_embedding"][:13]
    path = checkpoint(tmp_path, shorten)
    assert message(path) == (f"{path}: clip.positional_embedding has shape (13, 64), expected (16, 64) as "
                             "frame_position_embeddings.weight in the same file, which starts as a copy of it")

    def narrow(state):
        state["clip.positional_embedding"] = state["clip.positional_embedding"][:, :60]
    path = checkpoint(tmp_path, narrow)
    assert message(path) == (f"{path}: clip.positional_embedding has shape (16, 60), the model expects (16, 64) "
                             "(from the file's other CLIP weights)")


def test_openai_file_with_missing_key_or_too_few_text_blocks(tmp_path):
    state = ClipBackbone(TINY).state_dict()
    path = tmp_path / "clip.pt"
    torch.save({k: v for k, v in state.items() if k != "logit_scale"}, path)
    assert message(path) == f"{path}: lacks 1 CLIP weight(s) the model needs: logit_scale"
    torch.save(state, path)
    assert message(path, layers=2).startswith(
        f"{path}: the 2-layer temporal transformer (--num_hidden_layers 2) starts from CLIP's first 2 text blocks, "
        "but the CLIP weights lack transformer.resblocks.1.")


def test_checkpoint_with_more_temporal_layers_than_clip_text_blocks_loads(tmp_path):
    # A model trained from scratch (--clip_arch) may have more temporal layers than CLIP text blocks.
    path = checkpoint(tmp_path, layers=2)
    model = load_retrieval_model(path, model="wti", num_hidden_layers=2)
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(value, saved[key]) for key, value in model.reference_state_dict().items())
