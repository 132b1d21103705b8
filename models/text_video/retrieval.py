"""Text-video retrieval model: CLIP backbone, temporal aggregation, interaction head."""
from __future__ import annotations

import torch
from torch import nn

from models.clip.adapter import ClipBackbone, ClipConfig, freeze_clip_layers
from models.text_video.interaction import build_interaction
from models.layers import init_reference_weights
from models.weights import CheckpointError, rename_keys
from models.text_video.temporal import SeqTransf, build_temporal
from models.losses import MAX_LOGIT_SCALE, symmetric_infonce

# Own parameter prefix -> the reference's. Released checkpoints use the reference's names.
WTI_REFERENCE_PREFIXES = {
    "temporal.frame_position_embeddings.": "frame_position_embeddings.",
    "temporal.transformer.": "transformerClip.",
    "interaction.text_weight_fc.": "text_weight_fc.",
    "interaction.video_weight_fc.": "video_weight_fc.",
}


class RetrievalModel(nn.Module):
    """CLIP features per word and per frame, temporal aggregation over frames, and a text-video interaction.

    `interaction`: "wti" (weighted token-wise), "meanmax" (token-wise with plain means) or "meanp" (sentence vs
    mean frame). `agg_module`: "seqTransf" or "meanP". `train_patch_embedding`: train CLIP's `visual.conv1`, which
    the reference keeps frozen.
    """

    reference_prefixes = WTI_REFERENCE_PREFIXES
    # The model contract (modules/engine/trainer.py): batch keys of training_losses, in order, and the backbone
    # whose parameters train at lr * coef_lr.
    input_keys = ("text_ids", "text_mask", "video", "video_mask")
    backbone_prefix = "clip."

    def __init__(self, clip_config: ClipConfig, interaction: str = "wti", agg_module: str = "seqTransf",
                 num_hidden_layers: int = 4, train_patch_embedding: bool = False):
        super().__init__()
        if clip_config.embed_dim != clip_config.text_width:
            # The temporal blocks and weight MLPs are text-width layers applied to embed_dim features.
            raise CheckpointError(f"CLIP embed_dim {clip_config.embed_dim} must equal its text width "
                             f"{clip_config.text_width} (true of every OpenAI ViT CLIP)")
        self.interaction_name = interaction
        self.clip = ClipBackbone(clip_config, train_patch_embedding)
        width = clip_config.text_width
        self.temporal = build_temporal(agg_module, width, num_hidden_layers, clip_config.text_heads,
                                       clip_config.context_length)
        self.interaction = build_interaction(interaction, width)
        self.temporal.apply(init_reference_weights)
        self.interaction.apply(init_reference_weights)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    @property
    def input_spec(self) -> dict[str, int]:
        """What the data pipeline must produce for this model: frames of `image_size` pixels square."""
        return {"image_size": self.clip.config.image_size}

    def freeze_backbone(self, freeze_layer_num: int) -> list[str]:
        """The reference's `--freeze_layer_num` on CLIP (see `freeze_clip_layers`); returns the frozen names."""
        return freeze_clip_layers(self.clip, freeze_layer_num)

    def after_optimizer_step(self) -> None:
        """CLIP's cap on the learnable temperature, applied after every step as the reference does."""
        with torch.no_grad():
            self.clip.logit_scale.clamp_(max=MAX_LOGIT_SCALE)

    def log_values(self) -> dict[str, float]:
        return {"logit_scale": self.logit_scale.exp().item()}

    @property
    def clip_copies(self) -> dict[str, str]:
        """Own weight -> the CLIP weight it starts as a copy of (`init_from_clip`): their shapes must agree."""
        if isinstance(self.temporal, SeqTransf):
            return {"temporal.frame_position_embeddings.weight": "positional_embedding"}
        return {}

    def init_from_clip(self, clip_state: dict, new_layers: bool = True) -> None:
        """Loads OpenAI CLIP weights and, with `new_layers`, starts the temporal transformer from CLIP's text
        blocks (a repository checkpoint brings its own: then the CLIP file need not have that many blocks)."""
        self.clip.load_state_dict(clip_state)
        if new_layers and isinstance(self.temporal, SeqTransf):
            self.temporal.init_from_clip(clip_state)

    def encode_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, Lw) ids and mask -> (B, Lw, D) per-token features."""
        return self.clip.encode_text_tokens(text_ids, text_mask).float()

    def encode_video(self, frames: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) frames and (B, F) mask -> (B, F, D) per-frame features after temporal aggregation."""
        batch, num_frames = frames.shape[:2]
        feats = self.clip.encode_frames(frames.flatten(0, 1)).float().view(batch, num_frames, -1)
        return self.temporal(feats, video_mask)

    def prepare_text(self, text: torch.Tensor, text_mask: torch.Tensor):
        """Per-caption work of the interaction head, done once per caption."""
        return self.interaction.prepare_text(text, text_mask)

    def prepare_video(self, video: torch.Tensor, video_mask: torch.Tensor):
        """Per-video work of the interaction head, done once per video."""
        return self.interaction.prepare_video(video, video_mask)

    def score(self, text_items, video_items) -> torch.Tensor:
        """(Nt, Nv) similarities from prepared items."""
        return self.interaction.score(text_items, video_items)

    def similarity(self, text: torch.Tensor, text_mask: torch.Tensor, video: torch.Tensor,
                   video_mask: torch.Tensor) -> torch.Tensor:
        """(Nt, Lw, D), (Nt, Lw), (Nv, F, D), (Nv, F) -> (Nt, Nv) similarities, text rows."""
        return self.score(self.prepare_text(text, text_mask), self.prepare_video(video, video_mask))

    def training_losses(self, text_ids: torch.Tensor, text_mask: torch.Tensor, frames: torch.Tensor,
                        video_mask: torch.Tensor, gather=None) -> dict[str, torch.Tensor]:
        """Symmetric InfoNCE over the global batch; `gather` concatenates a tensor over processes
        (gradient-correct), identity in one process. Returns {"total": loss}."""
        gather = gather or _identity
        text = gather(self.encode_text(text_ids, text_mask))
        video = gather(self.encode_video(frames, video_mask))
        sims = self.similarity(text, gather(text_mask), video, gather(video_mask))
        return {"total": symmetric_infonce(sims, self.logit_scale.exp())}

    forward = training_losses

    def reference_state_dict(self) -> dict:
        """The state dict under the reference's key names (what released checkpoints use)."""
        return rename_keys(self.state_dict(), self.reference_prefixes)

    def load_reference_state_dict(self, state_dict: dict) -> tuple[list[str], list[str]]:
        """Loads reference- or own-named weights; returns (missing, unexpected) keys in the reference's naming."""
        inverse = {new: old for old, new in self.reference_prefixes.items()}
        result = self.load_state_dict(rename_keys(state_dict, inverse), strict=False)
        missing = sorted(rename_keys(dict.fromkeys(result.missing_keys), self.reference_prefixes))
        return missing, sorted(result.unexpected_keys)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
