"""Temporal aggregation of per-frame features: `seqTransf` and `meanP`."""
from __future__ import annotations

from functools import partial

import torch
from open_clip.transformer import LayerNorm, Transformer
from torch import nn

from models.layers import QuickGELU
from models.weights import CheckpointError

# The reference masks padded frames with a large finite number rather than -inf.
_FRAME_MASK_VALUE = -1_000_000.0
# The reference's temporal blocks use a BERT-style layer norm (eps 1e-12), unlike CLIP's (1e-5).
_LAYER_NORM_EPS = 1e-12


class SeqTransf(nn.Module):
    """CLIP-text-style residual blocks over frames, plus the residual to the input.

    Initialised (see `init_from_clip`) from the first `layers` CLIP text blocks and the text positional embedding,
    as the reference does.
    """

    def __init__(self, width: int, layers: int, heads: int, max_positions: int):
        super().__init__()
        self.heads = heads
        self.frame_position_embeddings = nn.Embedding(max_positions, width)
        self.transformer = Transformer(width, layers, heads, act_layer=QuickGELU,
                                       norm_layer=partial(LayerNorm, eps=_LAYER_NORM_EPS))

    def init_from_clip(self, clip_state: dict) -> None:
        """Copies the text positional embedding and the first text blocks of an OpenAI CLIP state dict."""
        own = self.transformer.state_dict()
        missing = [f"transformer.{key}" for key in own if f"transformer.{key}" not in clip_state]
        if missing:
            layers = len(self.transformer.resblocks)
            raise CheckpointError(f"the {layers}-layer temporal transformer (--num_hidden_layers {layers}) starts "
                                  f"from CLIP's first {layers} text blocks, but the CLIP weights lack "
                                  f"{missing[0]} ({len(missing)} weights): pass --num_hidden_layers at most "
                                  f"CLIP's number of text layers")
        with torch.no_grad():
            self.frame_position_embeddings.weight.copy_(clip_state["positional_embedding"])
            for key in own:
                own[key] = clip_state["transformer." + key].clone()
            self.transformer.load_state_dict(own)

    def forward(self, frames: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """(B, F, D) frame features, (B, F) mask -> (B, F, D)."""
        batch, num_frames, _ = frames.shape
        positions = self.frame_position_embeddings.num_embeddings
        if num_frames > positions:
            raise CheckpointError(f"{num_frames} frames (--max_frames) exceed the {positions} frame positions of "
                                  f"seqTransf (CLIP's context length): pass --max_frames {positions} or less")
        x = frames + self.frame_position_embeddings.weight[:num_frames]
        attn = (1.0 - video_mask.to(x.dtype))[:, None, :] * _FRAME_MASK_VALUE  # hide padded keys
        attn = attn.expand(batch, num_frames, num_frames).repeat_interleave(self.heads, dim=0)
        return self.transformer(x, attn_mask=attn) + frames


class MeanP(nn.Module):
    """No temporal modelling: frames stay as they are (the mean is taken by the interaction head)."""

    def forward(self, frames: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        return frames


# `--agg_module` names: name -> factory(width, layers, heads, max_positions).
TEMPORAL_MODULES = {
    "seqTransf": SeqTransf,
    "meanP": lambda width, layers, heads, max_positions: MeanP(),
}


def build_temporal(name: str, width: int, layers: int, heads: int, max_positions: int) -> nn.Module:
    if name not in TEMPORAL_MODULES:
        raise ValueError(f"--agg_module {name!r}: expected one of {', '.join(TEMPORAL_MODULES)}")
    return TEMPORAL_MODULES[name](width, layers, heads, max_positions)
