"""Evaluate a retrieval checkpoint, or score a saved similarity matrix.

    python test.py --init_model outputs/msrvtt_wti/pytorch_model.bin.best --datatype msrvtt \
        --anno_path data/msrvtt --video_path data/msrvtt/videos --split test --output_dir outputs/msrvtt_eval
    python test.py --init_model CKPT ... --split train_querybank [--querybank_size N]   # QB-Norm's querybank
    python test.py --sims outputs/msrvtt_eval/sims_test.npy --metric v2t \
        --text_to_video outputs/msrvtt_eval/sims_test_ids.json --output_dir outputs/msrvtt_eval

`--split test|val` writes sims_<split>.npy, sims_<split>_ids.json, metrics_<split>.json and metrics_<split>.md
in --output_dir, prints the metrics table and, as the last line, the JSON metrics. `--split train_querybank`
writes the (training captions x test videos) matrix sims_train_querybank.npy with its ids (one caption per
training video, the first, or --querybank_size of them drawn with --seed) and prints a JSON line with its shape.
`--sims` scores a saved matrix (.npy, .pt, .pkl) in one direction; its JSON keys are `<metric>_<name>`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from main_retrieval import build_model, datasets, metrics_table
from modules.engine.checkpoint import atomic_write
from modules.engine.config import parse_with_config
from modules.engine.distributed import DistInfo, cleanup, init_distributed, seed_everything
from modules.evaluation.retrieval import encode_items, evaluate, shard_loader, similarity_matrix
from modules.engine.flags import retrieval_parser
from modules.qbnorm import load_sims
from test_qb_norm import load_text_to_video, markdown_table, score

SPLITS = ("test", "val", "train_querybank")


def test_parser() -> argparse.ArgumentParser:
    """The retrieval flags plus the split, querybank and saved-matrix options of this script."""
    p = retrieval_parser()
    p.description = __doc__.splitlines()[0]
    g = p.add_argument_group("test.py")
    g.add_argument("--split", default="test", choices=SPLITS,
                   help="test/val: metrics; train_querybank: training captions x test videos for QB-Norm")
    g.add_argument("--querybank_size", type=int, default=None,
                   help="train_querybank: draw this many of the one-per-video training captions (seeded by --seed)")
    g.add_argument("--sims", type=Path, default=None, help="score this saved (texts, videos) matrix instead")
    g.add_argument("--metric", choices=("t2v", "v2t"), default="t2v", help="direction scored with --sims")
    g.add_argument("--text_to_video", type=Path, default=None,
                   help="--sims: the sims_<split>_ids.json of the matrix (caption -> video map)")
    g.add_argument("--queries_per_video", type=int, default=1,
                   help="--sims without --text_to_video: text i belongs to video i // queries_per_video")
    return p


def check_args(cfg: argparse.Namespace) -> None:
    """One clear line for a combination of flags that cannot work."""
    if cfg.do_train:
        raise SystemExit("test.py evaluates only: train with main_retrieval.py --do_train 1")
    if cfg.sims is None and not cfg.init_model:
        raise SystemExit("test.py: pass --init_model CHECKPOINT (or --sims MATRIX to score a saved matrix)")
    if cfg.querybank_size is not None and (cfg.querybank_size < 1 or cfg.split != "train_querybank"):
        raise SystemExit("--querybank_size must be a positive count and goes with --split train_querybank")


def write_markdown(output_dir: Path, name: str, table: str) -> Path:
    """metrics_<name>.md in the run folder, written atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"metrics_{name}.md"
    atomic_write(path, lambda f: f.write((table + "\n").encode()))
    return path


def score_saved(cfg: argparse.Namespace) -> dict:
    """Metrics of a saved matrix in the direction of --metric, keys prefixed with it."""
    sims = load_sims(cfg.sims)
    text_to_video = None
    if cfg.text_to_video is not None:
        text_to_video = load_text_to_video(cfg.text_to_video, *sims.shape)
    metrics = score(sims, cfg.metric, cfg.queries_per_video, text_to_video)
    table = markdown_table({cfg.metric: metrics})
    print(table)
    write_markdown(Path(cfg.output_dir), f"{cfg.sims.stem}_{cfg.metric}", table)
    out = {f"{cfg.metric}_{k}": float(v) for k, v in metrics.items()}
    out.update(num_texts=int(sims.shape[0]), num_videos=int(sims.shape[1]))
    return out


def querybank_captions(text_set, size: int | None, seed: int) -> list:
    """The first caption of every training video, or `size` of them drawn with a seeded generator."""
    first = {}
    for caption in text_set.captions:
        first.setdefault(caption.video_index, caption)
    captions = [first[v] for v in sorted(first)]
    if size is None:
        return captions
    if size > len(captions):
        raise SystemExit(f"--querybank_size {size} exceeds the {len(captions)} training videos")
    picked = torch.randperm(len(captions), generator=torch.Generator().manual_seed(seed))[:size]
    return [captions[i] for i in sorted(picked.tolist())]


def querybank(cfg: argparse.Namespace, model, dist: DistInfo, image_size: int) -> dict | None:
    """sims_train_querybank.npy: querybank training captions x test gallery videos, with its ids."""
    text_set, = datasets(cfg, "train", image_size, ("texts",))
    video_set, = datasets(cfg, "test", image_size, ("videos",))
    text_set.captions = querybank_captions(text_set, cfg.querybank_size, cfg.seed)
    row_ids = [f"{text_set.video_ids[c.video_index]}#0" for c in text_set.captions]  # first caption of each
    model.eval()
    text = encode_items(model, shard_loader(text_set, dist, cfg.batch_size_val, cfg.workers), "text", dist,
                        cfg.precision)
    video = encode_items(model, shard_loader(video_set, dist, cfg.batch_size_val, cfg.workers), "video", dist,
                         cfg.precision)
    if not dist.is_main:
        return None
    sims = similarity_matrix(model, text, video, cfg.precision, dist.device)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "sims_train_querybank.npy"
    np.save(path, sims)
    ids = {"rows": row_ids, "cols": list(video_set.video_ids), "row_texts": [c.text for c in text_set.captions]}
    (output_dir / "sims_train_querybank_ids.json").write_text(json.dumps(ids))
    return {"split": "train_querybank", "shape": list(sims.shape), "path": str(path)}


def evaluate_checkpoint(cfg: argparse.Namespace) -> dict | None:
    """Evaluate --init_model on --split; returns what the last line prints (main process only)."""
    dist = init_distributed(cfg.device)
    seed_everything(cfg.seed, dist.rank)
    model = build_model(cfg).to(dist.device)
    image_size = model.clip.config.image_size
    if cfg.split == "train_querybank":
        return querybank(cfg, model, dist, image_size)
    text_set, video_set = datasets(cfg, cfg.split, image_size, ("texts", "videos"))
    metrics = evaluate(model, text_set, video_set, dist, cfg.batch_size_val, cfg.workers, cfg.precision,
                       output_dir=Path(cfg.output_dir), split=cfg.split)
    if metrics is not None:
        table = metrics_table(metrics)
        print(table)
        write_markdown(Path(cfg.output_dir), cfg.split, table)
    return metrics


def main(argv: list[str] | None = None) -> dict | None:
    cfg = parse_with_config(test_parser(), argv)
    check_args(cfg)
    try:
        result = score_saved(cfg) if cfg.sims is not None else evaluate_checkpoint(cfg)
    except (ValueError, OSError) as err:
        raise SystemExit(f"test.py: error: {err}") from None
    finally:
        cleanup()
    if result is not None:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
