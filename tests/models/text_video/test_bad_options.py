"""Model sizes and flags that no model can be built or run with stop with a one-line CheckpointError naming the flag
(the entry scripts print exactly that type without a traceback)."""
from __future__ import annotations

import pytest
import torch

from models.clip.adapter import ClipConfig
from models.text_video import build_retrieval_model
from models.weights import CheckpointError

TINY = dict(embed_dim=64, image_size=32, patch_size=16, vision_width=64, vision_layers=1, context_length=16,
            vocab_size=100, text_width=64, text_layers=1)


def test_rate_of_all_zeros():
    with pytest.raises(CheckpointError, match=r"^--rate 0.0 0.0 0.0: expected three level weights"):
        build_retrieval_model(ClipConfig(**TINY), "hbi", num_hidden_layers=1, rate=(0, 0, 0))


def test_clip_sizes_the_models_cannot_take():
    with pytest.raises(CheckpointError, match=r"CLIP embed_dim 32 must equal its text width 64"):
        build_retrieval_model(ClipConfig(**{**TINY, "embed_dim": 32}), "wti", num_hidden_layers=1)
    with pytest.raises(CheckpointError, match=r"text width 100 into 8 heads: the width must be a multiple of 8$"):
        build_retrieval_model(ClipConfig(**{**TINY, "embed_dim": 100, "text_width": 100}), "hbi",
                              num_hidden_layers=1)


@torch.no_grad()
def test_more_words_or_frames_than_the_model_has_positions():
    model = build_retrieval_model(ClipConfig(**TINY), "wti", num_hidden_layers=1).eval()
    ids = torch.ones(2, 20, dtype=torch.long)
    with pytest.raises(CheckpointError, match=r"^captions of 20 tokens \(--max_words\) do not fit CLIP's context "
                                              r"length 16: pass --max_words 16 or less$"):
        model.encode_text(ids, torch.ones_like(ids))
    frames, mask = torch.zeros(1, 17, 3, 32, 32), torch.ones(1, 17, dtype=torch.long)
    with pytest.raises(CheckpointError, match=r"^17 frames \(--max_frames\) exceed the 16 frame positions of "
                                              r"seqTransf \(CLIP's context length\): pass --max_frames 16 or less$"):
        model.encode_video(frames, mask)
