"""Glue of HAP-VR training (`main_hapvr.py`): the published flags (modules/video_video_flags.py), the training step,
the pair batches, the evaluation every --eval_step on a benchmark, the schedule and the checkpoints.

The run folder (`--experiment_path`) holds what every run holds (config.yaml, log.txt, metrics.jsonl, tensorboard/,
last.pt to resume) and the published checkpoints `{"args", "model"}`: model_epoch<N>.pth after every --eval_step
steps, model_best.pth for the best evaluation (`eval_mAP`: DSVR on FIVR, EVVE_mAP, SVD mAP). `--demo_data DIR`
writes synthetic videos there first and a benchmark of raw videos whose features the run's own extractor makes.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dataloaders.synthetic.moving_shapes import generate_moving_shapes
from dataloaders.video_video.augmentations import AugmentationOptions
from dataloaders.video_video.features import FeatureFile
from dataloaders.video_video.pairs import PairCollate, TrainingPairs
from models.video_video import HapvrConfig, HapvrLoss, HapvrNetwork
from models.video_video.dino import build_dino_teacher
from models.video_video.feature_extractor import build_region_extractor
from models.video_video.training import HapvrTrainingModel
from modules.benchmarks import Benchmark, canonical_name, load_benchmark
from modules.engine.config import plain
from modules.engine.distributed import DistInfo, barrier
from modules.engine.optim import AdamWSettings, WarmupCosineFloor
from modules.engine.run import RunParts, Task
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection
from modules.engine.weight_files import WeightFiles
from modules.evaluation.video_video import ScoreMatrix, ScoringOptions, score_feature_file
from modules import video_video_flags

parser, resolve, check = video_video_flags.parser, video_video_flags.resolve, video_video_flags.check

HEADLINE = {"fivr5k": "DSVR", "fivr200k": "DSVR", "evve": "EVVE_mAP", "svd": "mAP"}  # what eval_mAP is
TASK = Task(Selection("eval_mAP", summary_keys=("eval_mAP", "DSVR", "CSVR", "ISVR", "EVVE_mAP", "mAP")),
            weight_files=WeightFiles(best="model_best.pth", epoch="model_epoch{epoch}.pth", content="args_model"),
            adamw=AdamWSettings(betas=(0.9, 0.999), eps=1e-8, decay_every_parameter=True))  # torch's AdamW


class StepsOfPairs(Dataset):
    """An epoch of `length` samples (--eval_step steps of the global batch) drawn from the training videos: sample i
    is video i mod N at draw round i // N, so every sample of an epoch has its own windows and augmentations."""

    def __init__(self, pairs: TrainingPairs, length: int):
        self.pairs, self.length, self.epoch = pairs, length, 0
        self.rounds = -(-length // len(pairs))
        self.collate = _BatchDict(PairCollate(pairs.strong))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        videos = len(self.pairs)
        self.pairs.set_epoch(self.epoch * self.rounds + index // videos)
        return self.pairs[index % videos]


class _BatchDict:
    def __init__(self, collate: PairCollate):
        self.collate = collate

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        videos, labels = self.collate(samples)
        return {"videos": videos, "labels": labels}


def network_config(cfg: argparse.Namespace) -> HapvrConfig:
    rate = {"TopKChamfer": None, "Chamfer": 0.0}
    return HapvrConfig(dims=cfg.dims, attention=cfg.attention,
                       f_topk_rate=cfg.f_topk_rate if rate[cfg.f2f_sim_module] is None else 0.0,
                       v_topk_rate=cfg.v_topk_rate if rate[cfg.v2v_sim_module] is None else 0.0)


def build_model(cfg: argparse.Namespace) -> HapvrTrainingModel:
    extractor = build_region_extractor(cfg.resnet_path, cfg.pca_path, cfg.dims, random_init=cfg.random_init,
                                       seed=cfg.seed)
    wants_teacher = "TBInnerQuadLinearAP" in cfg.loss_selected
    teacher = build_dino_teacher(cfg.pretrained_DINO_path, cfg.DINO_arch, random_init=cfg.random_init,
                                 seed=cfg.seed) if wants_teacher else None
    loss = HapvrLoss(cfg.lambda_parameter, cfg.r_parameter, cfg.inner_parameter, qlap_sigma=cfg.qlap_sigma,
                     qlap_rho=cfg.qlap_rho, innerAP_qlap_sigma=cfg.innerAP_qlap_sigma,
                     innerAP_qlap_rho=cfg.innerAP_qlap_rho, temperature=cfg.temperature, selected=cfg.loss_selected)
    args = {k: plain(v) for k, v in vars(cfg).items()}
    return HapvrTrainingModel(HapvrNetwork(network_config(cfg)), extractor, teacher, loss, args, cfg.batch_sz_fe,
                              (cfg.pseudo_label_top_rate, cfg.pseudo_label_bottom_rate))


def read_frame_folder(folder: Path) -> torch.Tensor:
    """Every JPEG of a frame folder, in order: uint8 (T, 3, H, W) RGB."""
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.jpg"))]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


def extractor_fingerprint(model: HapvrTrainingModel) -> str:
    """sha256 of the frozen extractor's weights: demo features made by another extractor are not reused."""
    digest = hashlib.sha256()
    for key, value in model.extractor.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def write_demo_features(model: HapvrTrainingModel, root: Path, log: RunLog) -> Path:
    """The demo benchmark's raw videos through the run's frozen extractor into root/fivr_5k.hdf5 (once)."""
    path = root / "fivr_5k.hdf5"
    fingerprint = extractor_fingerprint(model)
    if path.is_file():
        with h5py.File(path, "r") as f:
            if f.attrs.get("extractor_sha256") == fingerprint:
                return path
        log.info(f"{path} holds another extractor's features: writing them again")
    device = next(model.network.parameters()).device
    folders = sorted(f for f in root.iterdir() if f.is_dir())
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["extractor_sha256"] = fingerprint
        for folder in folders:
            regions, _ = model.frozen_features(read_frame_folder(folder)[None].to(device))
            f.create_dataset(folder.name, data=regions[0].cpu().numpy())
    tmp.rename(path)
    log.info(f"demo benchmark: features of {len(folders)} videos written to {path}")
    return path


def prepare_demo(cfg: argparse.Namespace, model: HapvrTrainingModel, dist: DistInfo, log: RunLog) -> None:
    root = Path(cfg.demo_data)
    if dist.is_main:
        made = generate_moving_shapes(root, size=cfg.frame_sz)
        log.info(f"demo videos in {root}: " + ("reused" if made["reused"] else f"{made['num_train']} training "
                 f"videos, a benchmark of {made['num_queries']} queries"))
        write_demo_features(model, root / "eval", log)
    barrier()


def benchmark(cfg: argparse.Namespace) -> Benchmark | None:
    return load_benchmark(cfg.eval_dataset, cfg.eval_annotations) if cfg.eval_dataset else None


def evaluator(cfg: argparse.Namespace, bench: Benchmark, dist: DistInfo):
    """Scores the training model's similarity network on --eval_dataset from --eval_hdf5."""
    file = FeatureFile(cfg.eval_hdf5)
    headline = HEADLINE[canonical_name(cfg.eval_dataset)]

    def run(model: nn.Module) -> dict | None:
        network = model.network
        was_training = network.training
        scored = score_feature_file(network, file, bench.queries, bench.database, ScoringOptions(workers=0), dist)
        network.train(was_training)
        if not dist.is_main:
            return None
        metrics = {k: v for k, v in bench.evaluate(scored.similarities).items() if "/" not in k}
        return {**metrics, "eval_mAP": metrics[headline]}
    return run


def chance(bench: Benchmark, seed: int = 0, draws: int = 20, small: int = 10**6) -> dict:
    """The metrics of random scores: the mean of `draws` seeded draws, one draw beyond `small` (query, video)
    pairs (its spread is small there, and FIVR-200K has 22 million), each a float32 matrix, not a dict per pair."""
    rng = np.random.default_rng(seed)
    shape = (len(bench.queries), len(bench.database))
    runs = [bench.evaluate(ScoreMatrix(bench.queries, bench.database, rng.random(shape, dtype=np.float32)))
            for _ in range(draws if shape[0] * shape[1] <= small else 1)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0] if "/" not in k}


def final_test(cfg: argparse.Namespace, bench: Benchmark, validate, model: nn.Module, dist: DistInfo, log: RunLog):
    """The benchmark scored once before training and by random scores; the final test reports all three
    (`DSVR`, `DSVR_before`, `DSVR_chance` on FIVR)."""
    key = HEADLINE[canonical_name(cfg.eval_dataset)]
    before = validate(model)
    reference = chance(bench) if dist.is_main else {}
    if before is not None:
        log.info(f"before training: {TASK.selection.summary(before)}; random scores: {key} {reference[key]:.4g}")

    def test(net: nn.Module) -> dict | None:
        after = validate(net)
        return None if after is None else {**after, f"{key}_before": before[key], f"{key}_chance": reference[key]}
    return test


def build(cfg: argparse.Namespace, dist: DistInfo, log: RunLog, output_dir: Path) -> RunParts:
    model = build_model(cfg).to(dist.device)
    if cfg.demo_data:
        prepare_demo(cfg, model, dist, log)
    bench = benchmark(cfg)
    validate = evaluator(cfg, bench, dist) if bench is not None else None
    test = final_test(cfg, bench, validate, model, dist, log) if validate is not None else None

    def train_set() -> StepsOfPairs:
        flags = {**vars(cfg), "augmentations": ",".join(cfg.augmentations),
                 "lambda_viv": ",".join(map(str, cfg.lambda_viv))}
        options = AugmentationOptions.from_flags(flags)
        pairs = TrainingPairs.from_folders(cfg.dataset_path, options, seed=cfg.seed, percentage=cfg.percentage,
                                           resize=cfg.resize)
        log.info(f"training on {len(pairs)} videos of {cfg.dataset_path}: {cfg.eval_step} steps of "
                 f"{cfg.batch_size} clips an epoch, {cfg.epochs} epochs")
        return StepsOfPairs(pairs, cfg.eval_step * cfg.batch_size)

    def schedule(total_steps: int) -> WarmupCosineFloor:  # total_steps: --iter_epochs rounded up to whole epochs
        return WarmupCosineFloor(total_steps, cfg.warmup_iters, cfg.warmup_lr_init, cfg.final_lr)

    return RunParts(model, train_set, validate=validate, test=test, schedule=schedule)
