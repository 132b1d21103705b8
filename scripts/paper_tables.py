"""Rerun every evaluation of a tables file and write the paper's numbers beside the measured ones.

    python -m scripts.paper_tables [--config config/paper_tables.yaml] [--table NAME] [--set checkpoint=PATH]

The YAML holds `vars` (paths a user fills in; `--set key=value` overrides them) and `tables`: each table has
optional `prepare` steps (commands whose outputs the rows read, e.g. a querybank matrix) and `rows`, each with
`name`, `command` (argv of test.py / test_qb_norm.py, a list or a string), `dataset`, `inputs` (paths that must
exist), `read` (where the numbers are in the command's last JSON line: `t2v_{key}` or `after.{key}`), `result`
(the result file the command writes in its folder, whose provenance the table records) and `paper` (the reported
numbers). In commands and paths `${var}` is a var, `${run_dir}` the step's own folder `<out_root>/<table>/<name>/`
and `${tables_dir}` `<out_root>/<table>`. Relative paths are relative to the repository root, where the commands
run.

Every run starts the table's folder afresh (the folder of an earlier run is replaced, and a line says so), so a
step reads only what a step of this run wrote: a path under `${tables_dir}` (in `inputs` or in the command) names
the step that writes it, which must come earlier, and a step whose producer failed or did not run is marked failed
naming it. Missing inputs of every step are listed before anything runs. Steps run once each, one after another.
Writes `<out_root>/<table>.md` and `.json` (each row with the provenance its result file records); a step whose
inputs are missing or that fails is reported, never filled in, and the script exits 1 at the end listing them.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import yaml

from modules.engine.checkpoint import atomic_write
from modules.engine.provenance import command_line, utc_now, write_json
from modules.engine.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("R1", "R5", "R10", "MdR", "MnR")
MARKER = ".paper_tables.json"  # written into <out_root>/<table>/: the folder is this script's to replace


@dataclass
class Step:
    """One prepare step or row, its variables expanded: what it runs, reads and writes."""
    name: str
    entry: dict
    run_dir: Path
    argv: list[str]
    inputs: list[str]  # as written (expanded), for messages
    needs: list[str]  # earlier steps whose outputs it reads
    result: Path | None = None


@dataclass
class Outcome:
    """What one step produced: its metrics, or why there are none; `ran`: its command ran (and maybe failed)."""
    metrics: dict = field(default_factory=dict)
    problem: str | None = None
    ran: bool = False
    provenance: dict | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "config" / "paper_tables.yaml")
    p.add_argument("--table", action="append", default=None, help="only this table (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a var of the YAML, e.g. --set checkpoint=pretrained/hbi_msrvtt.pth")
    p.add_argument("--out_root", type=Path, default=ROOT / "outputs" / "tables")
    return p.parse_args(argv)


def load_spec(path: Path) -> dict:
    """The tables YAML, checked for the keys every table and row needs and for unique step names."""
    if not path.is_file():
        raise SystemExit(f"{path}: tables file not found")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec.get("tables"), dict) or not spec["tables"]:
        raise SystemExit(f"{path}: expected a mapping 'tables' of table name -> {{rows: [...]}}")
    for table, body in spec["tables"].items():
        for i, row in enumerate(body.get("rows", [])):
            missing = [k for k in ("name", "command", "read", "paper", "result") if k not in row]
            if missing:
                raise SystemExit(f"{path}: table '{table}' row {i} lacks key(s) {', '.join(missing)}")
        for i, step in enumerate(body.get("prepare", [])):
            missing = [k for k in ("name", "command") if k not in step]
            if missing:
                raise SystemExit(f"{path}: table '{table}' prepare step {i} lacks key(s) {', '.join(missing)}")
        names = [s["name"] for s in (*body.get("prepare", []), *body.get("rows", []))]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SystemExit(f"{path}: table '{table}' has several steps named {', '.join(map(repr, twice))}: "
                             f"each step has its own folder")
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


def at_root(path: str) -> Path:
    """Where a path of a step points: relative paths are relative to the repository root (the commands' folder)."""
    return (ROOT / path).resolve()


def producer(path: str, tables_dir: Path) -> str | None:
    """The step whose folder `path` lies in (`<tables_dir>/<step>/...`), None outside `tables_dir`."""
    try:
        parts = at_root(path).relative_to(tables_dir).parts
    except ValueError:
        return None
    return parts[0] if parts else ""


def plan_table(table: str, body: dict, values: dict[str, str], tables_dir: Path) -> list[Step]:
    """The table's steps in order, expanded; stops on a step that reads a folder no earlier step writes."""
    steps: list[Step] = []
    entries = [*body.get("prepare", []), *body.get("rows", [])]
    for entry in entries:
        name = entry["name"]
        run_dir = tables_dir / name
        local = {**values, "run_dir": str(run_dir), "tables_dir": str(tables_dir)}
        argv = command_argv(entry["command"], local)
        inputs = [expand(str(p), local) for p in entry.get("inputs", [])]
        read = list(inputs) + [part for arg in argv[1:] for part in (arg, arg.partition("=")[2]) if part]
        needs: list[str] = []
        for path in read:
            step = producer(path, tables_dir)
            if step is None or (step == name and path not in inputs):
                continue  # outside the table's folder, or the step's own output
            if step not in [s.name for s in steps]:
                what = ("its own folder, which starts empty" if step == name else "the table's folder itself"
                        if not step else f"the folder of step '{step}', which runs later"
                        if step in [e["name"] for e in entries] else f"a folder '{step}' that no step writes")
                raise SystemExit(f"table '{table}' step '{name}' reads {path}: that is {what}; a step reads only "
                                 f"what an earlier step of this run writes")
            if step not in needs:
                needs.append(step)
        result = Path(expand(str(entry["result"]), local)) if "result" in entry else None
        if result is not None and producer(str(result), tables_dir) != name:
            raise SystemExit(f"table '{table}' row '{name}': result {result} is not in the row's folder {run_dir}")
        steps.append(Step(name, entry, run_dir, argv, inputs, needs, result))
    return steps


def missing_inputs(step: Step, tables_dir: Path) -> list[str]:
    """The step's inputs outside the table's folder that do not exist (those inside come from earlier steps)."""
    return [p for p in step.inputs if producer(p, tables_dir) is None and not at_root(p).exists()]


def replace_folder(table: str, tables_dir: Path, out_root: Path) -> None:
    """Start the table's folder afresh. A folder of an earlier run of this script (its marker, or only step
    folders with a command.txt) is removed, saying so; any other folder stops the run untouched."""
    if tables_dir.exists():
        children = list(tables_dir.iterdir())
        ours = (tables_dir / MARKER).is_file() or all(c.is_dir() and (c / "command.txt").is_file() for c in children)
        if not ours:
            raise SystemExit(f"{tables_dir}: exists and was not written by scripts/paper_tables.py (no {MARKER}); "
                             f"move it away or pass another --out_root")
        try:
            previous = f" of {json.loads((tables_dir / MARKER).read_text())['time']}"
        except (OSError, ValueError, KeyError, TypeError):
            previous = ""  # a folder of the version before the marker, or a marker without a time
        shutil.rmtree(tables_dir)
        print(f"[{table}] replacing the previous run's {tables_dir}/ and {table}.md/.json{previous}", flush=True)
    for stale in (out_root / f"{table}.md", out_root / f"{table}.json"):
        stale.unlink(missing_ok=True)
    tables_dir.mkdir(parents=True)
    write_json(tables_dir / MARKER, this_run(table))


def this_run(table: str) -> dict:
    """The command, folder and time of this run of the script."""
    return {"table": table, "command": command_line(), "cwd": os.getcwd(), "time": utc_now()}


def blocked(step: Step, done: dict[str, Outcome], tables_dir: Path) -> str | None:
    """Why the step cannot run: inputs missing, or a step it reads from failed or did not run."""
    reasons = []
    missing = [p for p in step.inputs if not at_root(p).exists() and
               (producer(p, tables_dir) is None or not done[producer(p, tables_dir)].problem)]
    if missing:
        reasons.append(f"missing: {', '.join(missing)}")
    for verb, names in (("failed", [n for n in step.needs if done[n].problem and done[n].ran]),
                        ("did not run", [n for n in step.needs if done[n].problem and not done[n].ran])):
        if names:
            which = "step" if len(names) == 1 else "steps"
            reasons.append(f"needs the output of {which} {', '.join(map(repr, names))}, which {verb}")
    return "; ".join(reasons) or None


def run_step(step: Step, done: dict[str, Outcome], tables_dir: Path) -> Outcome:
    """Run the command once in the step's (new) folder, parse its last JSON line and read its result file."""
    problem = blocked(step, done, tables_dir)
    if problem:
        return Outcome(problem=problem)
    step.run_dir.mkdir(parents=True, exist_ok=True)
    (step.run_dir / "command.txt").write_text(shlex.join(step.argv) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    result = subprocess.run(step.argv, cwd=ROOT, env=env, capture_output=True, text=True)
    (step.run_dir / "stdout.txt").write_text(result.stdout)
    (step.run_dir / "stderr.txt").write_text(result.stderr)
    if result.returncode != 0:
        return Outcome(problem=f"failed (exit {result.returncode}): see {step.run_dir / 'stderr.txt'}", ran=True)
    lines = result.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return Outcome(problem=f"no JSON last line: see {step.run_dir / 'stdout.txt'}", ran=True)
    record = None
    if step.result is not None:
        try:
            record = json.loads(at_root(str(step.result)).read_text()).get("provenance")
        except (OSError, ValueError, AttributeError):
            return Outcome(problem=f"wrote no readable result file {step.result}", ran=True)
    return Outcome(metrics=summary, ran=True, provenance=record)


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


def checkpoint_of(record: dict | None) -> dict | None:
    """The checkpoint behind a result: its own, or that of the model that made its input matrix."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("checkpoint"), dict):
        return record["checkpoint"]
    for value in (record.get("inputs") or {}).values():
        for item in value if isinstance(value, list) else [value]:
            found = checkpoint_of(item.get("made_by")) if isinstance(item, dict) else None
            if found:
                return found
    return None


def cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def markdown(table: str, title: str, rows: list[dict]) -> str:
    """Paper, measured and difference for every row; a row without measured numbers says why in `note`; below,
    the checkpoint and time of every measured row."""
    columns = ["dataset"] + [f"{k} {s}" for k in KEYS for s in ("paper", "ours", "Δ")] + ["note"]
    cells, sources = {}, []
    for row in rows:
        line = {"dataset": row["dataset"], "note": row["problem"] or ""}
        for key in KEYS:
            paper, ours = row["paper"].get(key), row["measured"].get(key)
            diff = None if paper is None or ours is None else ours - paper
            line.update({f"{key} paper": cell(paper), f"{key} ours": cell(ours),
                         f"{key} Δ": "–" if diff is None else f"{diff:+.1f}"})
        cells[row["name"]] = line
        checkpoint = checkpoint_of(row["provenance"])
        if checkpoint:
            where = "trained in its run, " if checkpoint.get("trained_in_this_run") else ""
            sha = checkpoint.get("sha256", "")
            sources.append(f"- {row['name']}: checkpoint {where}{checkpoint.get('path', '(not saved)')}"
                           f"{f' (sha256 {sha[:12]})' if sha else ''}, {row['provenance'].get('time', '')}")
    text = f"# {title or table}\n\n" + markdown_table(cells, columns, head="row", fmt=str) + "\n"
    return text + ("\n" + "\n".join(sources) + "\n" if sources else "")


def run_table(table: str, steps: list[Step], body: dict, tables_dir: Path, out_root: Path) -> list[str]:
    """Prepare steps, then rows, sequentially, in a new folder; writes <table>.md and <table>.json; returns the
    problems."""
    replace_folder(table, tables_dir, out_root)
    problems, rows, prepared, done = [], [], [], {}
    for step in steps:
        outcome = done[step.name] = run_step(step, done, tables_dir)
        if "read" not in step.entry:  # a prepare step
            prepared.append({"name": step.name, "problem": outcome.problem, "run_dir": str(step.run_dir)})
            if outcome.problem:
                problems.append(f"{table}/{step.name}: {outcome.problem}")
            print(f"[{table}] {step.name} (prepare): {outcome.problem or 'done'}", flush=True)
            continue
        measured = {} if outcome.problem else read_metrics(outcome.metrics, step.entry["read"])
        problem = outcome.problem or (None if measured else f"no metrics at '{step.entry['read']}' in the last line")
        if problem and not outcome.problem:
            outcome.problem = problem  # a row without numbers fails the rows that read its outputs too
        rows.append({"name": step.name, "dataset": step.entry.get("dataset", ""), "paper": step.entry["paper"],
                     "measured": measured, "problem": problem, "run_dir": str(step.run_dir),
                     "result": None if problem else str(step.result), "provenance": None if problem else
                     outcome.provenance})
        if problem:
            problems.append(f"{table}/{step.name}: {problem}")
        print(f"[{table}] {step.name}: {problem or measured}", flush=True)
    text = markdown(table, body.get("title", ""), rows)
    atomic_write(out_root / f"{table}.md", lambda f: f.write(text.encode()))
    write_json(out_root / f"{table}.json", {**this_run(table), "prepare": prepared, "rows": rows,
                                            "problems": problems})
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = load_spec(args.config)
    values = variables(spec, args.overrides)
    names = list(dict.fromkeys(args.table or spec["tables"]))
    unknown = [n for n in names if n not in spec["tables"]]
    if unknown:
        raise SystemExit(f"{args.config}: no table {unknown[0]!r}; tables: {', '.join(spec['tables'])}")
    out_root = args.out_root.resolve()
    plans = {name: plan_table(name, spec["tables"][name], values, out_root / name) for name in names}
    missing = [f"{name}/{step.name}: {', '.join(paths)}" for name, steps in plans.items() for step in steps
               if (paths := missing_inputs(step, out_root / name))]
    if missing:
        print("missing inputs (these steps, and those that read their outputs, will not run):\n  "
              + "\n  ".join(missing), flush=True)
    problems = []
    for name in names:
        problems += run_table(name, plans[name], spec["tables"][name], out_root / name, out_root)
        print(f"wrote {out_root / name}.md", flush=True)
    if problems:
        print("incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
