"""HAP-VR training throughput: iterations per second with features computed on the fly for the whole batch vs a
loop that augments and extracts one video at a time, in one run.

Workload: the synthetic moving-shapes training videos (dataloaders/synthetic/moving_shapes.py), batches of --batch
clips of --window frames at --size px, the full recipe (random-initialised ResNet-50 L3-iMAC + PCA, DINO ViT-S/16
teacher, all four losses), one optimiser step per iteration. Ours: the DataLoader of pair batches (--workers
processes) and one extractor / teacher call per --batch_sz_fe frames. Plain: in the main process, each clip's weak
and strong views are made and sent through the extractor and the teacher one video at a time, then the same
similarity-network step. Both start from the same weights and batches.
Usage: python -m scripts.bench.hapvr_train [--iterations 6] [--batch 8] [--window 8] [--size 64] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dataloaders.synthetic.moving_shapes import generate_moving_shapes
from dataloaders.video_video.augmentations import AugmentationOptions
from dataloaders.video_video.pairs import PairCollate, TrainingPairs
from models.video_video import HapvrLoss, HapvrNetwork
from models.video_video.dino import build_dino_teacher
from models.video_video.feature_extractor import build_region_extractor
from models.video_video.training import HapvrTrainingModel


def make_model(batch_sz_fe: int) -> tuple[HapvrTrainingModel, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = HapvrTrainingModel(HapvrNetwork(), build_region_extractor(random_init=True),
                               build_dino_teacher(random_init=True), HapvrLoss(), {}, batch_sz_fe)
    return model, torch.optim.AdamW(model.network.parameters(), lr=1e-4)


def step(model: HapvrTrainingModel, optimizer: torch.optim.Optimizer, videos: torch.Tensor,
         labels: torch.Tensor) -> float:
    loss = model(videos, labels)["total"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss)


def run_ours(pairs: TrainingPairs, args: argparse.Namespace) -> float:
    model, optimizer = make_model(args.batch_sz_fe)
    loader = DataLoader(pairs, batch_size=args.batch, shuffle=False, num_workers=args.workers,
                        collate_fn=PairCollate(pairs.strong), drop_last=True)
    batches = iter(loader)
    step(model, optimizer, *next(batches))  # warm-up: workers started, kernels chosen
    start = time.perf_counter()
    for _ in range(args.iterations):
        step(model, optimizer, *next(batches))
    return args.iterations / (time.perf_counter() - start)


def run_plain(pairs: TrainingPairs, args: argparse.Namespace) -> float:
    """One video at a time: its pair made in this process, each view through the frozen networks alone."""
    model, optimizer = make_model(args.batch_sz_fe)
    collate = PairCollate(pairs.strong)
    index = 0

    def one_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal index
        samples = [pairs[(index + i) % len(pairs)] for i in range(args.batch)]
        index += args.batch
        return collate(samples)

    original = model.frozen_features

    def per_video_features(videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [original(v[None]) for v in videos]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    model.frozen_features = per_video_features
    step(model, optimizer, *one_batch())
    start = time.perf_counter()
    for _ in range(args.iterations):
        step(model, optimizer, *one_batch())
    model.frozen_features = original
    return args.iterations / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--batch", type=int, default=8, help="clips per iteration (2x videos)")
    p.add_argument("--window", type=int, default=8, help="frames per clip")
    p.add_argument("--size", type=int, default=64, help="frame side")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch_sz_fe", type=int, default=512)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        generate_moving_shapes(tmp, num_train=(args.iterations + 1) * args.batch, num_queries=1, per_label=1,
                               num_distractors=1, frames=2 * args.window, size=args.size)
        options = AugmentationOptions(window_sz=args.window, frame_sz=args.size)
        pairs = TrainingPairs.from_folders(Path(tmp) / "train", options, seed=0, resize=args.size)
        ours = run_ours(pairs, args)
        plain = run_plain(pairs, args)
    print(f"threads {torch.get_num_threads()}; {args.batch} clips x 2 views x {args.window} frames at {args.size} px "
          f"an iteration")
    print(f"ours (DataLoader with {args.workers} workers, batched extraction): {ours:.3f} it/s")
    print(f"plain (one video at a time): {plain:.3f} it/s")
    print(f"ratio: {ours / plain:.2f}x")
    summary = {"ours_it_per_s": ours, "plain_it_per_s": plain, "ratio": ours / plain, **vars(args)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
