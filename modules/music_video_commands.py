"""The music-video paper's evaluation commands, as published:

    python test.py --exp_name=Data2 --videos_dir=./data/Music-Dance --load_epoch -1 --use_beat --mode double_loss \
        [--metric v2t]
    python test_qb_norm.py --exp_name=Data2 --videos_dir=./data/Music-Dance --load_epoch -1 --use_beat \
        --mode double_loss [--metric v2t] --qbnorm_mode mode1 [--querybank_dir checkout]

`--metric t2v` is M-V (music queries), `v2t` V-M. The checkpoint is outputs/<exp_name>/model_best.pth
(`--load_epoch -1` or 0) or checkpoint-epoch<N>.pth (`--load_epoch N`), the files the reference's trainer and
this repository's training (`main_retrieval.py --datatype music_dance`) write. Each prints the paper's lines
(R@1, R@5, R@10, MedR, MeanR), saves the matrices and metrics in --output_dir (default outputs/<exp_name>) and,
last, one JSON line.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.weights import CheckpointError
from modules import music_video
from modules.engine.config import parse_with_config
from modules.engine.distributed import cleanup, init_distributed, seed_everything
from modules.engine.errors import set_debug
from modules.engine.flags import add_run_flags
from modules.engine.provenance import provenance, write_json
from modules.engine.run_folder import prepare
from modules.evaluation.music_video import BEAT_WEIGHT, both_directions, encode_sets, querybank_terms, save_terms, \
    test_terms
from modules.qbnorm import load_sims

METRICS = {"t2v": "m2v", "v2t": "v2m"}  # the paper's --metric -> this repository's direction
PAPER_LINES = (("R@1", "R1"), ("R@5", "R5"), ("R@10", "R10"), ("MedR", "MdR"), ("MeanR", "MnR"))


def is_music_video_command(argv: list[str]) -> bool:
    """The published commands name --exp_name or --videos_dir (the text-video ones never do)."""
    return any(a.split("=")[0] in ("--exp_name", "--videos_dir") for a in argv)


def parser(qbnorm: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    music_video.add_data_flags(p)
    g = p.add_argument_group("the paper's flags")
    g.add_argument("--load_epoch", type=int, default=None, help="-1 or 0: model_best.pth; N: checkpoint-epochN.pth")
    g.add_argument("--use_beat", action="store_true", help="the beat-track model (the only one there is)")
    g.add_argument("--mode", default=None, help="double_loss (the only training mode there is)")
    g.add_argument("--metric", default="t2v", choices=list(METRICS), help="t2v: M-V; v2t: V-M")
    g.add_argument("--init_model", default=None, help="a weights file instead of --exp_name/--load_epoch")
    g.add_argument("--attention", default="time", choices=music_video.ATTENTIONS)
    g.add_argument("--beat_orientation", default="fixed", choices=music_video.BEAT_ORIENTATIONS)
    if qbnorm:
        music_video.add_qbnorm_flags(p)
        g.add_argument("--querybank_dir", type=Path, default=None, help="read the official querybank files "
                       "<exp_name>_<m2v|v2m>_train_<feature|beat>_sims.pt from here instead of scoring the "
                       "training split")
    add_run_flags(p)
    p.set_defaults(output_dir=None)
    return p


def checkpoint(cfg: argparse.Namespace) -> Path:
    """The weights file the paper's flags name; stops when there is none (never random weights)."""
    if cfg.init_model:
        return Path(cfg.init_model)
    if cfg.load_epoch is None:
        raise SystemExit("pass --load_epoch (-1 or 0: the best epoch; N: epoch N) or --init_model: there is no "
                         "model to evaluate otherwise")
    files = music_video.WEIGHT_FILES
    path = Path("outputs") / cfg.exp_name / (files.best if cfg.load_epoch <= 0 else files.of_epoch(cfg.load_epoch - 1))
    if not path.is_file():
        raise CheckpointError(f"no checkpoint for --exp_name {cfg.exp_name} --load_epoch {cfg.load_epoch}: {path} "
                              "does not exist")
    return path


def parse(argv: list[str] | None, qbnorm: bool) -> argparse.Namespace:
    cfg = parse_with_config(parser(qbnorm), argv)
    set_debug(cfg.debug)
    if not cfg.use_beat or cfg.mode != "double_loss":
        raise SystemExit("--use_beat --mode double_loss name the only model here (beat tracks, the two-term loss): "
                         "pass both, as the paper's commands do")
    music_video.resolve(cfg)
    return cfg


def paper_lines(metrics: dict, direction: str, suffix: str = "") -> str:
    return "\n".join(f" {name}: {metrics[f'{direction}_{key}{suffix}']}" for name, key in PAPER_LINES)


def official_querybank(cfg: argparse.Namespace, direction: str) -> list[np.ndarray]:
    """The official (N_train, 1, N_test) files of one direction as (N_train, N_test) feature and beat terms."""
    return [load_sims(cfg.querybank_dir / f"{cfg.exp_name}_{direction}_train_{term}_sims.pt")
            for term in ("feature", "beat")]


def evaluate(argv: list[str] | None, qbnorm: bool) -> dict | None:
    """Either published command; returns what the last line prints (main process), None elsewhere."""
    cfg = parse(argv, qbnorm)
    path = checkpoint(cfg)
    direction = METRICS[cfg.metric]
    # The official querybank gives other numbers than the model's own: its own files, so neither replaces the other.
    label = f"test_{direction}" + ("_qbnorm" if qbnorm else "") + ("_official" if qbnorm and cfg.querybank_dir else "")
    # The official querybank files are read before any clip is encoded, so a missing one stops at once.
    official = {d: official_querybank(cfg, d) for d in METRICS.values()} if qbnorm and cfg.querybank_dir else None
    try:
        dist = init_distributed(cfg.device)
        seed_everything(cfg.seed, dist.rank)
        model = music_video.load_music_video_model(path, attention=cfg.attention).to(dist.device)
        clips = music_video.dataset(cfg, "test", model)
        bank = music_video.dataset(cfg, "train", model) if qbnorm and cfg.querybank_dir is None else None
        notes, _ = prepare(cfg, training=False, label=label, is_main=dist.is_main)
        encoded = encode_sets(model, [clips] + ([bank] if bank is not None else []), dist, cfg.batch_size_val,
                              cfg.workers, cfg.precision)
    finally:
        cleanup()
    if encoded is None:
        return None
    for note in notes:
        print(note)
    feature, beat = test_terms(model, encoded[0], cfg.beat_orientation)
    metrics = both_directions(feature + BEAT_WEIGHT * beat)
    suffix = ""
    if qbnorm:
        banks = official if official is not None else querybank_terms(model, encoded[1], encoded[0])
        metrics.update(music_video.with_qbnorm(cfg, feature, beat, banks))
        suffix = "_qbnorm"
    print(paper_lines(metrics, direction, suffix))
    output_dir = Path(cfg.output_dir)
    save_terms(output_dir, label, feature, beat)
    result = {k: v for k, v in metrics.items() if k.startswith(direction) or k in ("chance_R1", "num_test")}
    write_json(output_dir / f"metrics_{label}.json",
               {**result, "provenance": provenance({"init_model": path}, path)})
    return result

