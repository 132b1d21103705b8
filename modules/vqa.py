"""Glue of video question answering (MSRVTT-QA format): flags, model, question sets, evaluator, table.

Accuracy is reported under two protocols side by side: the standard one (every test question; an answer outside
the vocabulary is wrong) and the reference's (such questions dropped).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from torch import nn

from dataloaders.qa.msrvtt_qa import QADataset, build_qa_dataset, load_answer_vocab, load_questions, majority_label
from dataloaders.synthetic.qa import generate_demo_qa
from dataloaders.tokenizer import ClipTokenizer
from models.vqa import HBIQAModel
from models.weights import read_state_dict
from modules.clip_video import add_backbone_flags, add_hbi_flags, add_video_flags, build_clip_model, hbi_options, \
    video_options
from modules.engine.distributed import DistInfo, barrier
from modules.engine.flags import add_run_flags, add_train_flags
from modules.engine.provenance import provenance
from modules.engine.run import Evaluator, RunParts, Task
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection
from modules.evaluation.qa import evaluate_qa
from modules.evaluation.qa_metrics import qa_table
from modules.text_video import weight_files

TASK = Task(Selection("acc_top1", summary_keys=("acc_top1", "acc_top5", "acc_top1_reference")), qa_table)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (MSRVTT-QA jsonl: answer, question, video_id, answer_type)")
    g.add_argument("--train_csv", default="data/msrvtt_qa/train.jsonl", help="training questions")
    g.add_argument("--val_csv", default="data/msrvtt_qa/test.jsonl",
                   help="questions evaluated after every epoch (the best epoch is kept) and, without --test_csv, "
                        "by --do_eval")
    g.add_argument("--test_csv", default=None, help="questions of the final evaluation (default: --val_csv)")
    g.add_argument("--data_path", default="data/msrvtt_qa/train_ans2label.json",
                   help="answer vocabulary: JSON object answer -> class id 0..N-1")
    g.add_argument("--demo_data", default=None,
                   help="write the synthetic demo clips and questions into this folder first (reused when complete)")
    add_video_flags(p)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    add_backbone_flags(g, "ViT-B/16")
    g.add_argument("--freeze_layer_num", type=int, default=0,
                   help="CLIP blocks below this index and CLIP's embeddings are frozen, as the reference's "
                        "--freeze_layer_num; -1 trains all of CLIP except the patch embedding unless "
                        "--train_patch_embedding 1")
    g.add_argument("--answer_dropout", type=float, default=0.1, help="dropout before each answer classifier")
    add_hbi_flags(p, "HBI", t_rate1=0.125, v_rate1=0.25, rate=(0.4, 0.4, 0.2),
                  rate_help="weights of the entity, action and event answer logits at inference")


def _add_published_command_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accepted so the published commands run; each names the only behaviour there is")
    g.add_argument("--expand_msrvtt_sentences", action="store_true",
                   help="one sample per question (always so here)")
    g.add_argument("--loose_type", action="store_true", help="no effect in the reference's QA model either")
    g.add_argument("--linear_patch", default="2d", choices=["2d"], help="CLIP's 2-D patch embedding")
    g.add_argument("--datatype", default="msrvtt", choices=["msrvtt"], help="MSRVTT-QA jsonl format")


def parser() -> argparse.ArgumentParser:
    """main_vqa.py: train and/or evaluate."""
    p = argparse.ArgumentParser(description="Train and evaluate HBI video question answering (MSRVTT-QA format).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_data_flags(p)
    _add_model_flags(p)
    _add_published_command_flags(p)
    add_train_flags(p)
    add_run_flags(p)
    p.set_defaults(batch_size=32, batch_size_val=16)
    return p


def check(cfg: argparse.Namespace) -> None:
    """Flags that cannot work together, before anything is written."""
    if cfg.train_patch_embedding and cfg.freeze_layer_num >= 0:  # otherwise the flag would do nothing
        raise SystemExit(f"--train_patch_embedding 1 needs --freeze_layer_num -1: --freeze_layer_num "
                         f"{cfg.freeze_layer_num} freezes CLIP's embeddings, the patch embedding among them")


def build_model(cfg: argparse.Namespace, num_answers: int) -> HBIQAModel:
    """The VQA model (see `build_clip_model`) with the reference's `--freeze_layer_num` applied."""
    options = dict(hbi_options(cfg), dropout=cfg.answer_dropout, train_patch_embedding=bool(cfg.train_patch_embedding))

    def build(config):
        return HBIQAModel(config, num_answers, cfg.agg_module, cfg.num_hidden_layers, **options)
    model = build_clip_model(cfg, build, "the VQA model")
    model.freeze_backbone(cfg.freeze_layer_num)
    return model


def question_sets(cfg: argparse.Namespace, path: str, vocab: dict[str, int], input_spec: dict,
                  train: bool) -> list[QADataset]:
    """Training: one "pairs" set of the questions whose answer has a class. Evaluation: "texts" and "videos"."""
    options = video_options(cfg, input_spec, train)
    if train:
        return [build_qa_dataset(path, cfg.video_path, vocab, ClipTokenizer(), "pairs", drop_out_of_vocab=True,
                                 **options)]
    return [build_qa_dataset(path, cfg.video_path, vocab, ClipTokenizer(), mode, **options)
            for mode in ("texts", "videos")]


def majority_answer(cfg: argparse.Namespace, vocab: dict[str, int], log: RunLog) -> int | None:
    """The most frequent training answer (the baseline), when --train_csv is there."""
    if not Path(cfg.train_csv).is_file():
        log.info(f"no majority-answer baseline: {cfg.train_csv} not found")
        return None
    _, questions = load_questions(cfg.train_csv, cfg.video_path)
    return majority_label([vocab.get(q.answer, -1) for q in questions], cfg.train_csv)


def evaluator(cfg: argparse.Namespace, path: str, split: str, vocab: dict[str, int], majority: int | None,
              dist: DistInfo, input_spec: dict, output_dir: Path | None,
              describe: Callable[[], dict] | None = None) -> Evaluator:
    """Accuracy on the questions of `path`; with `output_dir` writes answers_<split>.jsonl and metrics_<split>.json
    there, with `describe()` as the provenance."""
    question_set, video_set = question_sets(cfg, path, vocab, input_spec, train=False)

    def run(model: nn.Module) -> dict | None:
        return evaluate_qa(model, question_set, video_set, dist, cfg.batch_size_val, cfg.workers, cfg.precision,
                           majority, output_dir, split, describe)
    return run


def build(cfg: argparse.Namespace, dist: DistInfo, log: RunLog, output_dir: Path) -> RunParts:
    if cfg.demo_data:
        if dist.is_main:
            generate_demo_qa(cfg.demo_data, report=log.info)
        barrier()
    vocab = load_answer_vocab(cfg.data_path)
    model = build_model(cfg, len(vocab)).to(dist.device)
    frozen = sum(n.startswith(model.backbone_prefix) and not p.requires_grad for n, p in model.named_parameters())
    log.info(f"{len(vocab)} answers; {frozen} backbone tensors frozen (--freeze_layer_num {cfg.freeze_layer_num}, "
             f"--train_patch_embedding {cfg.train_patch_embedding})")
    if cfg.do_train and cfg.skl and not cfg.estimator:
        log.info("no --estimator: distilling an untrained teacher, as the reference does (or pass --skl 0)")
    majority = majority_answer(cfg, vocab, log)
    spec = model.input_spec

    def train_set() -> QADataset:
        pairs, = question_sets(cfg, cfg.train_csv, vocab, spec, train=True)
        dropped = f" ({pairs.dropped} with answers outside the vocabulary left out)" if pairs.dropped else ""
        log.info(f"training on {len(pairs)} questions of {len(pairs.video_ids)} videos{dropped}")
        return pairs

    evaluated: dict[str, Path] = {}  # the file holding the weights of the final evaluation, once training ended

    def load_best(net: nn.Module, best: dict) -> None:
        """The final evaluation uses the best epoch, as the reference does: the weights this run selected."""
        if best["epoch"] > 0:
            evaluated["path"] = output_dir / "pytorch_model.bin.best"
            net.load_reference_state_dict(read_state_dict(evaluated["path"]))
        else:
            evaluated["path"] = output_dir / f"pytorch_model.bin.{cfg.epochs - 1}"
            log.info("no best epoch: the final evaluation uses the last epoch's weights")

    def describe() -> dict:
        files = weight_files(cfg)
        if "path" in evaluated:
            return provenance(files, evaluated["path"], trained_in_this_run=True)
        return provenance(files, files["init_model"])

    # Validation writes no result files (its metrics go to metrics.jsonl): a run stopped during training leaves
    # no epoch's numbers behind as if they were a result.
    validate = evaluator(cfg, cfg.val_csv, "val", vocab, majority, dist, spec, None) if cfg.do_train else None
    test = evaluator(cfg, cfg.test_csv or cfg.val_csv, "test", vocab, majority, dist, spec, output_dir,
                     describe) if cfg.do_eval else None
    return RunParts(model, train_set, validate, test, after_training=load_best)
