"""Banzhaf-interaction labels of word-frame similarity maps (the targets the HBI estimator learns).

The coalition game
------------------
One game per similarity map ``sim_map[b]`` (T words x V frames). The players are the T word positions and
the V frame positions; padded positions (mask 0) are dummy players that never join a coalition. For a
coalition S = (A words, C frames) let ``M_S`` be ``1000 * sim_map[b]`` with every entry outside A x C set
to 0 (the reference scales the map by 1000 first). Its value is the weighted token-wise interaction score

    v(S) = 1/2 * [ sum_{t in A} a_t * max_{v'} M_S[t, v'] + sum_{v in C} c_v * max_{t'} M_S[t', v] ],

with ``a = softmax(text_weight[A])`` and ``c = softmax(video_weight[C])`` (a softmax of the weights the
model passes, which are themselves already softmax outputs). The maxima run over all V (resp. T)
positions, so whenever a position is absent a 0 entry takes part in the max. v(S) = 0 if A or C is empty.

definition="standard" -- the textbook Banzhaf interaction index of this game for each pair (t, v):

    I(t, v) = 2^-(n-2) * sum_{S subset of N \\ {t, v}} [ v(S+t+v) - v(S+t) - v(S+v) + v(S) ]

definition="reference" -- the label of the HBI code: the same expectation over S (every player other than
t and v joins with probability 1/2), the same v(S+t), v(S+v), v(S), but the joint term v(S+t+v) is
replaced by a value w_tv(S) that differs in two ways:
  1. its map is ``M_S`` plus the single entry (t, v) = 1000 * sim_map[t, v]; the rest of row t and of
     column v stays 0 (in v(S+t+v) row t keeps its entries on C + v and column v its entries on A + t);
  2. its weights are a second softmax: the text weights are ``softmax([a_r for r in A] + [text_weight_t])``
     over A + t, i.e. the already renormalised weights of A mixed with the raw weight of t, and the same
     for frames with ``video_weight_v``; v(S+t+v) uses ``softmax(text_weight[A + t])``.
So I_ref(t, v) = E_S[ w_tv(S) - v(S+t) - v(S+v) + v(S) ]. Both definitions return 0 on padded cells.
This is the quantity pinned by ``banzhaf_reference_expectation.pt`` (the reference's expectation with every
coalition enumerated). The copy of ``HBI/models/banzhaf.py`` at jpthu17/HBI commit 8c522b5 differs from it:
its third term keeps t in the coalition (v(S+t+v)) and its sample loop overwrites instead of summing.

Estimation
----------
Both modes share one coalition (A', C') across all cells of a map: cell (t, v) uses S = (A' - t, C' - v),
which has exactly the distribution above, because the players other than t and v keep their independent
1/2 draws. Each cell's label is therefore an unbiased mean of ``samples`` draws, as in the reference, while
the noise of different cells of one map is correlated (the reference draws per cell). ``exact=True``
enumerates every (A', C'), which averages each S exactly four times. Sharing the draw makes every
term computable for all cells at once from the top-2 row/column maxima of the coalition's map, in
O(T*V*(T+V)) per draw instead of O((T*V)^2).
"""
from __future__ import annotations

from typing import Optional

import torch

SCALE = 1000.0  # the reference multiplies the similarity map by 1000 before building the game
MAX_EXACT_PLAYERS = 20
DEFINITIONS = ("reference", "standard")
_CHUNK_ELEMENTS = 1 << 22  # a chunk of K coalitions holds about K*B*(T*V + T^2 + V^2) elements per tensor


def _top2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Largest value, its index and the second largest value along the last dim of x (..., C).

    With C == 1 the second value is -inf.
    """
    top1, arg1 = x.max(dim=-1)
    rest = x.scatter(-1, arg1.unsqueeze(-1), float("-inf"))
    return top1, arg1, rest.max(dim=-1).values


def _max_without_column(x: torch.Tensor) -> torch.Tensor:
    """E[..., p, q] = max over columns q' != q of x[..., p, q'], for x of shape (..., R, C)."""
    top1, arg1, top2 = _top2(x)
    columns = torch.arange(x.shape[-1], device=x.device)
    return torch.where(arg1.unsqueeze(-1) == columns, top2.unsqueeze(-1), top1.unsqueeze(-1))


def _half_delta(scores: torch.Tensor, rows_in: torch.Tensor, cols_in: torch.Tensor, logit: torch.Tensor,
                definition: str) -> torch.Tensor:
    """One half (the row-weighted sum) of the four-term difference, for every cell and coalition.

    scores (B,R,C) scaled map; rows_in (K,B,R) and cols_in (K,B,C) coalition members (A', C');
    logit (B,R) the row weights as passed. Returns (K,B,R,C): for cell (p, q), with A = A' - p and
    C = C' - q, joint - own - other + none, where each term is the row half of the game value of
    (A, C) + cell/both, (A + p, C), (A, C + q), (A, C).
    The column half is the same function on the transposed map; their mean is the interaction.
    """
    member_map = scores * cols_in.unsqueeze(-2)          # (K,B,R,C): absent columns hold 0
    excl = _max_without_column(member_map)               # row max over C' - q, absent entries as 0
    row_max = excl.clamp_min(0.0)                        # coalition C' - q: column q is absent, so a 0 takes part
    row_max_plus = torch.maximum(excl, scores)           # coalition C' - q + q

    expw = torch.exp(logit - logit.amax(dim=-1, keepdim=True))            # (B,R); softmax is shift-free
    off_diag = ~torch.eye(rows_in.shape[-1], dtype=torch.bool, device=rows_in.device)
    in_a = rows_in.unsqueeze(-2) & off_diag                               # (K,B,p,r): r in A = A' - p
    weights_a = expw.unsqueeze(-2) * in_a                                 # (K,B,p,r)
    z = weights_a.sum(-1, keepdim=True)                                   # (K,B,p,1) summed directly, no cancellation
    expw_p = expw.unsqueeze(0).unsqueeze(-1)                              # (1,B,p,1) weight of p when it joins
    # the divisions are by (K,B,R,1) tensors: invert those once; a term over an empty A is 0
    inv_z = torch.where(z > 0, 1.0 / z, torch.zeros_like(z))
    inv_z_own = 1.0 / (z + expw_p)

    n_none = weights_a @ row_max                                          # sum over r in A of e_r * row_max[r, q]
    n_other = weights_a @ row_max_plus
    none_minus_other = (n_none - n_other) * inv_z
    own = (n_none + expw_p * row_max) * inv_z_own                         # p joins: its row max over C' - q
    if definition == "standard":
        joint = (n_other + expw_p * row_max_plus) * inv_z_own
    else:
        joint = _reference_joint(scores, in_a, weights_a * inv_z, row_max, logit)
    return joint - own + none_minus_other


def _reference_joint(scores: torch.Tensor, in_a: torch.Tensor, renorm: torch.Tensor, row_max: torch.Tensor,
                     logit: torch.Tensor) -> torch.Tensor:
    """Row half of the reference's joint term w_pq(S): the coalition map plus the single cell (p, q).

    Rows r in A keep their max over C' - q (row_max, (K,B,R,C)); row p holds only the cell, so its max is
    max(scores[p, q], 0) (just scores[p, q] when the map has one column). Weights: a second softmax over
    A + p of [softmax_A(logit)_r, logit_p]. in_a (K,B,p,r) says r is in A for p, renorm (K,B,p,r) is
    softmax_A(logit)_r (0 outside A), logit (B,R). Returns (K,B,R,C).
    """
    shift = logit.clamp_min(1.0).unsqueeze(0).unsqueeze(-1)                # renorm <= 1, so exponents stay <= 0
    second = torch.exp(renorm - shift) * in_a                             # (K,B,p,r), 0 outside A
    own = torch.exp(logit.unsqueeze(0).unsqueeze(-1) - shift)             # (1,B,p,1)
    cell = scores if scores.shape[-1] == 1 else scores.clamp_min(0.0)
    return (second @ row_max + own * cell) * (1.0 / (second.sum(-1, keepdim=True) + own))


def _interaction_sum(scores: torch.Tensor, text_in: torch.Tensor, video_in: torch.Tensor,
                     text_logit: torch.Tensor, video_logit: torch.Tensor, definition: str) -> torch.Tensor:
    """Sum over K coalitions of the interaction of every cell: (B,T,V).

    text_in (K,B,T), video_in (K,B,V) are the members of the shared coalition (A', C').
    """
    text_half = _half_delta(scores, text_in, video_in, text_logit, definition)
    video_half = _half_delta(scores.transpose(-1, -2), video_in, text_in, video_logit, definition)
    return 0.5 * (text_half.sum(0) + video_half.sum(0).transpose(-1, -2))


def _all_coalitions(num_players: int, device: torch.device) -> torch.Tensor:
    """Every subset of num_players players as rows of a bool matrix (2^n, n)."""
    codes = torch.arange(1 << num_players, device=device).unsqueeze(-1)
    return (codes >> torch.arange(num_players, device=device)) & 1 == 1


def _chunk_size(batch: int, num_text: int, num_video: int) -> int:
    """Coalitions per chunk so that the largest intermediate tensor stays near _CHUNK_ELEMENTS."""
    per_coalition = batch * num_text * num_video + batch * (num_text ** 2 + num_video ** 2)
    return max(1, _CHUNK_ELEMENTS // per_coalition)


def _check_inputs(sim_map: torch.Tensor, text_mask: torch.Tensor, video_mask: torch.Tensor,
                  text_weight: torch.Tensor, video_weight: torch.Tensor, definition: str, samples: int) -> None:
    """Raise ValueError on shapes or options the estimator cannot use."""
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    if sim_map.ndim != 3:
        raise ValueError(f"sim_map must be (batch, words, frames), got shape {tuple(sim_map.shape)}")
    b, t, v = sim_map.shape
    expected = {"text_mask": (b, t), "video_mask": (b, v), "text_weight": (b, t), "video_weight": (b, v)}
    given = {"text_mask": text_mask, "video_mask": video_mask, "text_weight": text_weight,
             "video_weight": video_weight}
    for name, shape in expected.items():
        if tuple(given[name].shape) != shape:
            raise ValueError(f"{name} must have shape {shape} to match sim_map {tuple(sim_map.shape)}, "
                             f"got {tuple(given[name].shape)}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")


@torch.no_grad()
def banzhaf_labels(sim_map: torch.Tensor, text_mask: torch.Tensor, video_mask: torch.Tensor,
                   text_weight: torch.Tensor, video_weight: torch.Tensor, exact: bool = False, samples: int = 100,
                   generator: Optional[torch.Generator] = None, definition: str = "reference") -> torch.Tensor:
    """Banzhaf-interaction label of every (word, frame) cell: (B,T,V) -> (B,T,V), on the x1000 scale.

    sim_map (B,T,V) word-frame similarities; text_mask (B,T) and video_mask (B,V) (nonzero = real token);
    text_weight (B,T) and video_weight (B,V) the weights the model passes (already softmax-normalised).
    exact=True enumerates all 2^(T+V) coalitions (T+V <= 20); otherwise ``samples`` Monte-Carlo draws per
    cell from ``generator`` (a torch.Generator; the global one if None). ``definition`` is "reference"
    (the HBI label) or "standard" (the textbook Banzhaf interaction index); see the module docstring.
    Padded cells are 0. The result has sim_map's dtype and device.
    """
    _check_inputs(sim_map, text_mask, video_mask, text_weight, video_weight, definition, samples)
    batch, num_text, num_video = sim_map.shape
    device, dtype = sim_map.device, sim_map.dtype
    scores = sim_map * SCALE
    text_valid, video_valid = text_mask.to(device) > 0, video_mask.to(device) > 0
    text_logit, video_logit = text_weight.to(device, dtype), video_weight.to(device, dtype)
    num_players = num_text + num_video
    chunk = _chunk_size(batch, num_text, num_video)

    if exact:
        if num_players > MAX_EXACT_PLAYERS:
            raise ValueError(f"exact Banzhaf labels enumerate 2^(T+V) coalitions; T+V = {num_text}+{num_video} = "
                             f"{num_players} players exceeds {MAX_EXACT_PLAYERS}: use exact=False (Monte-Carlo)")
        coalitions = _all_coalitions(num_players, device)
        total_draws = coalitions.shape[0]
    else:
        total_draws = samples

    total = torch.zeros_like(scores)
    for start in range(0, total_draws, chunk):  # chunks bound memory; each chunk is fully batched
        count = min(chunk, total_draws - start)
        if exact:
            bits = coalitions[start:start + count].unsqueeze(1).expand(count, batch, num_players)
        else:
            gen_device = generator.device if generator is not None else torch.device("cpu")
            draws = torch.rand((count, batch, num_players), generator=generator, device=gen_device)
            bits = (draws < 0.5).to(device)  # each player joins with probability 1/2
        text_in = bits[..., :num_text] & text_valid
        video_in = bits[..., num_text:] & video_valid
        total += _interaction_sum(scores, text_in, video_in, text_logit, video_logit, definition)

    labels = total / total_draws
    cell_valid = text_valid.unsqueeze(-1) & video_valid.unsqueeze(-2)
    return torch.where(cell_valid, labels, torch.zeros((), dtype=dtype, device=device))
