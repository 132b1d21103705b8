"""Rerun every evaluation of a tables file and write the paper's numbers beside the measured ones.

    python -m scripts.paper_tables [--config config/paper_tables.yaml] [--table NAME] [--set checkpoint=PATH]

The YAML holds `vars` (paths a user fills in; `--set key=value` overrides them) and `tables`: each table has
optional `prepare` steps (commands whose outputs the rows read, e.g. a querybank matrix) and `rows`, each with
`name`, `command` (argv of test.py / test_qb_norm.py, a list or a string), `dataset`, `inputs` (paths that must
exist), `read` (where the numbers are in the command's last JSON line: `t2v_{key}` or `after.{key}`) and `paper`
(the reported numbers). In commands and paths `${var}` is a var, `${run_dir}` the step's own folder
`<out_root>/<table>/<name>/` and `${tables_dir}` `<out_root>/<table>`. Steps run once each, one after another.
Writes `<out_root>/<table>.md` and `.json`; a step whose inputs are missing or that fails is reported, never
filled in, and the script exits 1 at the end listing them.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import yaml

from modules.engine.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("R1", "R5", "R10", "MdR", "MnR")


@dataclass
class Outcome:
    """What one step produced: its metrics, or why there are none."""
    metrics: dict = field(default_factory=dict)
    problem: str | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "config" / "paper_tables.yaml")
    p.add_argument("--table", action="append", default=None, help="only this table (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a var of the YAML, e.g. --set checkpoint=pretrained/hbi_msrvtt.pth")
    p.add_argument("--out_root", type=Path, default=ROOT / "outputs" / "tables")
    return p.parse_args(argv)


def load_spec(path: Path) -> dict:
    """The tables YAML, checked for the keys every table and row needs."""
    if not path.is_file():
        raise SystemExit(f"{path}: tables file not found")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec.get("tables"), dict) or not spec["tables"]:
        raise SystemExit(f"{path}: expected a mapping 'tables' of table name -> {{rows: [...]}}")
    for table, body in spec["tables"].items():
        for i, row in enumerate(body.get("rows", [])):
            missing = [k for k in ("name", "command", "read", "paper") if k not in row]
            if missing:
                raise SystemExit(f"{path}: table '{table}' row {i} lacks key(s) {', '.join(missing)}")
    return spec


def variables(spec: dict, overrides: list[str]) -> dict[str, str]:
    """The YAML's vars with `--set key=value` applied; an unknown key stops (a typo would be ignored)."""
    values = {k: str(v) for k, v in (spec.get("vars") or {}).items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in values:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(values)}")
        values[key] = value
    return values


def expand(text: str, values: dict[str, str]) -> str:
    """`${name}` substituted; an unknown name stops with the name."""
    try:
        return Template(text).substitute(values)
    except KeyError as err:
        raise SystemExit(f"unknown variable ${{{err.args[0]}}} in {text!r}") from None


def command_argv(command, values: dict[str, str]) -> list[str]:
    """A step's command as argv, variables expanded, run with this Python from the repository root."""
    parts = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    return [sys.executable, *(expand(p, values) for p in parts)]


def read_metrics(summary: dict, template: str) -> dict[str, float]:
    """The numbers of KEYS from the last JSON line: `t2v_{key}` at the top level, `after.{key}` nested."""
    out = {}
    for key in KEYS:
        node = summary
        for part in template.format(key=key).split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, (int, float)):
            out[key] = float(node)
    return out


def run_step(step: dict, values: dict[str, str], run_dir: Path) -> Outcome:
    """Check the inputs, run the command once in its run folder, and parse its last JSON line."""
    for path in step.get("inputs", []):
        if not Path(expand(str(path), values)).exists():
            return Outcome(problem=f"missing: {expand(str(path), values)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = command_argv(step["command"], values)
    (run_dir / "command.txt").write_text(shlex.join(argv) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    (run_dir / "stdout.txt").write_text(result.stdout)
    (run_dir / "stderr.txt").write_text(result.stderr)
    if result.returncode != 0:
        return Outcome(problem=f"failed (exit {result.returncode}): see {run_dir / 'stderr.txt'}")
    lines = result.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return Outcome(problem=f"no JSON last line: see {run_dir / 'stdout.txt'}")
    return Outcome(metrics=summary)


def cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def markdown(table: str, title: str, rows: list[dict]) -> str:
    """Paper, measured and difference for every row; a row without measured numbers says why in `note`."""
    columns = ["dataset"] + [f"{k} {s}" for k in KEYS for s in ("paper", "ours", "Δ")] + ["note"]
    cells = {}
    for row in rows:
        line = {"dataset": row["dataset"], "note": row["problem"] or ""}
        for key in KEYS:
            paper, ours = row["paper"].get(key), row["measured"].get(key)
            diff = None if paper is None or ours is None else ours - paper
            line.update({f"{key} paper": cell(paper), f"{key} ours": cell(ours),
                         f"{key} Δ": "–" if diff is None else f"{diff:+.1f}"})
        cells[row["name"]] = line
    return f"# {title or table}\n\n" + markdown_table(cells, columns, head="row", fmt=str) + "\n"


def run_table(table: str, body: dict, values: dict[str, str], out_root: Path) -> list[str]:
    """Prepare steps, then rows, sequentially; writes <table>.md and <table>.json; returns the problems."""
    tables_dir = out_root / table
    problems, rows = [], []
    for step in body.get("prepare", []):
        run_dir = tables_dir / step["name"]
        outcome = run_step(step, {**values, "run_dir": str(run_dir), "tables_dir": str(tables_dir)}, run_dir)
        if outcome.problem:
            problems.append(f"{table}/{step['name']}: {outcome.problem}")
    for row in body.get("rows", []):
        run_dir = tables_dir / row["name"]
        outcome = run_step(row, {**values, "run_dir": str(run_dir), "tables_dir": str(tables_dir)}, run_dir)
        measured = {} if outcome.problem else read_metrics(outcome.metrics, row["read"])
        problem = outcome.problem or (None if measured else f"no metrics at '{row['read']}' in the last line")
        rows.append({"name": row["name"], "dataset": row.get("dataset", ""), "paper": row["paper"],
                     "measured": measured, "problem": problem, "run_dir": str(run_dir)})
        if problem:
            problems.append(f"{table}/{row['name']}: {problem}")
        print(f"[{table}] {row['name']}: {problem or measured}", flush=True)
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / f"{table}.md").write_text(markdown(table, body.get("title", ""), rows))
    (out_root / f"{table}.json").write_text(json.dumps({"table": table, "rows": rows, "problems": problems},
                                                       indent=1))
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = load_spec(args.config)
    values = variables(spec, args.overrides)
    names = args.table or list(spec["tables"])
    unknown = [n for n in names if n not in spec["tables"]]
    if unknown:
        raise SystemExit(f"{args.config}: no table {unknown[0]!r}; tables: {', '.join(spec['tables'])}")
    problems = []
    for name in names:
        problems += run_table(name, spec["tables"][name], values, args.out_root)
        print(f"wrote {args.out_root / name}.md", flush=True)
    if problems:
        print("incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
