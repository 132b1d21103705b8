"""Benchmark: all-pairs WTI or three-level HBI similarities from precomputed features.

Fast path: token weights and normalisation (and, for HBI, the action and event token merging) once per caption
and per video, then pairs scored in large chunks. Plain path (how the reference evaluates): a loop over 32 x 32
blocks of captions x videos that computes the similarity of each block from scratch, recomputing the per-item
work every time (WTI: the reference's formula as written there; HBI: all three levels of each block, merging
included, mixed by `--rate`). Both run in the same process; the script prints both times, the ratio and the
largest difference. For HBI it also times the fast path at `--rate` against the fast path at 1 1 1 on the same
inputs: levels of weight 0 are not computed (1 0 0 needs no merging), and prints that ratio too.
Fast paths are timed `--repeats` times (best kept); the plain loop once, and it dominates the run time (HBI at
the defaults on 2 threads: about 55 s of 75 s); smaller `--texts --videos` shorten it.

    python -m scripts.bench.eval_sims [--model wti|hbi --rate 1 1 1 --texts 1000 --videos 1000 --words 32
                                       --frames 12 --dim 512 --repeats 3]
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from models.clip.adapter import ClipConfig
from models.text_video.hbi import ALL_LEVELS, HBIModel
from models.text_video.interaction import TokenInteraction


def random_items(n: int, length: int, dim: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.randn(n, length, dim, generator=generator)
    lengths = torch.randint(length // 3, length + 1, (n,), generator=generator)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return feats, mask


def reference_similarity(head: TokenInteraction, t_feat, t_mask, v_feat, v_mask) -> torch.Tensor:
    """The reference's entity-level WTI for one block, as written there: weights, einsum, mask products."""
    t_w = torch.softmax(head.text_weight_fc(t_feat).squeeze(-1).masked_fill(t_mask == 0, -9e15), dim=-1)
    v_w = torch.softmax(head.video_weight_fc(v_feat).squeeze(-1).masked_fill(v_mask == 0, -9e15), dim=-1)
    t_feat = t_feat / t_feat.norm(dim=-1, keepdim=True)
    v_feat = v_feat / v_feat.norm(dim=-1, keepdim=True)
    maps = torch.einsum("atd,bvd->abtv", t_feat, v_feat)
    maps = torch.einsum("abtv,at->abtv", maps, t_mask.float())
    maps = torch.einsum("abtv,bv->abtv", maps, v_mask.float())
    t2v = torch.einsum("abt,at->ab", maps.max(dim=-1).values, t_w)
    v2t = torch.einsum("abv,bv->ab", maps.max(dim=-2).values, v_w)
    return (t2v + v2t) / 2.0


def wti_similarity(head: TokenInteraction, t_feat, t_mask, v_feat, v_mask) -> torch.Tensor:
    """Per-item work once, then all pairs in chunks."""
    return head.score(head.prepare_text(t_feat, t_mask), head.prepare_video(v_feat, v_mask))


def hbi_model(dim: int) -> HBIModel:
    """Random HBI heads of `dim` channels (a one-layer CLIP of that width, unused here); no density jitter, so
    both paths must agree exactly."""
    clip = ClipConfig(embed_dim=dim, image_size=32, patch_size=32, vision_width=64, vision_layers=1,
                      context_length=77, vocab_size=1000, text_width=dim, text_layers=1)
    return HBIModel(clip, num_hidden_layers=1, jitter=False).eval()


def reference_hbi_block(model: HBIModel, rate: tuple[float, float, float], t_feat, t_mask, v_feat, v_mask
                        ) -> torch.Tensor:
    """The reference's HBI for one block: merges and scores all three levels, then weighs them by `rate`."""
    text, video = model.prepare_text(t_feat, t_mask, ALL_LEVELS), model.prepare_video(v_feat, v_mask, ALL_LEVELS)
    return sum(w * head.score(t, v) for w, head, t, v in zip(rate, model.heads, text.levels, video.levels))


def plain_blocks(block_similarity, text, video, block: int) -> torch.Tensor:
    """The reference's evaluation loop: every block of captions x videos recomputes everything."""
    rows = []
    for i in range(0, len(text[0]), block):
        row = [block_similarity(text[0][i:i + block], text[1][i:i + block],
                                video[0][j:j + block], video[1][j:j + block])
               for j in range(0, len(video[0]), block)]
        rows.append(torch.cat(row, dim=1))
    return torch.cat(rows)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def best_of(fn, repeats: int):
    """(output, shortest time) of `repeats` runs: the least disturbed by other work on a shared machine."""
    runs = [timed(fn) for _ in range(max(1, repeats))]
    return runs[0][0], min(t for _, t in runs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("wti", "hbi"), default="wti")
    p.add_argument("--rate", type=float, nargs=3, default=(1.0, 1.0, 1.0),
                   help="HBI level weights (entity, action, event)")
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--videos", type=int, default=1000)
    p.add_argument("--words", type=int, default=32)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each fast path; the best is reported")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    rate = tuple(args.rate)
    if args.model == "wti":
        head = TokenInteraction(args.dim).eval()
        similarity, block_similarity = partial(wti_similarity, head), partial(reference_similarity, head)
    else:
        model = hbi_model(args.dim)
        similarity = partial(model.similarity, rate=rate)
        block_similarity = partial(reference_hbi_block, model, rate)
    text = random_items(args.texts, args.words, args.dim, g)
    video = random_items(args.videos, args.frames, args.dim, g)
    with torch.no_grad():
        similarity(text[0][:1], text[1][:1], *video)  # warm-up
        fast, t_fast = best_of(lambda: similarity(*text, *video), args.repeats)
        if args.model == "hbi":
            every_level = partial(model.similarity, rate=ALL_LEVELS)
            _, t_every = best_of(lambda: every_level(*text, *video), args.repeats)
        plain, t_plain = timed(lambda: plain_blocks(block_similarity, text, video, args.block))
    rate_name = " ".join(f"{r:g}" for r in rate)
    name = "WTI" if args.model == "wti" else f"HBI (rate {rate_name})"
    print(f"{args.texts} x {args.videos} {name} similarities, {args.words} words, {args.frames} frames, "
          f"{args.dim}-d, {torch.get_num_threads()} threads")
    print(f"  per-item once + chunked pairs : {t_fast:8.3f} s")
    print(f"  loop over {args.block} x {args.block} blocks    : {t_plain:8.3f} s")
    print(f"  speed-up: {t_plain / t_fast:.1f}x   max |difference|: {(fast - plain).abs().max().item():.2e}")
    if args.model == "hbi":
        print(f"  fast path, levels of rate {rate_name} only : {t_fast:8.3f} s")
        print(f"  fast path, all three levels (rate 1 1 1)  : {t_every:8.3f} s")
        print(f"  skipping levels of weight 0: {t_every / t_fast:.1f}x")


if __name__ == "__main__":
    main()
