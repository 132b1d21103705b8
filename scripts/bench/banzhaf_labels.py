"""Banzhaf label generation: batched estimator vs a plain per-cell, per-sample loop, in one run.

Workload: 32 similarity maps of 24 words x 12 frames (with padding), 100 Monte-Carlo samples per cell,
definition="reference". The plain loop follows the reference's structure: for every cell, for every
sample, draw a coalition and evaluate the four coalition values for the whole batch of maps with
ordinary tensor ops. If the full loop would take more than --budget seconds, only the first cells are
run and the time is extrapolated (the output says so). Tiny tensor ops are slower with several
threads on some machines, so each side runs with whichever thread count is faster for it (both reported).
Agreement is checked per cell with a z-score: (plain - batched) / standard error, where the batched
side uses --check-factor times more samples (so it is nearly exact) and the standard error comes from the
plain loop's per-sample spread.
Usage: python -m scripts.bench.banzhaf_labels [--maps 32] [--words 24] [--frames 12] [--samples 100]
"""
from __future__ import annotations

import argparse
import time

import torch

from modules.banzhaf import SCALE, banzhaf_labels


def make_inputs(maps: int, words: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random masked maps (B,T,V), masks (B,T)/(B,V) with random lengths, softmaxed weights."""
    gen = torch.Generator().manual_seed(seed)
    text_len = torch.randint(words // 3, words + 1, (maps,), generator=gen)
    video_len = torch.randint(frames // 2, frames + 1, (maps,), generator=gen)
    text_mask = (torch.arange(words) < text_len[:, None]).float()
    video_mask = (torch.arange(frames) < video_len[:, None]).float()
    sim = torch.rand(maps, words, frames, generator=gen) * 0.7 - 0.2
    sim = sim * text_mask[:, :, None] * video_mask[:, None, :]
    text_weight = torch.randn(maps, words, generator=gen).masked_fill(text_mask == 0, -9e15).softmax(-1)
    video_weight = torch.randn(maps, frames, generator=gen).masked_fill(video_mask == 0, -9e15).softmax(-1)
    return sim, text_mask, video_mask, text_weight, video_weight


def plain_value(scores, text_keep, video_keep, text_weight, video_weight):
    """Game value of one coalition for every map: masked map, re-softmaxed weights, WTI score. (B,)"""
    masked = scores * text_keep[:, :, None] * video_keep[:, None, :]
    tw = torch.softmax(text_weight.masked_fill(text_keep == 0, -9e15), dim=-1)
    vw = torch.softmax(video_weight.masked_fill(video_keep == 0, -9e15), dim=-1)
    return ((masked.max(-1).values * tw).sum(-1) + (masked.max(-2).values * vw).sum(-1)) / 2


def plain_sample(scores, text_mask, video_mask, text_weight, video_weight, i, j, gen):
    """One draw of the reference's four-term difference for cell (i, j), every map: (B,)."""
    batch, words, frames = scores.shape
    text_keep = text_mask * (torch.rand(batch, words, generator=gen) > 0.5)
    video_keep = video_mask * (torch.rand(batch, frames, generator=gen) > 0.5)
    text_keep[:, i] = 0
    video_keep[:, j] = 0
    none = plain_value(scores, text_keep, video_keep, text_weight, video_weight)

    # the joint term: coalition map plus the single cell (i, j); weights softmaxed a second time
    cell_map = scores * text_keep[:, :, None] * video_keep[:, None, :]
    cell_map[:, i, j] = scores[:, i, j]
    tw = torch.softmax(text_weight.masked_fill(text_keep == 0, -9e15), dim=-1).masked_fill(text_keep == 0, -9e15)
    tw[:, i] = text_weight[:, i]
    vw = torch.softmax(video_weight.masked_fill(video_keep == 0, -9e15), dim=-1).masked_fill(video_keep == 0, -9e15)
    vw[:, j] = video_weight[:, j]
    tw, vw = torch.softmax(tw, dim=-1), torch.softmax(vw, dim=-1)
    joint = ((cell_map.max(-1).values * tw).sum(-1) + (cell_map.max(-2).values * vw).sum(-1)) / 2

    with_text = text_keep.clone()
    with_text[:, i] = 1
    own = plain_value(scores, with_text, video_keep, text_weight, video_weight)
    with_video = video_keep.clone()
    with_video[:, j] = 1
    other = plain_value(scores, text_keep, with_video, text_weight, video_weight)
    return joint - own - other + none


def plain_labels(inputs, samples: int, budget: float, max_cells: int | None = None, seed: int = 1):
    """Per-cell, per-sample loop. Returns (mean, std, cells done, seconds, extrapolated seconds)."""
    sim, text_mask, video_mask, text_weight, video_weight = inputs
    scores = sim * SCALE
    batch, words, frames = sim.shape
    gen = torch.Generator().manual_seed(seed)
    mean = torch.zeros(batch, words, frames)
    std = torch.zeros(batch, words, frames)
    cells = [(i, j) for i in range(words) for j in range(frames)][:max_cells]
    start = time.perf_counter()
    done = 0
    for i, j in cells:
        draws = torch.stack([plain_sample(scores, text_mask, video_mask, text_weight, video_weight, i, j, gen)
                             for _ in range(samples)])
        mean[:, i, j], std[:, i, j] = draws.mean(0), draws.std(0)
        done += 1
        elapsed = time.perf_counter() - start
        if done >= 4 and elapsed / done * words * frames > budget:
            break
    elapsed = time.perf_counter() - start
    valid = text_mask[:, :, None] * video_mask[:, None, :]
    return mean * valid, std * valid, done, elapsed, elapsed / done * words * frames


def time_batched(inputs, samples: int, repeat: int) -> float:
    """Best-of-`repeat` wall time of banzhaf_labels, after one warm-up call."""
    banzhaf_labels(*inputs, samples=samples, generator=torch.Generator().manual_seed(2))
    best = float("inf")
    for r in range(repeat):
        gen = torch.Generator().manual_seed(3 + r)
        start = time.perf_counter()
        banzhaf_labels(*inputs, samples=samples, generator=gen)
        best = min(best, time.perf_counter() - start)
    return best


def faster_threads(measure, candidates: list[int]) -> tuple[int, dict[int, float]]:
    """Run `measure()` (returns seconds) under each thread count; return the fastest and all timings."""
    timings = {}
    for threads in candidates:
        torch.set_num_threads(threads)
        timings[threads] = measure()
    return min(timings, key=timings.get), timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=32)
    parser.add_argument("--words", type=int, default=24)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds the plain loop may run before extrapolating")
    parser.add_argument("--check-factor", type=int, default=20, help="sample multiple of the batched reference mean")
    args = parser.parse_args()

    inputs = make_inputs(args.maps, args.words, args.frames)
    candidates = sorted({1, torch.get_num_threads()})
    print(f"{args.maps} maps of {args.words} words x {args.frames} frames, {args.samples} samples per cell")

    best_batched, batched_t = faster_threads(lambda: time_batched(inputs, args.samples, args.repeat), candidates)
    torch.set_num_threads(best_batched)
    batched_s = time_batched(inputs, args.samples, args.repeat)
    print(f"batched  : {batched_s:8.3f} s (best of {args.repeat}; {best_batched} threads; "
          + ", ".join(f"{k} threads {v:.3f} s" for k, v in batched_t.items()) + ")")

    def per_cell_seconds() -> float:
        return plain_labels(inputs, args.samples, float("inf"), max_cells=2)[3] / 2

    best_plain, plain_t = faster_threads(per_cell_seconds, candidates)
    torch.set_num_threads(best_plain)
    mean, std, done, plain_s, plain_full_s = plain_labels(inputs, args.samples, args.budget)
    total = args.words * args.frames
    threads_note = f"{best_plain} threads; per cell " + ", ".join(f"{k} threads {v:.3f} s" for k, v in plain_t.items())
    if done < total:
        print(f"plain    : {plain_s:8.3f} s for {done}/{total} cells; EXTRAPOLATED to all cells: "
              f"{plain_full_s:8.3f} s ({threads_note})")
    else:
        print(f"plain    : {plain_full_s:8.3f} s (all {total} cells; {threads_note})")
    print(f"speed-up : {plain_full_s / batched_s:8.1f}x")

    # agreement in distribution on the cells the loop covered
    check_samples = args.check_factor * args.samples
    precise = banzhaf_labels(*inputs, samples=check_samples, generator=torch.Generator().manual_seed(7))
    text_mask, video_mask = inputs[1], inputs[2]
    valid = (text_mask[:, :, None] * video_mask[:, None, :]).bool()
    covered = torch.zeros_like(valid)
    covered.view(args.maps, -1)[:, :done] = True
    sel = valid & covered
    se = std[sel] / args.samples ** 0.5                  # plain side; the batched side adds 1/check_factor of it
    z = (mean[sel] - precise[sel]) / (se * (1 + 1 / args.check_factor) ** 0.5).clamp_min(1e-9)
    diff = mean[sel] - precise[sel]
    # plain errors are independent across cells; the batched ones are counted as fully correlated within a
    # map (cells share its draws) and independent across maps; the two are added, which is conservative
    diff_se = (se.pow(2).sum() ** 0.5 / diff.numel() + se.mean() / args.check_factor ** 0.5 / args.maps ** 0.5)
    print(f"agreement: plain ({args.samples} samples/cell) vs batched ({check_samples} samples/cell) "
          f"on {int(sel.sum())} cells:")
    print(f"  mean label plain {float(mean[sel].mean()):.3f} vs batched {float(precise[sel].mean()):.3f}, "
          f"difference {float(diff.mean()):+.3f} (standard error {float(diff_se):.3f})")
    tail = 100 * float((z.abs() > 3).double().mean())
    print(f"  per-cell z: max |z| {float(z.abs().max()):.2f}, |z|>3 in {tail:.2f}% "
          f"(0.27% if normal; means of skewed draws have heavier tails)")


if __name__ == "__main__":
    main()
