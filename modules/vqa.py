"""Command-line flags of main_vqa.py: the names of the HBI MSRVTT-QA commands, and the shared training flags."""
from __future__ import annotations

import argparse

from modules.engine.flags import HBI_FLAGS, add_backbone_flags, add_hbi_flags, add_train_flags

# The reference numbers its frame-selection modes.
_SLICE_NAMES = {"0": "head", "1": "tail", "2": "uniform", "head": "head", "tail": "tail", "uniform": "uniform"}


def slice_mode(text: str) -> str:
    """`--slice_framepos`: 0/head, 1/tail or 2/uniform."""
    if str(text) not in _SLICE_NAMES:
        raise argparse.ArgumentTypeError(f"expected 0/head, 1/tail or 2/uniform, got {text!r}")
    return _SLICE_NAMES[str(text)]


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (MSRVTT-QA jsonl: answer, question, video_id, answer_type)")
    g.add_argument("--train_csv", default="data/msrvtt_qa/train.jsonl", help="training questions")
    g.add_argument("--val_csv", default="data/msrvtt_qa/test.jsonl",
                   help="questions evaluated after every epoch (the best epoch is kept) and, without --test_csv, "
                        "at the end")
    g.add_argument("--test_csv", default=None, help="questions of the final evaluation (default: --val_csv)")
    g.add_argument("--data_path", default="data/msrvtt_qa/train_ans2label.json",
                   help="answer vocabulary: JSON object answer -> class id 0..N-1")
    g.add_argument("--features_path", default="data/msrvtt/videos", help="folder of <video_id>.mp4")
    g.add_argument("--demo_data", default=None,
                   help="write the synthetic demo clips and questions into this folder first (reused when complete)")
    g.add_argument("--max_words", type=int, default=32)
    g.add_argument("--max_frames", type=int, default=12)
    g.add_argument("--feature_framerate", "--video_framerate", dest="video_framerate", type=float, default=1.0,
                   help="frames per second read before sub-sampling")
    g.add_argument("--slice_framepos", type=slice_mode, default="uniform",
                   help="frames kept when a video has more than --max_frames: 0/head, 1/tail, 2/uniform")
    g.add_argument("--video_backend", default="decord", choices=["decord", "opencv"])
    g.add_argument("--skip_bad_videos", type=int, default=0,
                   help="training only: skip unreadable videos (counted in the log) instead of stopping")
    g.add_argument("--train_augment", type=int, default=1, help="clip-consistent RandAugment on training videos")
    g.add_argument("--num_thread_reader", "--workers", dest="workers", type=int, default=4,
                   help="data-loading processes per GPU/process")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    add_backbone_flags(g, "ViT-B/16")
    g.add_argument("--freeze_layer_num", type=int, default=0,
                   help="CLIP blocks below this index and CLIP's embeddings are frozen, as the reference's "
                        "--freeze_layer_num; -1 trains all of CLIP except the patch embedding unless "
                        "--train_patch_embedding 1")
    g.add_argument("--answer_dropout", type=float, default=0.1, help="dropout before each answer classifier")


def _add_published_command_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("accepted so the published commands run; each names the only behaviour there is")
    g.add_argument("--expand_msrvtt_sentences", action="store_true",
                   help="one sample per question (always so here)")
    g.add_argument("--loose_type", action="store_true", help="no effect in the reference's QA model either")
    g.add_argument("--linear_patch", default="2d", choices=["2d"], help="CLIP's 2-D patch embedding")
    g.add_argument("--datatype", default="msrvtt", choices=["msrvtt"], help="MSRVTT-QA jsonl format")


def vqa_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train and evaluate HBI video question answering (MSRVTT-QA format).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_data_flags(p)
    _add_model_flags(p)
    add_hbi_flags(p, "HBI", t_rate1=0.125, v_rate1=0.25, rate=(0.4, 0.4, 0.2),
                  rate_help="weights of the entity, action and event answer logits at inference")
    _add_published_command_flags(p)
    add_train_flags(p)
    p.set_defaults(batch_size=32, batch_size_val=16)
    return p


def qa_model_options(cfg: argparse.Namespace) -> dict:
    """Keyword arguments of HBIQAModel from the flags."""
    options = {name: getattr(cfg, name) for name in HBI_FLAGS}
    options["rate"] = tuple(options["rate"])
    options["dropout"] = cfg.answer_dropout
    options["train_patch_embedding"] = bool(cfg.train_patch_embedding)
    return options
