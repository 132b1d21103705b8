"""Text-video interaction heads: weighted token-wise (WTI), mean-max, and mean pooling.

Every head splits the work into a per-item part (`prepare_text`, `prepare_video`: weights, normalisation, pooling),
done once per caption and once per video, and a per-pair part (`score`), done in chunks of rows so memory stays
bounded whatever the gallery size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.layers import token_weight_mlp

# The reference fills masked token logits with -9e15 before the softmax.
_MASKED_LOGIT = -9e15
# Upper bound on the elements of one (rows, Lt, videos, Lv) block of token similarities.
_BLOCK_ELEMENTS = 2 ** 23  # 32 MB of fp32: small enough to stay cache-friendly
# Fewest captions or videos of one group in the length-bucketed scoring: smaller groups make GEMMs inefficient.
_MIN_GROUP = 32


@dataclass
class Tokens:
    """Items ready for scoring: unit-norm token features (N, L, D), mask (N, L), token weights (N, L) or None."""

    feats: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor | None = None

    def __getitem__(self, rows: slice) -> "Tokens":
        weights = None if self.weights is None else self.weights[rows]
        return Tokens(self.feats[rows], self.mask[rows], weights)

    def __len__(self) -> int:
        return self.feats.shape[0]


def masked_softmax_weights(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(N, L) token logits -> (N, L) weights in the logits' dtype; masked tokens get -9e15 first, as in the
    reference. The fill and the softmax run in fp32 whatever the input (-9e15 does not fit in fp16, which
    autocast gives the weight MLP); in fp32 that is the reference's computation unchanged."""
    weights = logits.float()
    if mask is not None:
        weights = weights.masked_fill(mask == 0, _MASKED_LOGIT)
    return torch.softmax(weights, dim=-1).to(logits.dtype)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def paired_maps(text: Tokens, video: Tokens) -> torch.Tensor:
    """Word-frame cosine maps of the true pairs (caption i with video i): (B, T, V), padded tokens zeroed."""
    maps = torch.einsum("btd,bvd->btv", text.feats, video.feats)
    return maps * text.mask[:, :, None].to(maps.dtype) * video.mask[:, None, :].to(maps.dtype)


def _pair_maps(text: Tokens, video: Tokens) -> torch.Tensor:
    """(Nt, Lt, Nv, Lv) token similarities as one GEMM; padded tokens are zero vectors, so their sims are 0."""
    nt, lt, dim = text.feats.shape
    nv, lv, _ = video.feats.shape
    return (text.feats.reshape(nt * lt, dim) @ video.feats.reshape(nv * lv, dim).T).view(nt, lt, nv, lv)


def _wti_block(text: Tokens, video: Tokens, weighted: bool, text_padded: torch.Tensor | None = None,
               video_padded: torch.Tensor | None = None) -> torch.Tensor:
    """(Nt, Nv) scores of a block. `*_padded` (bool per item) mark items whose padding was trimmed away: the
    reference's maxima see the zeros of padded tokens, so for those items they are at least 0."""
    maps = _pair_maps(text, video)
    t2v = maps.amax(dim=3)  # (Nt, Lt, Nv): best frame for each word
    v2t = maps.amax(dim=1)  # (Nt, Nv, Lv): best word for each frame
    if video_padded is not None:
        t2v = torch.where(video_padded[None, None, :], t2v.clamp_min(0), t2v)
    if text_padded is not None:
        v2t = torch.where(text_padded[:, None, None], v2t.clamp_min(0), v2t)
    if weighted:
        t2v = torch.einsum("atb,at->ab", t2v, text.weights)
        v2t = torch.einsum("abv,bv->ab", v2t, video.weights)
    else:
        t2v = t2v.sum(1) / text.mask.sum(-1, keepdim=True).to(t2v.dtype)
        v2t = v2t.sum(-1) / video.mask.sum(-1)[None, :].to(v2t.dtype)
    return (t2v + v2t) / 2.0


def _is_prefix(mask: torch.Tensor) -> bool:
    """True when every row's real tokens come first (padding only at the end)."""
    lengths = mask.sum(1, keepdim=True)
    return bool(((torch.arange(mask.shape[1], device=mask.device)[None] < lengths) == (mask != 0)).all())


def _trimmed(tokens: Tokens, rows: torch.Tensor, length: int) -> Tokens:
    weights = None if tokens.weights is None else tokens.weights[rows, :length]
    return Tokens(tokens.feats[rows, :length], tokens.mask[rows, :length], weights)


def _length_groups(lengths: torch.Tensor, min_size: int) -> list[torch.Tensor]:
    """Item indices sorted by length and split where the length changes, so that a group trimmed to its longest
    item carries no padding; runs shorter than `min_size` join the next (a short last run the previous one), so
    that many distinct lengths do not make many tiny blocks."""
    order = lengths.argsort(stable=True)
    sizes, run = [], 0
    for count in torch.unique_consecutive(lengths[order], return_counts=True)[1].tolist():
        run += count
        if run >= min_size:
            sizes.append(run)
            run = 0
    if run:
        if sizes:
            sizes[-1] += run
        else:
            sizes.append(run)
    return list(order.split(sizes))


def length_bucketed_scores(text: Tokens, video: Tokens, weighted: bool, min_group: int = _MIN_GROUP
                           ) -> torch.Tensor:
    """(Nt, Nv) WTI scores computed on real tokens only: captions and videos grouped by length
    (`_length_groups`), caption groups cut into chunks of bounded memory, every block trimmed to its longest item.
    Same numbers as the padded computation (padded tokens carry zero weight), with far fewer multiply-adds when
    captions are short; the scoring is matrix-multiply bound, so trimmed padding is time saved."""
    text_len, video_len = text.mask.sum(1), video.mask.sum(1)
    text_padded, video_padded = text_len < text.mask.shape[1], video_len < video.mask.shape[1]
    out = text.feats.new_empty(len(text), len(video))
    text_groups = _length_groups(text_len, min_group)
    for group in _length_groups(video_len, min_group):
        # At least one position: a group of empty items keeps one zero token (scores 0, as padded).
        frames = _trimmed(video, group, max(1, int(video_len[group].max())))
        for captions in text_groups:
            length = max(1, int(text_len[captions].max()))
            rows = max(1, _BLOCK_ELEMENTS // max(1, len(group) * frames.feats.shape[1] * length))
            for chunk in captions.split(rows):
                words = _trimmed(text, chunk, max(1, int(text_len[chunk].max())))
                block = _wti_block(words, frames, weighted, text_padded[chunk], video_padded[group])
                out[chunk[:, None], group[None, :]] = block.to(out.dtype)  # autocast gives half-precision blocks
    return out


def chunked_scores(text: Tokens, video: Tokens, block_fn, tokens_per_pair: int) -> torch.Tensor:
    """Applies `block_fn(text_rows, video)` over chunks of text rows; (Nt, Nv)."""
    rows = max(1, _BLOCK_ELEMENTS // max(1, len(video) * tokens_per_pair))
    if rows >= len(text):
        return block_fn(text, video)
    return torch.cat([block_fn(text[i:i + rows], video) for i in range(0, len(text), rows)])


class TokenInteraction(nn.Module):
    """WTI (`weighted=True`): weighted sum over words of their best frame and over frames of their best word,
    averaged over both directions. Mean-max (`weighted=False`): the same with plain means over real tokens."""

    def __init__(self, width: int, weighted: bool = True, mask_weights: bool = True):
        super().__init__()
        self.weighted = weighted
        # The entity level masks padded tokens before the weight softmax; the merged levels of HBI do not.
        self.mask_weights = mask_weights
        if weighted:
            self.text_weight_fc = token_weight_mlp(width)
            self.video_weight_fc = token_weight_mlp(width)

    def _prepare(self, feats: torch.Tensor, mask: torch.Tensor, mlp: nn.Module | None,
                 weights: torch.Tensor | None = None) -> Tokens:
        if not self.weighted:
            weights = None
        elif weights is None:
            weights = masked_softmax_weights(mlp(feats).squeeze(-1), mask if self.mask_weights else None)
        # Zero vectors at padded positions: every similarity with them is 0, as the reference's masking makes it.
        unit = normalise(feats).masked_fill(mask[..., None] == 0, 0.0)
        return Tokens(unit, mask, weights)

    def prepare_text(self, feats: torch.Tensor, mask: torch.Tensor) -> Tokens:
        """(N, Lt, D), (N, Lt) -> Tokens."""
        return self._prepare(feats, mask, getattr(self, "text_weight_fc", None))

    def prepare_video(self, feats: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> Tokens:
        """(N, Lv, D), (N, Lv) -> Tokens; `weights` (N, Lv): the frame weights this head computed before (a search
        index stores them), used instead of running the weight MLP again."""
        return self._prepare(feats, mask, getattr(self, "video_weight_fc", None), weights)

    def score(self, text: Tokens, video: Tokens) -> torch.Tensor:
        """(Nt, Nv) similarities, text rows."""
        # Padded tokens can be skipped only where their weight is zero (masked softmax) and padding is trailing.
        if self.mask_weights and _is_prefix(text.mask) and _is_prefix(video.mask):
            return length_bucketed_scores(text, video, self.weighted)
        tokens_per_pair = text.feats.shape[1] * video.feats.shape[1]
        return chunked_scores(text, video, lambda t, v: _wti_block(t, v, self.weighted), tokens_per_pair)


class MeanPooling(nn.Module):
    """CLIP4Clip's meanP: the caption's end-of-text feature against the mean of the video's frames (cosine)."""

    def prepare_text(self, feats: torch.Tensor, mask: torch.Tensor) -> Tokens:
        end = mask.sum(-1).long() - 1
        sentence = feats[torch.arange(feats.shape[0], device=feats.device), end]
        return Tokens(normalise(sentence)[:, None], mask[:, :1])

    def prepare_video(self, feats: torch.Tensor, mask: torch.Tensor) -> Tokens:
        m = mask.to(feats.dtype)[..., None]
        mean = (feats * m).sum(1) / m.sum(1).clamp_min(1.0)
        return Tokens(normalise(mean)[:, None], mask[:, :1])

    def score(self, text: Tokens, video: Tokens) -> torch.Tensor:
        return text.feats[:, 0] @ video.feats[:, 0].T


# `--model` names of the single-level heads: name -> factory(width).
INTERACTIONS = {
    "wti": lambda width: TokenInteraction(width, weighted=True),
    "meanp": lambda width: MeanPooling(),
    "meanmax": lambda width: TokenInteraction(width, weighted=False),
}


def build_interaction(name: str, width: int) -> nn.Module:
    if name not in INTERACTIONS:
        raise ValueError(f"interaction {name!r}: expected one of {', '.join(INTERACTIONS)}")
    return INTERACTIONS[name](width)
