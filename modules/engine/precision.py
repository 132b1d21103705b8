"""`--precision`: fp32 master weights, optional autocast; losses are computed in fp32 by the models."""
from __future__ import annotations

from contextlib import nullcontext

import torch

# --precision name -> autocast dtype (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}


def autocast_context(device: torch.device, precision: str):
    """Autocast for `--precision amp_fp16|amp_bf16`; fp32 runs without it."""
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise SystemExit(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "amp_fp16" and device.type not in ("cuda", "cpu"):
        raise SystemExit(f"--precision amp_fp16 runs on CUDA or the CPU, not on {device.type}")
