"""The flags of HAP-VR training (`main_hapvr.py`): the published train.py names and defaults, so every flag of its
scripts/train.sh parses unchanged. Each maps onto this repository's run (e.g. `--experiment_path` is the run folder,
`--iter_epochs` the total of optimiser steps, `--log_step` the logging interval); `resolve` derives the engine's
settings from them. Flags of options this repository does not implement (binarisation, other backbones, Max/Average
similarity modules) do not exist, so a command asking for one stops at parsing.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

from dataloaders.video_video.annotations import DEFAULT_DIR
from modules.engine.flags import non_negative_int, positive_float, positive_int, unit_interval
from modules.video_video_commands import DATASETS, bool_flag

LOSSES = ("TBInnerQuadLinearAP", "QuadLinearAP", "InfoNCE", "SSHN")
AUGMENTATIONS = ("GT", "FT", "TT", "ViV")
SIM_MODULES = ("TopKChamfer", "Chamfer")


def names(allowed: tuple[str, ...], what: str):
    """A comma-separated list of `allowed` names (`GT,FT,TT,ViV`)."""
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t for t in text.split(",") if t)
        unknown = [t for t in items if t not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; expected some of {','.join(allowed)}")
        return items
    return parse


def add_experiment_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("experiment (the published train.py)")
    g.add_argument("--dataset_path", default=None, help="training videos: a folder of frame folders "
                   "(scripts/extract_frames.py) or of video files")
    g.add_argument("--experiment_path", dest="output_dir", required=True, help="the run folder")
    g.add_argument("--workers", type=non_negative_int, default=12, help="data-loading processes per process")
    g.add_argument("--log_step", dest="n_display", type=positive_int, default=100, help="log every n steps")
    g.add_argument("--use_fp16", type=bool_flag, default=False,
                   help="mixed precision: fp16 autocast with a gradient scaler on GPU, bf16 autocast on CPU")
    g.add_argument("--eval_step", type=positive_int, default=400,
                   help="optimiser steps between evaluations (and checkpoints: a run resumes from the last one)")
    g.add_argument("--eval_dataset", default=None, choices=DATASETS, help="benchmark evaluated every --eval_step")
    g.add_argument("--eval_hdf5", default=None, help="its HDF5 feature file (test.py --dataset_hdf5)")
    g.add_argument("--eval_annotations", default=str(DEFAULT_DIR), help="its annotation files")


def add_network_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("similarity network and features")
    g.add_argument("--dims", type=positive_int, default=512, help="region feature width (the PCA output)")
    g.add_argument("--attention", type=bool_flag, default=True, help="the region attention layer")
    g.add_argument("--f2f_sim_module", default="TopKChamfer", choices=SIM_MODULES)
    g.add_argument("--v2v_sim_module", default="TopKChamfer", choices=SIM_MODULES)
    g.add_argument("--f_topk_rate", type=unit_interval, default=0.3, help="top-k share of target regions")
    g.add_argument("--v_topk_rate", type=unit_interval, default=0.1, help="top-k share of target frames")
    g.add_argument("--resnet_path", default=None, help="torchvision ImageNet ResNet-50 weights (.pth)")
    g.add_argument("--pca_path", default=None, help="PCA whitening of the 3840-d region vectors (.npz/.pt; "
                   "python -m scripts.fit_pca makes one)")
    g.add_argument("--pretrained_DINO_path", default=None, help="DINO ViT-S/16 weights, the frame teacher")
    g.add_argument("--DINO_arch", default="vit_small", choices=("vit_small",))
    g.add_argument("--random_init", type=bool_flag, default=False,
                   help="demos and tests: random feature extractor and teacher instead of the weight files")


def add_loss_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("losses")
    g.add_argument("--loss_selected", "--loss_select", type=names(LOSSES, "loss"), default=LOSSES,
                   help="comma-separated: " + ",".join(LOSSES))
    g.add_argument("--qlap_sigma", type=positive_float, default=0.1)
    g.add_argument("--qlap_rho", type=positive_float, default=1.0)
    g.add_argument("--innerAP_qlap_sigma", type=positive_float, default=0.1)
    g.add_argument("--innerAP_qlap_rho", type=positive_float, default=1.0)
    g.add_argument("--inner_parameter", type=float, default=6.0, help="weight of the frame-level (inner) AP loss")
    g.add_argument("--pseudo_label_top_rate", type=unit_interval, default=0.3)
    g.add_argument("--pseudo_label_bottom_rate", type=unit_interval, default=0.3)
    g.add_argument("--temperature", type=positive_float, default=0.03, help="InfoNCE temperature")
    g.add_argument("--lambda_parameter", type=float, default=3.0, help="weight of the SSHN loss")
    g.add_argument("--r_parameter", type=float, default=1.0, help="weight of the similarity regulariser")


def add_training_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--batch_sz", type=positive_int, default=64, help="clips (video pairs) per process and step")
    g.add_argument("--batch_sz_fe", type=positive_int, default=512, help="frames per feature-extraction batch")
    g.add_argument("--iter_epochs", type=positive_int, default=30000, help="optimiser steps of the whole run")
    g.add_argument("--percentage", type=positive_float, default=1.0, help="share of the training videos used")
    g.add_argument("--learning_rate", dest="lr", type=positive_float, default=4e-5)
    g.add_argument("--final_lr", type=unit_interval, default=0.1, help="final lr as a share of --learning_rate")
    g.add_argument("--warmup_iters", type=non_negative_int, default=1000)
    g.add_argument("--warmup_lr_init", type=unit_interval, default=0.01,
                   help="first warm-up lr as a share of --learning_rate")
    g.add_argument("--weight_decay", type=float, default=0.01)
    g.add_argument("--window_sz", type=positive_int, default=32, help="frames (1 fps) of each training clip")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--resume", type=int, default=0, help="1: continue the run in --experiment_path")
    g.add_argument("--overwrite", type=int, default=0, help="1: replace the earlier run in --experiment_path")
    g.add_argument("--debug", type=int, default=0, help="1: errors about the input show their traceback")


def add_augmentation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("augmentations (strong view; the weak view is a mild crop, flip and colour change)")
    g.add_argument("--augmentations", type=names(AUGMENTATIONS, "augmentation"), default=AUGMENTATIONS,
                   help="GT: global (RandAugment), FT: frame (overlays, blur), TT: temporal, ViV: video-in-video")
    g.add_argument("--n_raug", type=non_negative_int, default=2)
    g.add_argument("--m_raug", type=non_negative_int, default=9)
    for name, default in (("p_overlay", .3), ("p_blur", .5), ("p_tsd", .5), ("p_ff", .1), ("p_sm", .1),
                          ("p_rev", .1), ("p_pau", .1), ("p_shuffle", .5), ("p_dropout", .3), ("p_content", .5),
                          ("p_viv", .3)):
        g.add_argument(f"--{name}", type=unit_interval, default=default)
    g.add_argument("--lambda_viv", type=lambda x: tuple(map(float, x.split(","))), default=(.3, .7),
                   help="resize range of the inner video, e.g. 0.3,0.7")


def add_repository_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("this repository")
    g.add_argument("--frame_sz", type=positive_int, default=224, help="side of the training views (the reference's 224)")
    g.add_argument("--resize", type=positive_int, default=256, help="short side the training frames are read at")
    g.add_argument("--demo_data", default=None, help="write the synthetic demo (training videos and a FIVR-style "
                   "benchmark of raw videos) here and train and evaluate on it")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train HAP-VR (self-supervised video-to-video retrieval).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for add in (add_experiment_flags, add_network_flags, add_loss_flags, add_training_flags, add_augmentation_flags,
                add_repository_flags):
        add(p)
    # The engine's settings that HAP-VR's recipe fixes (resolve() derives the rest).
    p.set_defaults(do_train=1, coef_lr=1.0, warmup_proportion=0.0, max_grad_norm=0.0, grad_accum_steps=1,
                   evals_per_epoch=1, precision="fp32", epochs=1, batch_size=1)
    return p


def resolve(cfg: argparse.Namespace) -> None:
    """The engine's view of the published flags: an epoch is --eval_step steps (evaluated and checkpointed at its
    end), --iter_epochs steps in all (rounded up to whole epochs); the global batch is --batch_sz per process, as
    the reference's per-GPU loader; --use_fp16 is autocast (fp16 on GPU, bf16 on CPU). --demo_data names the
    training folder and the benchmark."""
    if cfg.demo_data:
        root = Path(cfg.demo_data)
        cfg.dataset_path = str(root / "train")
        cfg.eval_dataset, cfg.eval_hdf5, cfg.eval_annotations = "FIVR-5K", str(root / "eval" / "fivr_5k.hdf5"), \
            str(root / "eval")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg.batch_size = cfg.batch_sz * world
    cfg.epochs = math.ceil(cfg.iter_epochs / cfg.eval_step)
    on_gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    cfg.precision = ("amp_fp16" if on_gpu else "amp_bf16") if cfg.use_fp16 else "fp32"
    cfg.do_eval = int(cfg.eval_dataset is not None)


def check(cfg: argparse.Namespace) -> None:
    if cfg.dataset_path is None:
        raise SystemExit("main_hapvr.py: pass --dataset_path (the training videos) or --demo_data DIR")
    if (cfg.eval_dataset is None) != (cfg.eval_hdf5 is None):
        raise SystemExit("main_hapvr.py: --eval_dataset and --eval_hdf5 go together (the benchmark and its features)")
