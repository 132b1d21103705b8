"""Markdown tables of metrics, written atomically into the run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from modules.engine.checkpoint import atomic_write


def cell(value: float | None, digits: int = 1) -> str:
    """A number with `digits` decimals; "-" where there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: Mapping[str, Mapping], columns: Sequence[str], head: str = "",
                   headers: Sequence[str] | None = None,
                   fmt: Callable[[object], str] = cell) -> str:
    """One line per named row; `columns` are the keys read from each row (`headers` their titles)."""
    titles = list(headers or columns)
    lines = [(f"| {head} | " if head else "| | ") + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, text: str) -> Path:
    """`text` (plus a final newline) at `path`, written atomically."""
    atomic_write(path, lambda f: f.write((text + "\n").encode()))
    return path
