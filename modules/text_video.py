"""Glue of text-video retrieval (HBI, WTI, meanP): flags, model, data sets, evaluator, selection and table."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from torch import nn

from dataloaders.text_video import DATASETS, TextVideoDataset, build_dataset
from dataloaders.tokenizer import ClipTokenizer
from models.text_video import MODELS, build_retrieval_model
from modules.clip_video import add_backbone_flags, add_hbi_flags, add_video_flags, build_clip_model, \
    clip_weights_path, hbi_options, video_options
from modules.engine.distributed import DistInfo
from modules.engine.flags import add_run_flags, add_train_flags, dests
from modules.engine.provenance import provenance
from modules.engine.run import Evaluator, RunParts, Task
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection
from modules.evaluation.metrics import retrieval_table
from modules.evaluation.retrieval import Provenance, evaluate

TASK = Task(Selection("t2v_R1", summary_keys=("t2v_R1", "t2v_R5", "t2v_R10", "t2v_MdR")), retrieval_table)


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--datatype", default="msrvtt", choices=sorted(DATASETS), help="benchmark family")
    g.add_argument("--anno_path", default="data/msrvtt", help="folder of the annotation files")
    g.add_argument("--train_csv", default="MSRVTT_train.9k.csv", help="msrvtt training split file (9k or 7k)")
    add_video_flags(p)


def add_model_flags(p: argparse.ArgumentParser, training: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="hbi", choices=list(MODELS),
                   help="HBI (hierarchical Banzhaf interaction, the reference's model), or one level: weighted "
                        "token-wise, sentence vs mean frame, or token-wise with plain means")
    add_backbone_flags(g, "ViT-B/32", training)
    add_hbi_flags(p, "HBI (--model hbi only)", training)


# Model flags that only training takes (the estimator, loss weights, the patch embedding): a training preset's keys
# that evaluation and the estimator's label generation skip.
TRAINING_MODEL_FLAGS = dests(add_model_flags, True) - dests(add_model_flags, False)


def parser() -> argparse.ArgumentParser:
    """main_retrieval.py: train and/or evaluate."""
    p = argparse.ArgumentParser(description="Train and evaluate text-video retrieval (HBI, WTI, meanP).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p)
    add_model_flags(p)
    add_train_flags(p)
    add_run_flags(p)
    return p


def build_model(cfg: argparse.Namespace) -> nn.Module:
    """The model of --model (see `build_clip_model`); HBI's options only for HBI."""
    options = hbi_options(cfg) if cfg.model == "hbi" else {}
    if hasattr(cfg, "train_patch_embedding"):
        options["train_patch_embedding"] = bool(cfg.train_patch_embedding)

    def build(config):
        return build_retrieval_model(config, cfg.model, cfg.agg_module, cfg.num_hidden_layers, **options)
    return build_clip_model(cfg, build, f"model {cfg.model!r}")


def datasets(cfg: argparse.Namespace, split: str, input_spec: dict, modes: tuple[str, ...]
             ) -> list[TextVideoDataset]:
    """The data sets of `split` in each of `modes` ("pairs", "texts", "videos")."""
    options = video_options(cfg, input_spec, train=split == "train")
    if cfg.datatype == "msrvtt":
        options["train_csv"] = cfg.train_csv
    return [build_dataset(cfg.datatype, split, cfg.anno_path, cfg.video_path, ClipTokenizer(), mode, **options)
            for mode in modes]


def weight_files(cfg: argparse.Namespace) -> dict[str, Path | None]:
    """The weights files a model built from `cfg` reads (see `build_clip_model`), by flag; None where none."""
    clip = None if cfg.init_model else clip_weights_path(cfg)
    return {"init_model": cfg.init_model or None, "clip_path": clip if clip is not None and clip.is_file() else None,
            "estimator": getattr(cfg, "estimator", None) or None}


def provenance_of(cfg: argparse.Namespace, trained_weights: Callable[[], Path | None] | None = None) -> Provenance:
    """`provenance()` of the results of the model `cfg` builds (modules/engine/provenance.py): the checkpoint is
    --init_model, or, when the model was trained in this run, the file `trained_weights()` this run saved it in."""
    def describe() -> dict:
        files = weight_files(cfg)
        if trained_weights is not None:
            return provenance(files, trained_weights(), trained_in_this_run=True)
        return provenance(files, files["init_model"])
    return describe


def _evaluation(cfg: argparse.Namespace, dist: DistInfo, text_set: TextVideoDataset, video_set: TextVideoDataset,
                output_dir: Path | None, split: str, describe: Provenance | None) -> Evaluator:
    def run(model: nn.Module) -> dict | None:
        return evaluate(model, text_set, video_set, dist, cfg.batch_size_val, cfg.workers, cfg.precision,
                        output_dir=output_dir, split=split, provenance=describe)
    return run


def evaluator(cfg: argparse.Namespace, dist: DistInfo, input_spec: dict, output_dir: Path | None,
              split: str = "test", describe: Provenance | None = None) -> Evaluator:
    """Full retrieval evaluation of `split`; saves the matrix, its ids and the metrics in `output_dir` with
    `describe()` (default: `provenance_of(cfg)`, the weights of --init_model) as their provenance."""
    text_set, video_set = datasets(cfg, split, input_spec, ("texts", "videos"))
    return _evaluation(cfg, dist, text_set, video_set, output_dir, split, describe or provenance_of(cfg))


def build(cfg: argparse.Namespace, dist: DistInfo, log: RunLog, output_dir: Path) -> RunParts:
    """Validation after every epoch writes no result files (its metrics go to metrics.jsonl), so a run stopped
    during training leaves no epoch's numbers where the final evaluation's go; the final test writes them."""
    model = build_model(cfg).to(dist.device)
    spec = model.input_spec
    text_set, video_set = datasets(cfg, "test", spec, ("texts", "videos"))
    validate = _evaluation(cfg, dist, text_set, video_set, None, "test", None)
    trained = cfg.do_train and cfg.epochs > 0
    # After training the model holds the last epoch's weights, which the trainer saved as pytorch_model.bin.<last>.
    describe = provenance_of(cfg, (lambda: output_dir / f"pytorch_model.bin.{cfg.epochs - 1}") if trained else None)
    test = _evaluation(cfg, dist, text_set, video_set, output_dir, "test", describe)

    def train_set() -> TextVideoDataset:
        pairs, = datasets(cfg, "train", spec, ("pairs",))
        log.info(f"training on {len(pairs)} captions of {len(pairs.video_ids)} videos")
        return pairs
    return RunParts(model, train_set, validate=validate, test=test)
