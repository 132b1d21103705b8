"""Train and evaluate text-video retrieval (HBI, WTI, meanP).

    torchrun --nproc_per_node=4 main_retrieval.py --do_train 1 --do_eval 1 --datatype msrvtt \
        --anno_path data/msrvtt --video_path data/msrvtt/videos --clip_path pretrained/ViT-B-32.pt ...
    python main_retrieval.py --config config/demo.yaml

The last line printed is a JSON object with the test metrics.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from dataloaders.tokenizer import ClipTokenizer
from dataloaders.text_video import build_dataset
from models.text_video import build_retrieval_model, load_retrieval_model
from models.clip.adapter import ClipConfig
from modules.engine.config import parse_with_config, save_config
from modules.engine.distributed import DistInfo, cleanup, init_distributed, seed_everything
from modules.evaluation.retrieval import evaluate
from modules.engine.flags import hbi_options, retrieval_parser
from modules.engine.run_log import RunLog
from modules.engine.trainer import Trainer, TrainSettings


def clip_weights_path(cfg) -> Path:
    return Path(cfg.clip_path) if cfg.clip_path else Path("pretrained") / (cfg.base_encoder.replace("/", "-") + ".pt")


def build_model(cfg) -> torch.nn.Module:
    """The model of --model, with HBI's teacher estimator from --estimator when given."""
    model = build_backbone_model(cfg)
    if cfg.estimator:
        if cfg.model != "hbi":
            raise SystemExit("--estimator applies to --model hbi only")
        model.load_estimator(cfg.estimator)
    return model


def build_backbone_model(cfg) -> torch.nn.Module:
    """From --init_model, else OpenAI CLIP weights (--clip_path / --base_encoder), else --clip_arch sizes."""
    kwargs = dict(model=cfg.model, num_hidden_layers=cfg.num_hidden_layers, agg_module=cfg.agg_module,
                  train_patch_embedding=bool(cfg.train_patch_embedding), **hbi_options(cfg))
    if cfg.init_model:
        return load_retrieval_model(cfg.init_model, **kwargs)
    weights = clip_weights_path(cfg)
    if weights.is_file():
        return load_retrieval_model(weights, **kwargs)
    if cfg.clip_arch:
        return build_retrieval_model(ClipConfig(**cfg.clip_arch), **kwargs)
    raise SystemExit(f"CLIP weights not found at {weights}: pass --clip_path (an OpenAI CLIP .pt file), "
                     "--init_model, or --clip_arch for a randomly initialised model")


def datasets(cfg, split: str, image_size: int, modes: tuple[str, ...]) -> list:
    tokenizer = ClipTokenizer()
    common = dict(max_words=cfg.max_words, max_frames=cfg.max_frames, video_framerate=cfg.video_framerate,
                  image_size=image_size, slice_framepos=cfg.slice_framepos, backend=cfg.video_backend,
                  seed=cfg.seed)
    if cfg.datatype == "msrvtt":
        common["train_csv"] = cfg.train_csv
    if split == "train":
        common["skip_bad_videos"] = bool(cfg.skip_bad_videos)
        common["train"] = bool(cfg.train_augment)
    return [build_dataset(cfg.datatype, split, cfg.anno_path, cfg.video_path, tokenizer, mode, **common)
            for mode in modes]


def make_evaluator(cfg, dist: DistInfo, image_size: int, output_dir: Path):
    text_set, video_set = datasets(cfg, "test", image_size, ("texts", "videos"))

    def run(model) -> dict | None:
        return evaluate(model, text_set, video_set, dist, cfg.batch_size_val, cfg.workers, cfg.precision,
                        output_dir=output_dir, split="test")
    return run


def metrics_table(metrics: dict) -> str:
    """A Markdown table of the retrieval metrics, both directions."""
    keys = ("R1", "R5", "R10", "R50", "MdR", "MnR")
    rows = ["| direction | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for direction in ("t2v", "v2t"):
        rows.append(f"| {direction} | " + " | ".join(f"{metrics[f'{direction}_{k}']:.1f}" for k in keys) + " |")
    return "\n".join(rows)


def start_run(cfg) -> tuple[DistInfo, Path, RunLog]:
    """Process group, seeds, run folder, log, and the resolved config saved in the run folder."""
    dist = init_distributed(cfg.device)
    seed_everything(cfg.seed, dist.rank)
    output_dir = Path(cfg.output_dir)
    log = RunLog(output_dir, dist.is_main)
    if dist.is_main:
        save_config(cfg, output_dir / "config.yaml")
    return dist, output_dir, log


def main(argv: list[str] | None = None) -> dict | None:
    cfg = parse_with_config(retrieval_parser(), argv)
    if not (cfg.do_train or cfg.do_eval):
        raise SystemExit("nothing to do: pass --do_train 1 and/or --do_eval 1")
    dist, output_dir, log = start_run(cfg)
    log.info(f"{dist.world_size} process(es) on {dist.device}; run folder {output_dir}")
    model = build_model(cfg).to(dist.device)
    image_size = model.clip.config.image_size
    evaluator = make_evaluator(cfg, dist, image_size, output_dir)
    metrics = None
    if cfg.do_train:
        train_set, = datasets(cfg, "train", image_size, ("pairs",))
        log.info(f"training on {len(train_set)} captions of {len(train_set.video_ids)} videos")
        trainer = Trainer(model, train_set, TrainSettings.from_config(cfg), dist, log, output_dir, evaluator)
        best = trainer.fit()
        log.info(f"best t2v_R1 {best['t2v_R1']:.1f} at epoch {best['epoch']}")
    if cfg.do_eval:
        metrics = evaluator(model)
    return finish_run(dist, log, metrics, metrics_table)


def finish_run(dist: DistInfo, log: RunLog, metrics: dict | None, table=None) -> dict | None:
    """On the main process: final metrics into the log, `table(metrics)` printed (when given), then the metrics
    as the last line (JSON). Closes the log and the process group."""
    if dist.is_main and metrics is not None:
        log.metrics(-1, "test", metrics)
        if table is not None:
            print(table(metrics))
        print(json.dumps(metrics))
    log.close()
    cleanup()
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
