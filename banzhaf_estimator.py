"""Generate Banzhaf-interaction labels from a retrieval model and train the estimator that HBI distils from.

    torchrun --nproc_per_node=4 banzhaf_estimator.py --do_train 1 --epochs 10 --lr 1e-2 --batch_size 128 \
        --datatype msrvtt --anno_path data/msrvtt --video_path data/msrvtt/videos --max_words 24 --max_frames 12 \
        --clip_path pretrained/ViT-B-32.pt --output_dir outputs/estimator

Writes `pytorch_model.bin.<epoch>` (the estimator's weights, the format `--estimator` and released estimator files
use) and measures a held-out split every epoch (MSE and rank correlation with the labels). The last line printed
is a JSON object with the held-out metrics of the last epoch.
"""
from __future__ import annotations

import sys

from main_retrieval import build_model, datasets, finish_run, start_run
from models.text_video.estimator import BanzhafEstimator
from modules.engine.config import parse_with_config
from modules.estimator import EstimatorTask, evaluate_estimator
from modules.engine.flags import retrieval_parser
from modules.engine.trainer import Selection, Trainer, TrainSettings


def estimator_parser():
    p = retrieval_parser()
    p.description = "Train the Banzhaf-interaction estimator on labels from a frozen retrieval model."
    g = p.add_argument_group("estimator")
    g.add_argument("--banzhaf_samples", type=int, default=100, help="Monte-Carlo coalitions per label")
    g.add_argument("--banzhaf_definition", default="reference", choices=["reference", "standard"],
                   help="the reference's label, or the textbook Banzhaf interaction index")
    return p


def main(argv: list[str] | None = None) -> dict | None:
    cfg = parse_with_config(estimator_parser(), argv)
    if not cfg.do_train:
        raise SystemExit("nothing to do: pass --do_train 1")
    dist, output_dir, log = start_run(cfg)
    retrieval = build_model(cfg)
    task = EstimatorTask(retrieval, BanzhafEstimator(), cfg.banzhaf_samples, cfg.banzhaf_definition)
    task = task.to(dist.device)
    image_size = retrieval.clip.config.image_size
    train_set, = datasets(cfg, "train", image_size, ("pairs",))
    held_out, = datasets(cfg, "test", image_size, ("pairs",))
    log.info(f"estimator: {len(train_set)} training pairs, {len(held_out)} held-out pairs, "
             f"{cfg.banzhaf_samples} samples per label ({cfg.banzhaf_definition} definition)")
    last: dict = {}

    def evaluate(model) -> dict | None:
        metrics = evaluate_estimator(model, held_out, dist, cfg.batch_size_val, cfg.workers)
        last.update(metrics or {})
        return metrics

    trainer = Trainer(task, train_set, TrainSettings.from_config(cfg), dist, log, output_dir, evaluate,
                      Selection("mse", higher_is_better=False))
    best = trainer.fit()
    log.info(f"best held-out mse {best['mse']:.4g} at epoch {best['epoch']}")
    return finish_run(dist, log, last)


if __name__ == "__main__":
    main(sys.argv[1:])
