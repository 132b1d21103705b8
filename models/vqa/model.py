"""HBI for video question answering (MSRVTT-QA): the HBI hierarchy plus one answer classifier per level.

The question plays the caption's part. At each level (entity, action, event) the question's tokens and the video's
tokens are pooled with learnt weights, projected, concatenated and classified over the answer vocabulary. Training
keeps HBI's question-video contrastive and distillation terms; answers are the levels' logits mixed by `rate`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.clip.adapter import ClipConfig
from models.text_video.hbi import LEVELS, HBIModel, _check_rate
from models.layers import init_reference_weights
from models.losses import softmax_kl

# The reference's QA model fixes these (retrieval makes them flags): text 32 -> 8 -> 1 tokens, video 12 -> 3 -> 1.
QA_MERGE_RATES = {"t_rate0": 0.25, "t_rate1": 0.125, "v_rate0": 0.25, "v_rate1": 0.25}
QA_LEVEL_WEIGHTS = (0.4, 0.4, 0.2)
# Each level's contrastive + distillation term is halved next to its answer cross-entropy, as in the reference.
RETRIEVAL_TERM_WEIGHT = 0.5


def _pooling_mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, 1))


def weighted_pool(tokens: torch.Tensor, mlp: nn.Module, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, L, D) tokens -> (B, D): sum of the tokens weighted by softmax(mlp(token)).

    The softmax runs over every position, padding included, and padded tokens are zeroed afterwards: the
    reference's pooling, which its released weights were trained with (padding takes weight, adds nothing).
    """
    weights = torch.softmax(mlp(tokens).squeeze(-1), dim=-1)
    if mask is not None:
        tokens = tokens * mask[..., None].to(tokens.dtype)
    return torch.einsum("bld,bl->bd", tokens, weights)


class AnswerHead(nn.Module):
    """One level's classifier: (B, Lt, D) question and (B, Lv, D) video tokens -> (B, num_answers) logits."""

    def __init__(self, width: int, num_answers: int, dropout: float = 0.1):
        super().__init__()
        self.t_weight = _pooling_mlp(width)
        self.v_weight = _pooling_mlp(width)
        self.t_proj = nn.Linear(width, 4 * width)
        self.v_proj = nn.Linear(width, 4 * width)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Sequential(nn.Linear(8 * width, 16 * width), nn.ReLU(inplace=True),
                                        nn.Linear(16 * width, num_answers))

    def forward(self, text: torch.Tensor, video: torch.Tensor, text_mask: torch.Tensor | None = None,
                video_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled_text = self.t_proj(weighted_pool(text, self.t_weight, text_mask))
        pooled_video = self.v_proj(weighted_pool(video, self.v_weight, video_mask))
        return self.classifier(self.dropout(torch.cat([pooled_video, pooled_text], dim=-1)))


def _qa_reference_prefixes() -> dict[str, str]:
    prefixes = dict(HBIModel.reference_prefixes)
    for i, suffix in enumerate(("", "0", "1")):
        for part in ("t_weight", "v_weight", "t_proj", "v_proj", "classifier"):
            prefixes[f"answer_heads.{i}.{part}."] = f"{part}{suffix}."
    return prefixes


class HBIQAModel(HBIModel):
    """HBI with answer heads. `rate`: weights of the entity, action and event answer logits at inference;
    `dropout`: before each classifier. Other options as `HBIModel`, with the QA model's merge rates."""

    reference_prefixes = _qa_reference_prefixes()
    input_keys = ("text_ids", "text_mask", "video", "video_mask", "answer")
    # The QA reference distils the estimators' outputs unmasked (padded cells included), unlike its retrieval.
    mask_distillation = False

    def __init__(self, clip_config: ClipConfig, num_answers: int, agg_module: str = "seqTransf",
                 num_hidden_layers: int = 4, *, kl: float = 0.2, skl: float = 1.0,
                 rate: tuple[float, float, float] = QA_LEVEL_WEIGHTS, dropout: float = 0.1, jitter: bool = True,
                 train_patch_embedding: bool = False, **merge_rates: float):
        rates = {**QA_MERGE_RATES, **merge_rates}
        super().__init__(clip_config, agg_module, num_hidden_layers, kl=kl, skl=skl, rate=rate, jitter=jitter,
                         train_patch_embedding=train_patch_embedding, **rates)
        if num_answers < 1:
            raise ValueError(f"num_answers must be positive, got {num_answers}")
        self.num_answers = num_answers
        width = clip_config.text_width
        self.answer_heads = nn.ModuleList([AnswerHead(width, num_answers, dropout) for _ in LEVELS])
        self.answer_heads.apply(init_reference_weights)

    def _level_logits(self, level: int, text: torch.Tensor, video: torch.Tensor, text_mask: torch.Tensor,
                      video_mask: torch.Tensor) -> torch.Tensor:
        """One level's (B, A) logits; only the entity level has padding, merged tokens are all real."""
        masks = (text_mask, video_mask) if level == 0 else (None, None)
        return self.answer_heads[level](text, video, *masks)

    def level_answer_logits(self, text_levels: tuple[torch.Tensor, ...], text_mask: torch.Tensor,
                            video_levels: tuple[torch.Tensor, ...], video_mask: torch.Tensor) -> list[torch.Tensor]:
        """Raw tokens of the three levels (`merge_levels`) of B question-video pairs -> three (B, A) logits."""
        return [self._level_logits(i, text, video, text_mask, video_mask)
                for i, (text, video) in enumerate(zip(text_levels, video_levels))]

    def answer_logits(self, text_levels: tuple[torch.Tensor | None, ...], text_mask: torch.Tensor,
                      video_levels: tuple[torch.Tensor | None, ...], video_mask: torch.Tensor,
                      rate: tuple[float, float, float] | None = None) -> torch.Tensor:
        """(B, A) = sum over levels of rate x logits. Levels of weight 0 are not run, and may be None (not merged:
        `merge_levels(..., depth=num_levels(rate))`). Evaluation merges each video once and indexes the result for
        its questions."""
        rate = self.rate if rate is None else _check_rate(rate)
        total = None
        for i, (name, weight, text, video) in enumerate(zip(LEVELS, rate, text_levels, video_levels)):
            if not weight:
                continue
            if text is None or video is None:
                raise ValueError(f"rate {rate} weighs the {name} level, but the "
                                 f"{'questions' if text is None else 'videos'} were merged without it")
            level = weight * self._level_logits(i, text, video, text_mask, video_mask)
            total = level if total is None else total + level
        return total

    def training_losses(self, text_ids: torch.Tensor, text_mask: torch.Tensor, frames: torch.Tensor,
                        video_mask: torch.Tensor, answer: torch.Tensor, gather=None) -> dict[str, torch.Tensor]:
        """{"total", "entity", "action", "event"}: per level 0.5 x (contrastive + `skl` x distillation) plus the
        answer cross-entropy; `total` adds `kl` x KL of the action and event answer logits towards the entity's.
        `gather` concatenates over processes (identity in one process): every process scores the global batch."""
        gather = gather or (lambda x: x)
        text = gather(self.encode_text(text_ids, text_mask))
        video = gather(self.encode_video(frames, video_mask))
        text_mask, video_mask, answer = gather(text_mask), gather(video_mask), gather(answer)
        text_levels = self.merge_levels(text, text_mask, "text")
        video_levels = self.merge_levels(video, video_mask, "video")
        retrieval, _ = self.level_losses(self.level_tokens(text_levels, text_mask, "text"),
                                         self.level_tokens(video_levels, video_mask, "video"))
        logits = self.level_answer_logits(text_levels, text_mask, video_levels, video_mask)
        losses = {name: RETRIEVAL_TERM_WEIGHT * retrieval[name] + F.cross_entropy(level.float(), answer)
                  for name, level in zip(LEVELS, logits)}
        # Not detached: the entity logits receive gradient from both terms, as in the reference.
        inter = softmax_kl(logits[1], logits[0]) + softmax_kl(logits[2], logits[0])
        return {"total": sum(losses.values()) + self.kl * inter, **losses}

    forward = training_losses
