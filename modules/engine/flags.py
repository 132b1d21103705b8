"""Command-line flags every system shares: the run (folder, seed, device, precision, loaders) and training.

Names and meanings are the papers' (`--do_train 1 --do_eval 1 --epochs --batch_size --lr --coef_lr ...`).
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from modules.engine.precision import PRECISIONS


def json_dict(text: str) -> dict:
    """A flag value that is a JSON object (e.g. `--clip_arch '{"embed_dim": 128, ...}'`)."""
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """A flag type that refuses values outside a range at parse time (not later, in a worker)."""
    def parse(text: str) -> Any:
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")  # batch sizes, epochs, frames
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _checked(float, lambda v: v > 0, "a positive number")
unit_interval = _checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")  # probabilities such as dropout


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Where the run writes, how it is seeded, where it runs and how evaluation batches are loaded."""
    g = p.add_argument_group("run")
    g.add_argument("--output_dir", default="outputs/run")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    g.add_argument("--batch_size_val", type=positive_int, default=128, help="per-process batch when encoding")
    g.add_argument("--workers", "--num_thread_reader", dest="workers", type=non_negative_int, default=4,
                   help="data-loading processes per GPU/process")
    g.add_argument("--overwrite", type=int, default=0,
                   help="1: replace the earlier run's files in --output_dir (otherwise a run never replaces them)")
    g.add_argument("--debug", type=int, default=0, help="1: errors about the input show their traceback")


def add_train_flags(p: argparse.ArgumentParser, do_eval: bool = True) -> None:
    """The optimisation flags; `--do_eval` only where the script has a final evaluation."""
    g = p.add_argument_group("training")
    g.add_argument("--do_train", type=int, nargs="?", const=1, default=0, help="`--do_train` or `--do_train 1`")
    if do_eval:
        g.add_argument("--do_eval", type=int, nargs="?", const=1, default=0, help="`--do_eval` or `--do_eval 1`")
    g.add_argument("--epochs", type=positive_int, default=5)
    g.add_argument("--batch_size", type=positive_int, default=128, help="global batch over all processes")
    g.add_argument("--lr", type=float, default=1e-4, help="learning rate of the new layers")
    g.add_argument("--coef_lr", type=float, default=1e-3, help="the backbone's learning rate is lr * coef_lr")
    g.add_argument("--weight_decay", type=float, default=0.2)
    g.add_argument("--warmup_proportion", type=float, default=0.1)
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="0 turns clipping off")
    g.add_argument("--grad_accum_steps", type=positive_int, default=1)
    g.add_argument("--n_display", type=positive_int, default=50, help="log the losses every n optimizer steps")
    g.add_argument("--evals_per_epoch", type=positive_int, default=1,
                   help="validation evaluations per epoch, evenly spaced, the last at its end; each may select the "
                        "best weights")
    g.add_argument("--resume", type=int, default=0,
                   help="1: continue the run in --output_dir from its last.pt, with its own config.yaml")


def dests(add_flags, *args) -> frozenset[str]:
    """The destinations of the flags that `add_flags(parser, *args)` adds (e.g. to recognise a training preset)."""
    p = argparse.ArgumentParser(add_help=False)
    add_flags(p, *args)
    return frozenset(a.dest for a in p._actions)


TRAIN_FLAGS = dests(add_train_flags)
