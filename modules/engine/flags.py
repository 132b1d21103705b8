"""Command-line flags of the retrieval entry scripts, with the names and meanings of the papers' commands."""
from __future__ import annotations

import argparse
import json


def _json_dict(text: str) -> dict:
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--datatype", default="msrvtt", help="msrvtt | msvd | lsmdc | activity | didemo")
    g.add_argument("--anno_path", default="data/msrvtt", help="folder of the annotation files")
    g.add_argument("--video_path", default="data/msrvtt/videos", help="folder of the video files")
    g.add_argument("--train_csv", default="MSRVTT_train.9k.csv", help="msrvtt training split file (9k or 7k)")
    g.add_argument("--max_words", type=int, default=32)
    g.add_argument("--max_frames", type=int, default=12)
    g.add_argument("--video_framerate", type=float, default=1.0, help="frames per second read before sub-sampling")
    g.add_argument("--slice_framepos", default="uniform", choices=["head", "tail", "uniform"],
                   help="which frames to keep when a video has more than --max_frames")
    g.add_argument("--video_backend", default="decord", choices=["decord", "opencv"])
    g.add_argument("--skip_bad_videos", type=int, default=0,
                   help="training only: skip unreadable videos (counted in the log) instead of stopping")
    g.add_argument("--train_augment", type=int, default=1,
                   help="clip-consistent RandAugment on training videos (the reference always applies it)")
    g.add_argument("--workers", type=int, default=4, help="data-loading processes per GPU/process")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="hbi", choices=["hbi", "wti", "meanp", "meanmax"],
                   help="HBI (hierarchical Banzhaf interaction, the reference's model), or one level: weighted "
                        "token-wise, sentence vs mean frame, or token-wise with plain means")
    add_backbone_flags(g, "ViT-B/32")


def add_backbone_flags(g, base_encoder: str) -> None:
    g.add_argument("--agg_module", default="seqTransf", choices=["seqTransf", "meanP"])
    g.add_argument("--num_hidden_layers", type=int, default=4, help="layers of the temporal transformer")
    g.add_argument("--base_encoder", default=base_encoder,
                   help="CLIP name, resolved to pretrained/<name with / as ->.pt when --clip_path is not given")
    g.add_argument("--clip_path", default=None, help="OpenAI CLIP weights (.pt archive or state dict)")
    g.add_argument("--clip_arch", type=_json_dict, default=None,
                   help="JSON sizes of a randomly initialised CLIP (demo and tests), e.g. "
                        '{"embed_dim": 128, "image_size": 64, ...}')
    g.add_argument("--init_model", default=None, help="a checkpoint of this repository or a released one")
    g.add_argument("--train_patch_embedding", type=int, default=0,
                   help="1 trains CLIP's patch embedding (visual.conv1), which the reference keeps frozen")


def add_hbi_flags(p: argparse.ArgumentParser, title: str = "HBI (--model hbi only)", t_rate1: float = 0.5,
                  v_rate1: float = 0.5, rate: tuple[float, float, float] = (1.0, 0.0, 0.0),
                  rate_help: str = "weights of the entity, action and event similarities at evaluation") -> None:
    g = p.add_argument_group(title)
    g.add_argument("--estimator", default=None,
                   help="Banzhaf-interaction estimator weights (banzhaf_estimator.py output or a released file)")
    g.add_argument("--kl", type=float, default=0.2, help="weight of the inter-level KL terms")
    g.add_argument("--skl", type=float, default=1.0, help="weight of the estimator distillation per level")
    g.add_argument("--t_rate0", type=float, default=0.25, help="words kept (as a fraction) at the action level")
    g.add_argument("--t_rate1", type=float, default=t_rate1, help="words kept at the event level (of the action level)")
    g.add_argument("--v_rate0", type=float, default=0.25, help="frames kept at the action level")
    g.add_argument("--v_rate1", type=float, default=v_rate1, help="frames kept at the event level")
    g.add_argument("--rate", type=float, nargs=3, default=list(rate), metavar=("ENTITY", "ACTION", "EVENT"),
                   help=rate_help)


HBI_FLAGS = ("kl", "skl", "t_rate0", "t_rate1", "v_rate0", "v_rate1", "rate")


def hbi_options(cfg: argparse.Namespace) -> dict:
    """Keyword arguments of HBIModel from the flags (empty for the other models)."""
    if cfg.model != "hbi":
        return {}
    options = {name: getattr(cfg, name) for name in HBI_FLAGS}
    options["rate"] = tuple(options["rate"])
    return options


def add_train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--do_train", type=int, nargs="?", const=1, default=0, help="`--do_train` or `--do_train 1`")
    g.add_argument("--do_eval", type=int, nargs="?", const=1, default=0, help="`--do_eval` or `--do_eval 1`")
    g.add_argument("--output_dir", default="outputs/run")
    g.add_argument("--epochs", type=int, default=5)
    g.add_argument("--batch_size", type=int, default=128, help="global batch over all processes")
    g.add_argument("--batch_size_val", type=int, default=128, help="per-process batch when encoding")
    g.add_argument("--lr", type=float, default=1e-4, help="learning rate of the new layers")
    g.add_argument("--coef_lr", type=float, default=1e-3, help="CLIP's learning rate is lr * coef_lr")
    g.add_argument("--weight_decay", type=float, default=0.2)
    g.add_argument("--warmup_proportion", type=float, default=0.1)
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="0 turns clipping off")
    g.add_argument("--grad_accum_steps", type=int, default=1)
    g.add_argument("--precision", default="fp32", choices=["fp32", "amp_fp16", "amp_bf16"])
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--n_display", type=int, default=50, help="log the losses every n optimizer steps")
    g.add_argument("--resume", type=int, default=0, help="continue from output_dir/last.pt")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")


def retrieval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train and evaluate text-video retrieval (HBI, WTI, meanP).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p)
    add_model_flags(p)
    add_hbi_flags(p)
    add_train_flags(p)
    return p
