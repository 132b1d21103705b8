"""CLIP backbone built with open_clip from an OpenAI-format state dict.

The architecture is read off the tensor shapes, so ViT-B/32, B/16, L/14 and the tiny test models take the same
path. Text features are returned per token (final layer norm and text projection at every position); video frames
give their projected CLS feature.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from models.weights import CheckpointError

# Archives carry these bookkeeping entries beside the weights (TorchScript keeps the causal mask buffer).
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


@dataclass(frozen=True)
class ClipConfig:
    """Sizes of a ViT CLIP; `text_heads` follows OpenAI's rule of one head per 64 channels."""

    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int

    @property
    def text_heads(self) -> int:
        return max(1, self.text_width // 64)

    @property
    def vision_heads(self) -> int:
        return max(1, self.vision_width // 64)


def _count_blocks(state_dict: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)})


def clip_config_from_state_dict(state_dict: dict) -> ClipConfig:
    """Reads the model sizes off an OpenAI-format CLIP state dict (keys without the `clip.` prefix)."""
    required = ("visual.conv1.weight", "visual.positional_embedding", "text_projection",
                "positional_embedding", "token_embedding.weight", "ln_final.weight")
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise KeyError(f"not a ViT CLIP state dict: missing {', '.join(missing)}")
    conv = state_dict["visual.conv1.weight"]
    grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    return ClipConfig(
        embed_dim=state_dict["text_projection"].shape[1],
        image_size=conv.shape[-1] * grid,
        patch_size=conv.shape[-1],
        vision_width=conv.shape[0],
        vision_layers=_count_blocks(state_dict, "visual.transformer.resblocks."),
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        text_width=state_dict["ln_final.weight"].shape[0],
        text_layers=_count_blocks(state_dict, "transformer.resblocks."),
    )


class ClipBackbone(CLIP):
    """open_clip's CLIP with the two encoders the retrieval models need.

    Parameter names are OpenAI's (`visual.*`, `transformer.*`, `token_embedding.weight`, ...), so the state dict
    of this module is an OpenAI CLIP state dict. The patch embedding (`visual.conv1`) is frozen unless
    `train_patch_embedding`: the reference's CLIP never trains it, in retrieval and VQA alike.
    """

    def __init__(self, config: ClipConfig, train_patch_embedding: bool = False):
        vision = CLIPVisionCfg(layers=config.vision_layers, width=config.vision_width,
                               patch_size=config.patch_size, image_size=config.image_size)
        text = CLIPTextCfg(context_length=config.context_length, vocab_size=config.vocab_size,
                           width=config.text_width, heads=config.text_heads, layers=config.text_layers)
        super().__init__(config.embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=True)
        self.config = config
        # Set once here: load_state_dict copies values in place and leaves requires_grad as it is.
        self.visual.conv1.requires_grad_(train_patch_embedding)

    def encode_text_tokens(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids and mask -> (B, L, D) features.

        As in the reference, the transformer runs on the L given positions with an attention mask that is causal
        and also hides padded keys, so a padded position attends to the real tokens only.
        """
        batch, length = text_ids.shape
        if length > self.config.context_length:
            raise CheckpointError(f"captions of {length} tokens (--max_words) do not fit CLIP's context length "
                                  f"{self.config.context_length}: pass --max_words {self.config.context_length} "
                                  f"or less")
        x = self.token_embedding(text_ids) + self.positional_embedding[:length]
        causal = torch.full((length, length), float("-inf"), device=x.device).triu_(1)
        attn = causal.expand(batch, length, length).masked_fill((text_mask == 0)[:, None, :], float("-inf"))
        attn = attn.to(x.dtype).repeat_interleave(self.config.text_heads, dim=0)  # (B * heads, L, L)
        x = self.transformer(x, attn_mask=attn)
        return self.ln_final(x) @ self.text_projection

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised pixels -> (N, D) projected CLS features."""
        return self.encode_image(frames)


def strip_clip_state_dict(state_dict: dict) -> dict:
    """OpenAI CLIP weights as fp32 tensors, without the archive's bookkeeping entries."""
    return {k: v.float() for k, v in state_dict.items() if k not in _NON_WEIGHT_KEYS}


# CLIP's output layers: trained whatever --freeze_layer_num says.
_ALWAYS_TRAINED = ("ln_final.", "text_projection", "logit_scale", "visual.ln_post.", "visual.proj")


def freeze_clip_layers(clip: nn.Module, freeze_layer_num: int) -> list[str]:
    """The reference's `--freeze_layer_num N`: CLIP's transformer blocks below N and its embeddings (token,
    position, patch, class, ln_pre) stop training; blocks from N up and the output layers train. -1 freezes
    nothing more (the patch embedding stays as the model was built: frozen unless `train_patch_embedding`).
    Returns the names this call froze."""
    if freeze_layer_num < 0:
        return []
    frozen = []
    for name, param in clip.named_parameters():
        if name.startswith(_ALWAYS_TRAINED):
            continue
        if ".resblocks." in name and int(name.split(".resblocks.")[1].split(".")[0]) >= freeze_layer_num:
            continue
        param.requires_grad_(False)
        frozen.append(name)
    return frozen
