"""HBI: weighted token-wise interaction at three levels (entity, action, event) with Banzhaf-interaction distillation.

Entity level: the WTI head on words and frames. Action level: each caption's and each video's tokens merged once
(`MergeStage`), scored by a second WTI head. Event level: the action tokens merged again, scored by a third head.
During training, each level also distils a frozen teacher estimator (the Banzhaf-interaction estimator) into its
own student estimator, and KL terms pull the action and event similarity rows towards the entity level.

Merging depends on one item only, so `prepare_text` / `prepare_video` do it once per item and `score` only
compares prepared tokens; that gives the same numbers as the reference, which re-merges every 32 x 32 block.
At evaluation only the levels that `rate` weighs are merged and scored (the paper's 1 0 0 needs no merging at all);
training always computes all three.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.clip.adapter import ClipConfig
from models.text_video.estimator import BanzhafEstimator
from models.text_video.hierarchy import MergeStage
from models.text_video.interaction import TokenInteraction, Tokens, paired_maps
from models.layers import init_reference_weights
from models.text_video.retrieval import WTI_REFERENCE_PREFIXES, RetrievalModel
from models.weights import CheckpointError, read_state_dict
from models.losses import softmax_kl, symmetric_infonce

LEVELS = ("entity", "action", "event")
# A rate that weighs every level: what training prepares, whatever the evaluation rate.
ALL_LEVELS = (1.0, 1.0, 1.0)
# Fixed in the reference: k nearest neighbours of the DPC-KNN density, attention heads of the merge blocks,
# channels of the estimators.
CLUSTER_NEIGHBOURS = 3
MERGE_HEADS = 8
ESTIMATOR_PLANES = 64


def _hbi_reference_prefixes() -> dict[str, str]:
    """Own parameter prefix -> the reference's, for every HBI weight."""
    prefixes = dict(WTI_REFERENCE_PREFIXES)
    for i in range(2):
        prefixes[f"text_stages.{i}.merge."] = f"t_ctm{i}."
        prefixes[f"text_stages.{i}.block."] = f"t_block{i}."
        prefixes[f"video_stages.{i}.merge."] = f"v_ctm{i}."
        prefixes[f"video_stages.{i}.block."] = f"v_block{i}."
        prefixes[f"merged_heads.{i}.text_weight_fc."] = f"text_weight_fc{i}."
        prefixes[f"merged_heads.{i}.video_weight_fc."] = f"video_weight_fc{i}."
    for i, name in enumerate(("banzhafmodel.", "banzhafmodel0.", "banzhafmodel1.")):
        prefixes[f"students.{i}."] = name
    prefixes["teacher."] = "banzhafteacher."
    return prefixes


@dataclass
class HierarchyItems:
    """Prepared captions or videos: Tokens at the entity, action and event levels (N items each); a level that
    was not computed (its weight and every later level's were zero) is None."""

    levels: tuple[Tokens, Tokens | None, Tokens | None]


def _reversed(x: torch.Tensor) -> torch.Tensor:
    """What the reference's `x.T` gives for a 3-D tensor under the PyTorch of its time: all dims reversed."""
    return x.permute(*range(x.dim() - 1, -1, -1))


class HBIModel(RetrievalModel):
    """CLIP + seqTransf features, three WTI levels over hierarchically merged tokens, Banzhaf distillation.

    `t_rate0`/`v_rate0`: fraction of text/video tokens kept as action-level clusters; `t_rate1`/`v_rate1`: the
    fraction of those kept at the event level. `kl`, `skl`: weights of the inter-level KL and of the distillation.
    `rate`: default level weights of `score`. `jitter`: the reference's random density noise in the clustering.
    `train_patch_embedding`: train CLIP's `visual.conv1` (frozen in the reference).
    """

    reference_prefixes = _hbi_reference_prefixes()
    # The retrieval reference zeroes student and teacher outputs at padded word/frame cells before the
    # distillation KL, so the student is not taught the teacher's values on padding (merged levels: all real).
    mask_distillation = True

    def __init__(self, clip_config: ClipConfig, agg_module: str = "seqTransf", num_hidden_layers: int = 4, *,
                 t_rate0: float = 0.25, t_rate1: float = 0.5, v_rate0: float = 0.25, v_rate1: float = 0.5,
                 kl: float = 0.2, skl: float = 1.0, rate: tuple[float, float, float] = (1.0, 0.0, 0.0),
                 jitter: bool = True, train_patch_embedding: bool = False):
        super().__init__(clip_config, "wti", agg_module, num_hidden_layers, train_patch_embedding)
        width = clip_config.text_width
        self.kl = kl
        self.skl = skl
        self.rate = _check_rate(rate)

        def stage(ratio: float) -> MergeStage:
            return MergeStage(width, ratio, CLUSTER_NEIGHBOURS, MERGE_HEADS, jitter)

        self.text_stages = nn.ModuleList([stage(t_rate0), stage(t_rate1)])
        self.video_stages = nn.ModuleList([stage(v_rate0), stage(v_rate1)])
        # Merged levels: every merged token is real, and the reference does not mask their weights.
        self.merged_heads = nn.ModuleList([TokenInteraction(width, mask_weights=False) for _ in range(2)])
        self.merged_heads.apply(init_reference_weights)
        self.students = nn.ModuleList([BanzhafEstimator(ESTIMATOR_PLANES) for _ in LEVELS])
        if not skl:  # no distillation: the students take no part in the loss (DDP must not wait for them)
            self.students.requires_grad_(False)
        self.teacher = BanzhafEstimator(ESTIMATOR_PLANES).requires_grad_(False)

    @property
    def heads(self) -> tuple[TokenInteraction, TokenInteraction, TokenInteraction]:
        """The WTI heads of the entity, action and event levels."""
        return (self.interaction, *self.merged_heads)

    @property
    def estimator(self) -> BanzhafEstimator:
        """The frozen teacher: (B, T, V) similarity maps -> (B, T, V) Banzhaf interactions."""
        return self.teacher

    def load_estimator(self, path: str | Path) -> None:
        """Loads estimator weights (keys `cnn1.*`, `bn.*`, `cnn2.*`, `Q`, `K`, `V`) into the teacher."""
        state = read_state_dict(path)
        expected = set(self.teacher.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise CheckpointError(f"{path}: not an estimator checkpoint (keys cnn1.*, bn.*, cnn2.*, Q, K, V); "
                                  f"missing: {', '.join(missing) or '-'}; unexpected: {', '.join(unexpected) or '-'}")
        try:
            self.teacher.load_state_dict(state)
        except RuntimeError as error:  # shape mismatch: a different number of planes
            raise CheckpointError(f"{path}: {str(error).splitlines()[-1].strip()}") from None

    def num_levels(self, rate: tuple[float, float, float] | None = None) -> int:
        """How many levels, entity first, scoring with `rate` (default: the model's) needs: 1, 2 or 3.
        Event tokens are merged from action tokens, so a weighted event level needs the action level too."""
        rate = self.rate if rate is None else _check_rate(rate)
        return 3 if rate[2] else 2 if rate[1] else 1

    def merge_levels(self, feats: torch.Tensor, mask: torch.Tensor, kind: str, depth: int = len(LEVELS)
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(N, L, D) features of "text" or "video" -> raw tokens of the entity (the input), action and event levels.
        Only the first `depth` levels are merged; the others are None (merging is most of the per-item work)."""
        if not 1 <= depth <= len(LEVELS):
            raise ValueError(f"depth {depth}: expected 1 (entity), 2 (+ action) or 3 (+ event)")
        stages = self.text_stages if kind == "text" else self.video_stages
        # Padded tokens feed the merging, as in the reference.
        action = stages[0](feats, mask) if depth >= 2 else None
        event = stages[1](action, None) if depth >= 3 else None
        return feats, action, event

    def level_tokens(self, levels: tuple[torch.Tensor | None, ...], mask: torch.Tensor, kind: str
                     ) -> HierarchyItems:
        """Raw tokens of the three levels (None: not computed) -> what each level's WTI head scores (None stays
        None); merged tokens are all real."""
        prepared = [getattr(self.interaction, f"prepare_{kind}")(levels[0], mask)]
        for head, tokens in zip(self.merged_heads, levels[1:]):
            if tokens is None:
                prepared.append(None)
                continue
            ones = torch.ones(tokens.shape[:2], dtype=mask.dtype, device=mask.device)
            prepared.append(getattr(head, f"prepare_{kind}")(tokens, ones))
        return HierarchyItems(tuple(prepared))

    def _prepare(self, feats: torch.Tensor, mask: torch.Tensor, kind: str,
                 rate: tuple[float, float, float] | None) -> HierarchyItems:
        return self.level_tokens(self.merge_levels(feats, mask, kind, self.num_levels(rate)), mask, kind)

    def prepare_text(self, text: torch.Tensor, text_mask: torch.Tensor,
                     rate: tuple[float, float, float] | None = None) -> HierarchyItems:
        """(N, Lw, D), (N, Lw) -> the caption's tokens at the levels that `rate` (default: the model's) needs,
        computed once per caption; the other levels are None."""
        return self._prepare(text, text_mask, "text", rate)

    def prepare_video(self, video: torch.Tensor, video_mask: torch.Tensor,
                      rate: tuple[float, float, float] | None = None) -> HierarchyItems:
        """(N, F, D), (N, F) -> the video's tokens at the levels that `rate` (default: the model's) needs,
        computed once per video; the other levels are None."""
        return self._prepare(video, video_mask, "video", rate)

    def score(self, text_items: HierarchyItems, video_items: HierarchyItems,
              rate: tuple[float, float, float] | None = None) -> torch.Tensor:
        """(Nt, Nv) = rate[0] * entity + rate[1] * action + rate[2] * event; levels of rate 0 are skipped.
        Raises ValueError when `rate` weighs a level that the items were prepared without."""
        rate = self.rate if rate is None else _check_rate(rate)
        total = None
        for name, weight, head, text, video in zip(LEVELS, rate, self.heads, text_items.levels,
                                                   video_items.levels):
            if not weight:
                continue
            if text is None or video is None:
                missing = "captions" if text is None else "videos"
                raise ValueError(f"rate {rate} weighs the {name} level, but the {missing} were prepared without "
                                 f"it: prepare them with this rate (prepare_text/prepare_video(..., rate=))")
            level = weight * head.score(text, video)
            total = level if total is None else total + level
        return total

    def similarity(self, text: torch.Tensor, text_mask: torch.Tensor, video: torch.Tensor,
                   video_mask: torch.Tensor, rate: tuple[float, float, float] | None = None) -> torch.Tensor:
        """(Nt, Lw, D), (Nt, Lw), (Nv, F, D), (Nv, F) -> (Nt, Nv) similarities, text rows; only the levels that
        `rate` weighs are computed."""
        return self.score(self.prepare_text(text, text_mask, rate), self.prepare_video(video, video_mask, rate), rate)

    def _distillation(self, student: BanzhafEstimator, maps: torch.Tensor, text_mask: torch.Tensor,
                      video_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, V) maps, (B, T) and (B, V) masks -> KL of the student's maps towards the frozen teacher's, over
        frames and, as the reference's `.T` on 3-D tensors did, over the batch axis of the reversed tensor.
        With `mask_distillation` both outputs are zeroed at padded cells first."""
        predicted = student(maps)
        with torch.no_grad():
            target = self.teacher(maps.detach())
        if self.mask_distillation:
            cells = text_mask[:, :, None].to(predicted.dtype) * video_mask[:, None, :].to(predicted.dtype)
            predicted, target = predicted * cells, target * cells
        return softmax_kl(predicted, target) + softmax_kl(_reversed(predicted), _reversed(target))

    def level_losses(self, text_items: HierarchyItems, video_items: HierarchyItems
                     ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """Per level the symmetric InfoNCE over the batch plus `skl` x the estimator distillation; also returns
        each level's (B, B) similarities."""
        # The reference uses exp of the raw parameter here; it clamps the parameter after each optimiser step.
        scale = self.clip.logit_scale.float().exp()
        losses, sims = {}, []
        for name, head, student, t, v in zip(LEVELS, self.heads, self.students, text_items.levels,
                                             video_items.levels):
            level_sims = head.score(t, v)
            sims.append(level_sims)
            losses[name] = symmetric_infonce(level_sims, scale)
            if self.skl:  # skl 0 trains without an estimator: the teacher is not run at all
                distilled = self._distillation(student, paired_maps(t, v), t.mask, v.mask)
                losses[name] = losses[name] + self.skl * distilled
        return losses, sims

    def training_losses(self, text_ids: torch.Tensor, text_mask: torch.Tensor, frames: torch.Tensor,
                        video_mask: torch.Tensor, gather=None) -> dict[str, torch.Tensor]:
        """{"total", "entity", "action", "event"}: the `level_losses`; `total` adds `kl` x the KL of the action
        and event rows and columns towards the entity level's.
        `gather` concatenates features and masks over processes before the hierarchy (identity in one process)."""
        gather = gather or (lambda x: x)
        text = gather(self.encode_text(text_ids, text_mask))
        video = gather(self.encode_video(frames, video_mask))
        # Every level is trained whatever the evaluation `rate`: prepare all three.
        losses, sims = self.level_losses(self.prepare_text(text, gather(text_mask), ALL_LEVELS),
                                         self.prepare_video(video, gather(video_mask), ALL_LEVELS))
        entity = sims[0]
        # Raw similarities (no logit scale), and the entity level is not detached: it receives gradient too.
        inter = sum(softmax_kl(s.T, entity.T) + softmax_kl(s, entity) for s in sims[1:])
        return {"total": sum(losses.values()) + self.kl * inter, **losses}

    forward = training_losses


def _check_rate(rate) -> tuple[float, float, float]:
    rate = tuple(float(r) for r in rate)
    if len(rate) != 3 or not any(rate):
        raise CheckpointError(f"--rate {' '.join(map(str, rate))}: expected three level weights (entity, action, "
                              f"event), not all zero")
    return rate
