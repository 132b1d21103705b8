"""The HAP-VR evaluation command (the published `evaluation.py` flags), run as test.py:

    python test.py --dataset FIVR-5K --dataset_hdf5 fivr_5k.hdf5 --model_path model.pth [--annotations data/hapvr]
    python test.py --dataset FIVR-5K --similarities sims.json.gz          # score a given dictionary, no model
    torchrun --nproc_per_node=2 test.py --dataset FIVR-200K --dataset_hdf5 fivr_200k.hdf5 --model_path model.pth

Writes into --output_dir (default outputs/hapvr/<model or similarities file name>), files named after the benchmark
(`fivr5k`, ...): metrics_<b>.json (metrics, what was left out, timing, provenance), metrics_<b>.md,
metrics_<b>_per_query.json (AP per query and metric), with --store_similarities sims_<b>.json.gz, and
config_<b>.yaml; the metrics are the last line printed (JSON). An earlier run's files stop it unless --overwrite 1.
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from dataloaders.video_video.annotations import DEFAULT_DIR
from dataloaders.video_video.features import FeatureFile
from models import load_hapvr_model
from modules.benchmarks import Benchmark, BenchmarkResult, canonical_name, load_benchmark, scores_from_json
from modules.engine.checkpoint import atomic_write
from modules.engine.config import parse_with_config
from modules.engine.distributed import DistInfo, cleanup, init_distributed
from modules.engine.errors import set_debug
from modules.engine.flags import non_negative_int, positive_int
from modules.engine.provenance import file_record, provenance, write_json
from modules.engine.run_folder import prepare, refuse_early
from modules.engine.tables import write_markdown
from modules.evaluation.video_video import Scored, ScoringOptions, score_feature_file

DATASETS = ("EVVE", "FIVR-5K", "FIVR-200K", "SVD")  # the published --dataset names


def is_hapvr_command(argv: list[str]) -> bool:
    """The HAP-VR command names --dataset (the text-video and music-video ones never do)."""
    return any(a.split("=")[0] == "--dataset" for a in argv)


def bool_flag(text: str) -> bool:
    """The reference's boolean flags: true/false, 1/0, yes/no."""
    value = str(text).lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a HAP-VR model on EVVE, FIVR-5K, FIVR-200K or SVD.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("the published evaluation.py flags")
    g.add_argument("--dataset", required=True, type=lambda s: next((d for d in DATASETS if canonical_name(d) ==
                                                                    canonical_name(s)), s), choices=DATASETS)
    g.add_argument("--dataset_hdf5", type=Path, default=None, help="HDF5 file: one (T, 9, 512) dataset per video")
    g.add_argument("--model_path", type=Path, default=None, help="a HAP-VR checkpoint {args, model} or state dict")
    g.add_argument("--workers", type=non_negative_int, default=8, help="feature-reading processes")
    g.add_argument("--batch_sz_sim", type=positive_int, default=2048,
                   help="a target longer than this many frames is scored in pieces, averaged (the reference's)")
    g.add_argument("--store_similarities", type=bool_flag, default=False,
                   help="also write the similarity dictionary (sims_<dataset>.json.gz)")
    g = p.add_argument_group("this repository")
    g.add_argument("--annotations", type=Path, default=Path(DEFAULT_DIR), help="the benchmark's annotation files")
    g.add_argument("--similarities", type=Path, default=None,
                   help="score this {query: {video: score}} .json[.gz] instead of a model")
    g.add_argument("--allow_missing", type=bool_flag, default=False,
                   help="score without videos whose features are missing or unreadable, listing them in the results "
                        "(otherwise the run stops naming the first)")
    g.add_argument("--svd_unlabeled", type=bool_flag, default=True,
                   help="SVD: rank against the unlabelled distractors too (the reference's default)")
    g.add_argument("--chunk_frames", type=positive_int, default=8192, help="database frames scored together")
    g.add_argument("--output_dir", default=None)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--overwrite", type=int, default=0, help="1: replace this benchmark's earlier results")
    g.add_argument("--debug", type=int, default=0, help="1: errors about the input show their traceback")
    return p


def parse(argv: list[str] | None) -> argparse.Namespace:
    cfg = parse_with_config(parser(), argv)
    set_debug(cfg.debug)
    if (cfg.similarities is None) == (cfg.model_path is None):
        raise SystemExit("test.py --dataset: pass --dataset_hdf5 FILE --model_path CKPT, or --similarities FILE")
    if cfg.model_path is not None and cfg.dataset_hdf5 is None:
        raise SystemExit("test.py --dataset: --model_path needs --dataset_hdf5 (the benchmark's feature file)")
    if cfg.output_dir is None:
        source = cfg.model_path or cfg.similarities
        cfg.output_dir = str(Path("outputs") / "hapvr" / source.name.split(".")[0])
    return cfg


def benchmark(cfg: argparse.Namespace) -> Benchmark:
    options = {"unlabeled": cfg.svd_unlabeled} if canonical_name(cfg.dataset) == "svd" else {}
    return load_benchmark(cfg.dataset, cfg.annotations, **options)


def score_with_model(cfg: argparse.Namespace, bench: Benchmark, dist: DistInfo) -> Scored:
    network = load_hapvr_model(cfg.model_path).to(dist.device)
    options = ScoringOptions(workers=cfg.workers, chunk_frames=cfg.chunk_frames, split_frames=cfg.batch_sz_sim,
                             allow_missing=cfg.allow_missing)
    return score_feature_file(network, FeatureFile(cfg.dataset_hdf5), bench.queries, bench.database, options, dist)


def feature_file_record(path: Path) -> dict:
    """Path, size and modification time: hashing a 400 GB feature file would take longer than the evaluation."""
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "modified": stat.st_mtime}


def metrics_table(metrics: dict) -> str:
    names = [k for k, v in metrics.items() if isinstance(v, float) and "/" not in k]
    return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {metrics[k]:.4f} |" for k in names])


def write_results(cfg: argparse.Namespace, label: str, result: BenchmarkResult, scored: Scored | None,
                  similarities) -> None:
    """The run folder's files; with --allow_missing, metrics_<label>.json lists every query and (query, video)
    score that was missing, beside the counts."""
    metrics = result.metrics
    output_dir = Path(cfg.output_dir)
    inputs = {"similarities": file_record(cfg.similarities)} if cfg.similarities else \
        {"dataset_hdf5": feature_file_record(cfg.dataset_hdf5)}
    record = provenance({"model_path": cfg.model_path}, cfg.model_path, inputs=inputs) if cfg.model_path else \
        provenance(inputs=inputs)
    if cfg.store_similarities:
        plain = similarities.to_dict() if hasattr(similarities, "to_dict") else similarities
        atomic_write(output_dir / f"sims_{label}.json.gz",
                     lambda f: f.write(gzip.compress(json.dumps(plain).encode())))
    write_json(output_dir / f"metrics_{label}_per_query.json", result.per_query)
    write_markdown(output_dir / f"metrics_{label}.md", metrics_table(metrics))
    extra = {"left_out": scored.left_out, "database_videos_scored": scored.database_videos,
             "seconds": round(scored.seconds, 2)} if scored else {}
    if cfg.allow_missing:
        extra.update(missing_query_ids=result.missing_queries, missing_video_ids=result.missing_videos)
    write_json(output_dir / f"metrics_{label}.json", {**metrics, **extra, "provenance": record})


def evaluate(argv: list[str] | None) -> dict | None:
    """The command; returns the metrics (main process), None elsewhere. Nothing is written before the scores and
    metrics exist, so a run stopped by its input leaves no file behind."""
    cfg = parse(argv)
    bench = benchmark(cfg)
    label = canonical_name(cfg.dataset)
    refuse_early(cfg, training=False, label=label)
    given = scores_from_json(cfg.similarities) if cfg.similarities else None
    try:
        dist = init_distributed(cfg.device)
        scored = score_with_model(cfg, bench, dist) if cfg.model_path else None
        similarities = scored.similarities if scored else given
        result = bench.score(similarities, allow_missing=cfg.allow_missing) if dist.is_main else None
        notes, _ = prepare(cfg, training=False, label=label, is_main=dist.is_main)
    finally:
        cleanup()
    if not dist.is_main:
        return None
    for note in notes:
        print(note, flush=True)
    metrics = dict(result.metrics)
    if scored and scored.left_out:
        print(f"{len(scored.left_out)} video(s) scored without (--allow_missing): "
              + ", ".join(f"{k} ({v})" for k, v in list(scored.left_out.items())[:5]), flush=True)
    write_results(cfg, label, result, scored, similarities)
    print(metrics_table(metrics))
    return metrics
