"""The run's log: readable lines in log.txt, one JSON object per measurement in metrics.jsonl, TensorBoard."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: Any) -> float | int:
    """Plain number from a python/numpy/torch scalar, so the JSON line and TensorBoard agree; None is NaN."""
    if value is None:
        return math.nan
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested groups of metrics become `group/key` (e.g. VQA accuracies per answer type)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class RunLog:
    """One per run. Every rank may call it; only the main rank prints and writes files."""

    def __init__(self, output_dir: str | Path, is_main: bool, tensorboard: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.is_main = is_main
        self._log = self._jsonl = self._writer = None
        if not is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # Line-buffered append: a killed run keeps every line written so far, a resumed run continues the file.
        self._log = open(self.output_dir / "log.txt", "a", buffering=1)
        self._jsonl = open(self.output_dir / "metrics.jsonl", "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow, and unused on other ranks

            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def info(self, msg: str) -> None:
        """Print a time-stamped message and append it to log.txt."""
        if not self.is_main:
            return
        line = f"[{_stamp()}] {msg}"
        print(line, file=sys.stdout, flush=True)
        if self._log is not None:
            self._log.write(line + "\n")

    def metrics(self, step: int, split: str, values: dict[str, Any]) -> None:
        """Record scalar `values` of `split` (e.g. train, val, test) at optimiser step `step`."""
        if not self.is_main:
            return
        numbers = {key: _number(value) for key, value in _flatten(values).items()}
        record = {"time": round(time.time(), 3), "step": int(step), "split": split, **numbers}
        if self._jsonl is not None:
            # NaN/inf are not JSON; null keeps the line parseable by any reader.
            safe = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
            self._jsonl.write(json.dumps(safe) + "\n")
        if self._writer is not None:
            for key, value in numbers.items():
                self._writer.add_scalar(f"{split}/{key}", value, global_step=step)
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the files; safe to call twice."""
        for handle in (self._log, self._jsonl, self._writer):
            if handle is not None:
                handle.close()
        self._log = self._jsonl = self._writer = None
