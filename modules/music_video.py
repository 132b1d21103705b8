"""Glue of music-video retrieval (BPVMR): the paper's flags, model, data sets, evaluators, selection and table.

Music-video clips come as pre-extracted features and beat tracks (dataloaders/music_video). M-V ranks the videos
for a music query (`m2v_*`, the paper's `--metric t2v`), V-M the music for a video query (`v2m_*`, `v2t`).
Training (which the paper never released) evaluates the validation split twice an epoch (`--evals_per_epoch 2`) and
keeps the best as `model_best.pth`, every epoch as `checkpoint-epoch<N>.pth` (the reference's names and format, so
its test commands find them); the final test uses the best weights and also reports QB-Norm with a querybank of
the training clips (`*_qbnorm`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from torch import nn

from dataloaders.music_video import MusicVideoDataset
from dataloaders.synthetic.music_video import generate_demo_music_video
from models import load_music_video_model
from models.music_video import build_music_video_model
from models.music_video.loading import load_reference_weights, read_music_video_state
from modules.engine.distributed import DistInfo, barrier
from modules.engine.flags import add_run_flags, add_train_flags, positive_float, positive_int, unit_interval
from modules.engine.provenance import provenance, write_json
from modules.engine.run import Evaluator, RunParts, Task
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection
from modules.engine.weight_files import WeightFiles
from modules.evaluation.metrics import ranking_table
from modules.evaluation.music_video import BEAT_WEIGHT, DIRECTIONS, both_directions, encode_sets, querybank_terms, \
    save_terms, test_terms
from modules.qbnorm import WEIGHTED_MODES, qb_norm_weighted

DATATYPES = ("music_dance", "music_motion")  # the paper's Data2 and Data1
ATTENTIONS = ("time", "batch")
BEAT_ORIENTATIONS = ("fixed", "reference")


# Result rows of the table: key suffix -> row label.
VARIANTS = {"": "", "_qbnorm": " + QB-Norm", "_reference_sum": " (the published sum)"}
METRIC_KEYS = ("R1", "R5", "R10", "MdR", "MnR")


def table(metrics: dict) -> str:
    """M-V and V-M, raw, with QB-Norm and scored as the published code sums the terms (when measured)."""
    rows = {}
    for direction in DIRECTIONS:
        for suffix, label in VARIANTS.items():
            values = {k: metrics[f"{direction}_{k}{suffix}"] for k in METRIC_KEYS
                      if f"{direction}_{k}{suffix}" in metrics}
            if values:
                rows[f"{direction}{label}"] = values
    return ranking_table(rows, columns=METRIC_KEYS)


# The reference trainer's files: {epoch, state_dict, optimizer}, the epoch 1-based.
WEIGHT_FILES = WeightFiles(best="model_best.pth", epoch="checkpoint-epoch{epoch}.pth", content="epoch_state_dict_optimizer")
TASK = Task(Selection("m2v_R1", summary_keys=("m2v_R1", "m2v_R5", "m2v_R10", "v2m_R1")), table, WEIGHT_FILES)


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("music-video data")
    g.add_argument("--datatype", default="music_dance", choices=DATATYPES,
                   help="music_dance (the paper's Data2) or music_motion (Data1); both use the same layout")
    g.add_argument("--videos_dir", default="data/Music-Dance", help="the published layout: train/val/test.txt, "
                   "video_feature/, music_feature/, video_beat/, music_beat/")
    g.add_argument("--exp_name", default="music_video", help="the run folder is outputs/<exp_name> unless "
                   "--output_dir is given")
    g.add_argument("--segments", default="even", choices=("even", "chunk"),
                   help="even: every segment its share of frames, beats binned by time; chunk: the reference's")
    g.add_argument("--num_frames", type=positive_int, default=30, help="segments per clip")
    g.add_argument("--music_dim", type=positive_int, default=768, help="width of the music features (BERT: 768)")
    g.add_argument("--video_dim", type=positive_int, default=512, help="width of the video features (CLIP: 512)")
    g.add_argument("--demo_data", default=None,
                   help="write the synthetic demo clips into this folder first (reused when complete)")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("music-video model")
    g.add_argument("--embed_dim", type=positive_int, default=256)
    g.add_argument("--num_layers", type=positive_int, default=6, help="music/video encoder layers")
    g.add_argument("--num_heads", type=positive_int, default=4)
    g.add_argument("--attention", default="time", choices=ATTENTIONS,
                   help="time: each clip attends over its own segments; batch: the reference's (across the clips "
                        "of a batch, so an embedding depends on its batch)")
    g.add_argument("--beat_orientation", default="fixed", choices=BEAT_ORIENTATIONS,
                   help="fixed: the beat term scores (music, video) pairs; reference: the published sum, whose "
                        "row a scores candidate b with video a (the query's own partner)")
    g.add_argument("--encoder_dropout", type=unit_interval, default=0.1,
                   help="dropout of the encoders (the reference's 0.1); it runs before the batch is gathered, so each "
                        "process draws the masks of its own clips and 1 and N processes train alike only at 0")
    g.add_argument("--init_model", default=None, help="weights to start from or evaluate (reference key names)")


def add_qbnorm_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("QB-Norm of the final test")
    g.add_argument("--qbnorm_k", type=positive_int, default=1)
    g.add_argument("--qbnorm_beta", type=positive_float, default=50.0)
    g.add_argument("--qbnorm_mode", default="mode1", choices=WEIGHTED_MODES,
                   help="mode1 normalises the weighted sum, mode2 each term, then sums")


def parser() -> argparse.ArgumentParser:
    """main_retrieval.py --datatype music_dance|music_motion: train and/or evaluate."""
    p = argparse.ArgumentParser(description="Train and evaluate music-video retrieval with beat tracks (BPVMR).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p)
    add_model_flags(p)
    add_qbnorm_flags(p)
    add_train_flags(p)
    add_run_flags(p)
    # The reference's names and defaults.
    p.add_argument("--num_epochs", dest="epochs", type=positive_int, default=argparse.SUPPRESS,
                   help="the reference's name of --epochs")
    p.add_argument("--noclip_lr", dest="lr", type=positive_float, default=argparse.SUPPRESS,
                   help="the reference's name of --lr")
    p.set_defaults(epochs=50, batch_size=32, lr=1e-5, evals_per_epoch=2, output_dir=None)
    return p


def resolve(cfg: argparse.Namespace) -> None:
    """The run folder of the reference, outputs/<exp_name>, unless --output_dir says otherwise."""
    if cfg.output_dir is None:
        cfg.output_dir = str(Path("outputs") / cfg.exp_name)


def build_model(cfg: argparse.Namespace) -> nn.Module:
    """--init_model's weights (sizes read off them) or a new model; the training loss uses --beat_orientation."""
    options = dict(attention=cfg.attention, num_heads=cfg.num_heads, num_segments=cfg.num_frames,
                   beat_orientation=cfg.beat_orientation, encoder_dropout=cfg.encoder_dropout)
    if cfg.init_model:
        return load_music_video_model(cfg.init_model, **options)
    return build_music_video_model(cfg.embed_dim, num_layers=cfg.num_layers, music_dim=cfg.music_dim,
                                   video_dim=cfg.video_dim, **options)


def dataset(cfg: argparse.Namespace, split: str, model: nn.Module) -> MusicVideoDataset:
    """The clips of `split`, with the feature widths `model` takes."""
    return MusicVideoDataset(cfg.videos_dir, split, segments=cfg.segments, num_segments=cfg.num_frames,
                             music_dim=model.music_linear.in_features, video_dim=model.video_linear.in_features)


def with_qbnorm(cfg, feature: np.ndarray, beat: np.ndarray, banks: dict) -> dict:
    """M-V and V-M metrics after QB-Norm (`*_qbnorm`); the test matrix is (music, video) in both directions."""
    out = {}
    for direction, transpose in DIRECTIONS.items():
        normalised = qb_norm_weighted(banks[direction], [feature, beat], [1.0, BEAT_WEIGHT], mode=cfg.qbnorm_mode,
                                      k=cfg.qbnorm_k, beta=cfg.qbnorm_beta, transpose=transpose)
        # Returned as (music, video) in both directions; V-M normalised the video rows of its transpose.
        out.update({k: v for k, v in both_directions(normalised, "_qbnorm").items() if k.startswith(direction)})
    return out


def describe(cfg: argparse.Namespace, evaluated: Path | None) -> dict:
    """Provenance of a result: the weights file this run trained and evaluated, else --init_model."""
    weights = {"init_model": cfg.init_model or None}
    if evaluated is not None:
        return provenance(weights, evaluated, trained_in_this_run=True)
    return provenance(weights, cfg.init_model)


def evaluator(cfg: argparse.Namespace, dist: DistInfo, split: str, output_dir: Path | None, model: nn.Module,
              qbnorm: bool = False, evaluated: dict | None = None) -> Evaluator:
    """Scores `split`; with `output_dir` saves the matrices and metrics_<split>.json; `qbnorm` adds QB-Norm.
    `evaluated["path"]`, once training has set it, names the weights file for the provenance."""
    clips = dataset(cfg, split, model)
    bank = dataset(cfg, "train", model) if qbnorm else None

    def run(model: nn.Module) -> dict | None:
        encoded = encode_sets(model, [clips, bank] if qbnorm else [clips], dist, cfg.batch_size_val, cfg.workers,
                              cfg.precision)
        if encoded is None:
            return None
        feature, beat = test_terms(model, encoded[0], cfg.beat_orientation)
        metrics = both_directions(feature + BEAT_WEIGHT * beat)
        if qbnorm:
            metrics.update(with_qbnorm(cfg, feature, beat, querybank_terms(model, encoded[1], encoded[0])))
            if cfg.beat_orientation == "fixed":  # the same model scored as the published code sums the terms
                metrics.update(both_directions(feature + BEAT_WEIGHT * beat.T, "_reference_sum"))
        if output_dir is not None:
            save_terms(output_dir, split, feature, beat)
            write_json(output_dir / f"metrics_{split}.json",
                       {**metrics, "provenance": describe(cfg, (evaluated or {}).get("path"))})
        return metrics
    return run


def build(cfg: argparse.Namespace, dist: DistInfo, log: RunLog, output_dir: Path) -> RunParts:
    if cfg.demo_data:
        if dist.is_main:
            made = generate_demo_music_video(cfg.demo_data)
            log.info(f"demo data in {cfg.demo_data}: " + ("reused the complete folder" if made["reused"] else
                     f"wrote {made['num_train']} training, {made['num_val']} validation, {made['num_test']} test "
                     "pairs"))
        barrier()
    model = build_model(cfg).to(dist.device)
    evaluated: dict[str, Path] = {}  # the weights file of the final test, once training ended
    validate = evaluator(cfg, dist, "val", None, model) if cfg.do_train else None
    test = evaluator(cfg, dist, "test", output_dir, model, qbnorm=True, evaluated=evaluated) if cfg.do_eval else None

    def load_best(net: nn.Module, best: dict) -> None:
        """The final test uses the weights validation selected (model_best.pth), as the paper's test commands do."""
        if best["epoch"] > 0:
            evaluated["path"] = output_dir / WEIGHT_FILES.best
            load_reference_weights(net, read_music_video_state(evaluated["path"])[1], str(evaluated["path"]))
        else:
            evaluated["path"] = output_dir / WEIGHT_FILES.of_epoch(cfg.epochs - 1)
            log.info("no best evaluation: the final test uses the last epoch's weights")

    def train_set() -> MusicVideoDataset:
        clips = dataset(cfg, "train", model)
        log.info(f"training on {len(clips)} music-video pairs of {cfg.videos_dir}")
        return clips
    return RunParts(model, train_set, validate=validate, test=test, after_training=load_best)
