"""The run's log: readable lines in log.txt, one JSON object per measurement in metrics.jsonl, TensorBoard."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from modules.engine.checkpoint import atomic_write

METRICS_NAME = "metrics.jsonl"


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
    """One per run. Every rank may call it; only the main rank prints and writes files.

    Until `attach(output_dir)` the lines are printed and kept, so a run that stops before its folder is prepared
    (bad input, nothing to train on) writes nothing; `attach` writes them to the log file first.
    """

    def __init__(self, output_dir: str | Path | None = None, is_main: bool = True, tensorboard: bool = True) -> None:
        self.is_main = is_main
        self.output_dir: Path | None = None
        self._log = self._jsonl = self._writer = None
        self._pending: list[str] = []
        self._tensorboard = tensorboard
        if output_dir is not None:
            self.attach(output_dir)

    def attach(self, output_dir: str | Path, log_name: str = "log.txt", metrics: bool = True) -> None:
        """Open the run's files: `log_name`, and with `metrics` metrics.jsonl and TensorBoard events.

        Line-buffered appends: a killed run keeps every line written so far, a resumed run continues the files."""
        self.output_dir = Path(output_dir)
        if not self.is_main:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.output_dir / log_name, "a", buffering=1)
        for line in self._pending:
            self._log.write(line + "\n")
        self._pending = []
        if metrics:
            self._jsonl = open(self.output_dir / METRICS_NAME, "a", buffering=1)
            self._open_tensorboard()

    def _open_tensorboard(self, purge_step: int | None = None) -> None:
        if self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow, and unused on other ranks

            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"), purge_step=purge_step)

    def rewind(self, step: int) -> int:
        """A resume from the checkpoint of step `step`: drop the records a killed run wrote after it (and a finished
        run's final test record) from metrics.jsonl and TensorBoard, so each step is recorded once. Returns how many
        records were dropped."""
        if not self.is_main or self._jsonl is None:
            return 0
        self._jsonl.close()
        path = self.output_dir / METRICS_NAME
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if _before_or_at(line, step)]
        atomic_write(path, lambda f: f.write("".join(line + "\n" for line in kept).encode()))
        self._jsonl = open(path, "a", buffering=1)
        if self._writer is not None:
            self._writer.close()
            self._open_tensorboard(purge_step=step + 1)
        return len(lines) - len(kept)

    def info(self, msg: str) -> None:
        """Print a time-stamped message and append it to the log file."""
        if not self.is_main:
            return
        line = f"[{_stamp()}] {msg}"
        print(line, file=sys.stdout, flush=True)
        if self._log is not None:
            self._log.write(line + "\n")
        else:
            self._pending.append(line)

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


def _before_or_at(line: str, step: int) -> bool:
    """A metrics.jsonl record that a resume from `step` keeps: training and validation up to that step."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:  # the half line of a killed write
        return False
    return record.get("split") != "test" and 0 <= int(record.get("step", -1)) <= step
