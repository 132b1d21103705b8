"""What the CLIP systems on raw video share (text-video retrieval, VQA, the Banzhaf estimator): their video and
backbone flags, HBI's flags, building the model from a weight file, and the data options from the config."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from torch import nn

from dataloaders.video.reader import BACKENDS, SLICE_MODES
from models.clip.adapter import ClipConfig
from models.clip.loading import load_weights
from models.text_video.temporal import TEMPORAL_MODULES
from modules.engine.flags import json_dict, positive_float, positive_int

# The reference numbers its frame-selection modes (--slice_framepos 0/1/2).
_SLICE_NUMBERS = {"0": "head", "1": "tail", "2": "uniform"}
# Flags of HBI's structure (needed to build the model) and of its training loss.
HBI_STRUCTURE_FLAGS = ("t_rate0", "t_rate1", "v_rate0", "v_rate1", "rate")
HBI_LOSS_FLAGS = ("kl", "skl")


def slice_mode(text: str) -> str:
    """`--slice_framepos`: 0/head, 1/tail or 2/uniform."""
    mode = _SLICE_NUMBERS.get(str(text), str(text))
    if mode not in SLICE_MODES:
        raise argparse.ArgumentTypeError(f"expected 0/head, 1/tail or 2/uniform, got {text!r}")
    return mode


def add_video_flags(p: argparse.ArgumentParser, title: str = "video") -> None:
    """Where the videos are and how frames are sampled, decoded and augmented."""
    g = p.add_argument_group(title)
    g.add_argument("--video_path", "--features_path", dest="video_path", default="data/msrvtt/videos",
                   help="folder of the video files")
    g.add_argument("--max_words", type=positive_int, default=32)
    add_frame_flags(g)
    g.add_argument("--skip_bad_videos", type=int, default=0,
                   help="training only: skip unreadable videos (counted in the log) instead of stopping")
    g.add_argument("--train_augment", type=int, default=1,
                   help="clip-consistent RandAugment on training videos (the reference always applies it)")


# The flags that decide which frames of a video are read and how: what a search index is built with.
FRAME_FLAGS = ("max_frames", "video_framerate", "slice_framepos", "video_backend")


def add_frame_flags(g) -> None:
    """How frames are sampled and decoded (`FRAME_FLAGS`), into the argument group `g`."""
    g.add_argument("--max_frames", type=positive_int, default=12)
    g.add_argument("--video_framerate", "--feature_framerate", dest="video_framerate", type=positive_float,
                   default=1.0, help="frames per second read before sub-sampling")
    g.add_argument("--slice_framepos", type=slice_mode, default="uniform",
                   help="frames kept when a video has more than --max_frames: 0/head, 1/tail, 2/uniform")
    g.add_argument("--video_backend", default="decord", choices=list(BACKENDS))


def add_backbone_flags(g, base_encoder: str, training: bool = True) -> None:
    """CLIP and the temporal module on top of it; where the weights come from; with `training`, whether CLIP's
    patch embedding trains."""
    g.add_argument("--agg_module", default="seqTransf", choices=list(TEMPORAL_MODULES))
    g.add_argument("--num_hidden_layers", type=int, default=4, help="layers of the temporal transformer")
    g.add_argument("--base_encoder", default=base_encoder,
                   help="CLIP name, resolved to pretrained/<name with / as ->.pt when --clip_path is not given")
    g.add_argument("--clip_path", default=None, help="OpenAI CLIP weights (.pt archive or state dict)")
    g.add_argument("--clip_arch", type=json_dict, default=None,
                   help="JSON sizes of a randomly initialised CLIP (demo and tests), e.g. "
                        '{"embed_dim": 128, "image_size": 64, ...}')
    g.add_argument("--init_model", default=None, help="a checkpoint of this repository or a released one")
    if training:
        g.add_argument("--train_patch_embedding", type=int, default=0,
                       help="1 trains CLIP's patch embedding (visual.conv1), which the reference keeps frozen")


def add_hbi_flags(p: argparse.ArgumentParser, title: str, training: bool = True, t_rate1: float = 0.5,
                  v_rate1: float = 0.5, rate: tuple[float, float, float] = (1.0, 0.0, 0.0),
                  rate_help: str = "weights of the entity, action and event similarities at evaluation") -> None:
    """HBI's merge rates and level weights; with `training` also the estimator and the loss weights."""
    g = p.add_argument_group(title)
    if training:
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


def hbi_options(cfg: argparse.Namespace) -> dict:
    """Keyword arguments of the HBI models from the HBI flags this parser has."""
    options = {name: getattr(cfg, name) for name in (*HBI_STRUCTURE_FLAGS, *HBI_LOSS_FLAGS) if hasattr(cfg, name)}
    if "rate" in options:
        options["rate"] = tuple(options["rate"])
    return options


def clip_weights_path(cfg: argparse.Namespace) -> Path:
    return Path(cfg.clip_path) if cfg.clip_path else Path("pretrained") / (cfg.base_encoder.replace("/", "-") + ".pt")


def build_clip_model(cfg: argparse.Namespace, build: Callable[[ClipConfig], nn.Module], what: str) -> nn.Module:
    """From --init_model, else OpenAI CLIP weights (--clip_path / --base_encoder), else --clip_arch sizes
    (`build(config)` makes the model of those sizes); then HBI's teacher estimator from --estimator."""
    weights = Path(cfg.init_model) if cfg.init_model else clip_weights_path(cfg)
    if cfg.init_model or weights.is_file():
        model = load_weights(weights, build, what)
    elif cfg.clip_arch:
        model = build(ClipConfig(**cfg.clip_arch))
    else:
        raise SystemExit(f"CLIP weights not found at {weights}: pass --clip_path (an OpenAI CLIP .pt file), "
                         "--init_model, or --clip_arch for a randomly initialised model")
    if getattr(cfg, "estimator", None):
        if not hasattr(model, "load_estimator"):
            raise SystemExit(f"--estimator applies to HBI models only, not {what}")
        model.load_estimator(cfg.estimator)
    return model


def video_options(cfg: argparse.Namespace, input_spec: dict, train: bool) -> dict:
    """Keyword arguments of the video datasets: sampling from the flags, input size from the model."""
    options = dict(max_words=cfg.max_words, max_frames=cfg.max_frames, video_framerate=cfg.video_framerate,
                   slice_framepos=cfg.slice_framepos, backend=cfg.video_backend, seed=cfg.seed, **input_spec)
    if train:
        options.update(train=True, augment=bool(cfg.train_augment), skip_bad_videos=bool(cfg.skip_bad_videos))
    return options
