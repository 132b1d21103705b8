"""Helpers shared by the tests: the repository root, the golden tolerance, the tiny model's flags, launchers."""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARCH = ('{"embed_dim": 64, "image_size": 32, "patch_size": 16, "vision_width": 64, "vision_layers": 1, '
        '"context_length": 16, "vocab_size": 49408, "text_width": 64, "text_layers": 1}')


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> bool:
    """1e-4 absolute or relative, whichever is looser, element by element (the golden README's rule)."""
    bound = torch.clamp(expected.abs() * tol, min=tol)
    return bool(((actual - expected).abs() <= bound).all())


def eval_argv(data: Path, out: Path, *extra: str) -> list[str]:
    """Data, model and run flags of the tiny random WTI model on the tiny demo data (what evaluation takes)."""
    return ["--model", "wti", "--datatype", "msrvtt", "--anno_path", str(data), "--video_path", str(data / "videos"),
            "--output_dir", str(out), "--clip_arch", ARCH, "--num_hidden_layers", "1", "--max_words", "12",
            "--max_frames", "4", "--video_framerate", "4", "--batch_size_val", "3", "--workers", "0", "--seed", "3",
            "--device", "cpu", *extra]


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    """`eval_argv` plus one short epoch of training (no --do_eval: banzhaf_estimator.py has none)."""
    return ["--do_train", "1", "--batch_size", "8", "--epochs", "1", "--lr", "1e-3", "--coef_lr", "1",
            "--n_display", "2", *eval_argv(data, out, *extra)]


def argv(data: Path, out: Path, *extra: str) -> list[str]:
    """main_retrieval.py: train one epoch, then evaluate."""
    return ["--do_eval", "1", *train_argv(data, out, *extra)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], processes: int, script: str = "main_retrieval.py") -> subprocess.CompletedProcess:
    """The script in a subprocess: plain python for one process, torch.distributed.run (gloo) for more."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                f"--master_port={free_port()}"] if processes > 1 else [sys.executable]
    result = subprocess.run([*launcher, str(ROOT / script), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load_test_entry() -> ModuleType:
    """test.py as a module (the name `test` is taken by the standard library)."""
    spec = importlib.util.spec_from_file_location("test_entry", ROOT / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
