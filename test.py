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
`--sims` scores a saved matrix (.npy, .pt, .pkl; every entry finite) in one direction: metrics_<stem>_<metric>.md
and .json in --output_dir; its JSON keys are `<metric>_<name>`. Every metrics and ids JSON records its provenance
(command, time, checkpoint and input files with their sha256: modules/engine/provenance.py).
A training preset (`--config`) may be given: its training keys are listed and skipped.
The music-video paper's command (`--exp_name ... --use_beat`) and the HAP-VR evaluation (`--dataset FIVR-5K
--dataset_hdf5 F --model_path M`) run here too (modules/music_video_commands.py, modules/video_video_commands.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modules import music_video_commands, text_video, video_video_commands
from modules.engine.config import parse_with_config
from modules.engine.distributed import cleanup, init_distributed, seed_everything
from modules.engine.errors import cli, debugging, set_debug
from modules.engine.flags import TRAIN_FLAGS, add_run_flags
from modules.engine.provenance import file_record, matrix_record, provenance, write_json
from modules.engine.run_folder import prepare
from modules.engine.tables import write_markdown
from modules.evaluation.metrics import DIRECTIONS, direction_metrics, ranking_table, retrieval_table
from modules.evaluation.querybank import querybank_captions, write_querybank
from modules.evaluation.retrieval import load_text_to_video
from modules.qbnorm import check_finite, load_sims

SPLITS = ("test", "val", "train_querybank")
# Keys of a training preset that evaluation does not use.
NOT_USED = TRAIN_FLAGS | text_video.TRAINING_MODEL_FLAGS


def parser() -> argparse.ArgumentParser:
    """The data and model flags of retrieval, the run flags, and this script's split and saved-matrix options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    text_video.add_data_flags(p)
    text_video.add_model_flags(p, training=False)
    add_run_flags(p)
    g = p.add_argument_group("test.py")
    g.add_argument("--split", default="test", choices=SPLITS,
                   help="test/val: metrics; train_querybank: training captions x test videos for QB-Norm")
    g.add_argument("--querybank_size", type=int, default=None,
                   help="train_querybank: draw this many of the one-per-video training captions (seeded by --seed)")
    g.add_argument("--sims", type=Path, default=None, help="score this saved (texts, videos) matrix instead")
    g.add_argument("--metric", choices=list(DIRECTIONS), default="t2v", help="direction scored with --sims")
    g.add_argument("--text_to_video", type=Path, default=None,
                   help="--sims: the sims_<split>_ids.json of the matrix (caption -> video map)")
    g.add_argument("--queries_per_video", type=int, default=1,
                   help="--sims without --text_to_video: text i belongs to video i // queries_per_video")
    return p


def check_args(cfg: argparse.Namespace) -> None:
    """One clear line for a combination of flags that cannot work."""
    if cfg.sims is None and not cfg.init_model:
        raise SystemExit("test.py: pass --init_model CHECKPOINT (or --sims MATRIX to score a saved matrix)")
    if cfg.querybank_size is not None and (cfg.querybank_size < 1 or cfg.split != "train_querybank"):
        raise SystemExit("--querybank_size must be a positive count and goes with --split train_querybank")


def score_saved(cfg: argparse.Namespace) -> dict:
    """Metrics of a saved matrix in the direction of --metric, keys prefixed with it; written as .md and .json."""
    sims = load_sims(cfg.sims)
    check_finite(sims, cfg.sims)
    text_to_video = None if cfg.text_to_video is None else load_text_to_video(cfg.text_to_video, *sims.shape)
    metrics = direction_metrics(sims, cfg.metric, cfg.queries_per_video, text_to_video)
    table = ranking_table({cfg.metric: metrics})
    claim_folder(cfg, is_main=True)
    print(table)
    output_dir = Path(cfg.output_dir)
    name = f"metrics_{output_label(cfg)}"
    write_markdown(output_dir / f"{name}.md", table)
    out = {f"{cfg.metric}_{k}": float(v) for k, v in metrics.items()}
    out.update(num_texts=int(sims.shape[0]), num_videos=int(sims.shape[1]))
    inputs = {"sims": matrix_record(cfg.sims)}
    if cfg.text_to_video is not None:
        inputs["text_to_video"] = file_record(cfg.text_to_video)
    write_json(output_dir / f"{name}.json", {**out, "provenance": provenance(inputs=inputs)})
    return out


def claim_folder(cfg: argparse.Namespace, is_main: bool) -> None:
    """This evaluation's files in --output_dir (config_<label>.yaml, metrics_<label>.*, ...): an earlier run's stop
    it unless --overwrite 1; a training run's files are left alone."""
    notes, _ = prepare(cfg, training=False, label=output_label(cfg), is_main=is_main)
    for note in notes:
        print(note, flush=True)


def output_label(cfg: argparse.Namespace) -> str:
    """What this run's files are named after: the split, or the scored matrix and direction."""
    return f"{cfg.sims.stem}_{cfg.metric}" if cfg.sims is not None else cfg.split


def evaluate_checkpoint(cfg: argparse.Namespace) -> dict | None:
    """Evaluate --init_model on --split; returns what the last line prints (main process only)."""
    dist = init_distributed(cfg.device)
    seed_everything(cfg.seed, dist.rank)
    model = text_video.build_model(cfg).to(dist.device)
    spec, output_dir = model.input_spec, Path(cfg.output_dir)
    if cfg.split == "train_querybank":
        text_set, = text_video.datasets(cfg, "train", spec, ("texts",))
        video_set, = text_video.datasets(cfg, "test", spec, ("videos",))
        text_set.captions = querybank_captions(text_set, cfg.querybank_size, cfg.seed)
        claim_folder(cfg, dist.is_main)
        return write_querybank(model, text_set, video_set, dist, cfg.batch_size_val, cfg.workers, cfg.precision,
                               output_dir, text_video.provenance_of(cfg))
    evaluate = text_video.evaluator(cfg, dist, spec, output_dir, cfg.split)
    claim_folder(cfg, dist.is_main)
    metrics = evaluate(model)
    if metrics is not None:
        table = retrieval_table(metrics)
        print(table)
        write_markdown(output_dir / f"metrics_{cfg.split}.md", table)
    return metrics


# The papers' evaluation commands test.py also runs, recognised by their flags: (recognise(argv), run(argv)).
PAPER_COMMANDS = (
    (music_video_commands.is_music_video_command, lambda argv: music_video_commands.evaluate(argv, qbnorm=False)),
    (video_video_commands.is_hapvr_command, video_video_commands.evaluate),
)


def main(argv: list[str] | None = None) -> dict | None:
    for recognise, command in PAPER_COMMANDS:
        if recognise(sys.argv[1:] if argv is None else argv):
            return paper_command(command, argv)
    cfg = parse_with_config(parser(), argv, NOT_USED)
    set_debug(cfg.debug)
    check_args(cfg)
    try:
        result = score_saved(cfg) if cfg.sims is not None else evaluate_checkpoint(cfg)
    except (ValueError, OSError) as err:  # the input's errors (DataError, CheckpointError, ...) are ValueErrors
        if debugging():
            raise
        raise SystemExit(f"test.py: error: {err}") from None
    finally:
        cleanup()
    if result is not None:
        print(json.dumps(result))
    return result


def paper_command(command, argv: list[str] | None) -> dict | None:
    """A paper's own evaluation command (modules/music_video_commands.py, modules/video_video_commands.py)."""
    result = command(argv)
    if result is not None:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    cli(main)
