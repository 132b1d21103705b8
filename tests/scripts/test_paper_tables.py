"""scripts/paper_tables.py on tiny tables of `python -c` steps: fresh folders, failed producers, missing inputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scripts import paper_tables

# A row's command: print `R1` as the last JSON line and write a result file with a provenance.
WRITE = ("import json, sys; r1 = float(sys.argv[1]); "
         "json.dump({'t2v_R1': r1, 'provenance': {'checkpoint': {'path': sys.argv[2]}}}, open(sys.argv[3], 'w')); "
         "print(json.dumps({'t2v_R1': r1}))")
# Reads a number left in another step's folder and reports it.
READ = ("import json, sys; value = json.load(open(sys.argv[1]))['t2v_R1']; "
        "json.dump({'provenance': None}, open(sys.argv[2], 'w')); print(json.dumps({'t2v_R1': value}))")


def row(name: str, command: list[str], inputs: list[str] = ()) -> dict:
    return {"name": name, "command": command, "inputs": list(inputs), "read": "t2v_{key}",
            "result": "${run_dir}/result.json", "paper": {"R1": 1.0}}


def write_spec(path: Path, rows: list[dict], prepare: list[dict] = ()) -> Path:
    path.write_text(yaml.safe_dump({"vars": {"ckpt": "model.bin"},
                                    "tables": {"t": {"prepare": list(prepare), "rows": rows}}}))
    return path


def table(out: Path) -> dict:
    return {r["name"]: r for r in json.loads((out / "t.json").read_text())["rows"]}


def test_a_failed_step_fails_the_rows_reading_it_and_stale_files_are_not_read(tmp_path, capsys):
    out = tmp_path / "tables"
    first = ["-c", WRITE, "40", "${ckpt}", "${run_dir}/result.json"]
    spec = write_spec(tmp_path / "spec.yaml", [
        row("first", first),
        row("from_inputs", ["-c", READ, "${tables_dir}/first/result.json", "${run_dir}/result.json"],
            inputs=["${tables_dir}/first/result.json"]),
        row("from_command", ["-c", READ, "${tables_dir}/first/result.json", "${run_dir}/result.json"])])
    assert paper_tables.main(["--config", str(spec), "--out_root", str(out)]) == 0
    assert {name: r["measured"] for name, r in table(out).items()} == {n: {"R1": 40.0} for n in table(out)}
    capsys.readouterr()

    first[1] = "import sys; sys.exit(3)"  # the next run's producer fails; its old result.json is still there
    spec = write_spec(tmp_path / "spec.yaml", [row("first", first), *yaml.safe_load(spec.read_text())["tables"]["t"]
                                               ["rows"][1:]])
    assert paper_tables.main(["--config", str(spec), "--out_root", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"[t] replacing the previous run's {out / 't'}/ and t.md/.json" in printed
    rows = table(out)
    assert rows["first"]["problem"].startswith("failed (exit 3)")
    for name in ("from_inputs", "from_command"):
        assert rows[name]["problem"] == "needs the output of step 'first', which failed", name
        assert rows[name]["measured"] == {} and rows[name]["provenance"] is None
        assert not (out / "t" / name).exists()
    assert "40.0" not in (out / "t.md").read_text()


def test_rows_record_the_provenance_of_their_result_file(tmp_path):
    out = tmp_path / "tables"
    spec = write_spec(tmp_path / "spec.yaml", [row("a", ["-c", WRITE, "2", "${ckpt}", "${run_dir}/result.json"])])
    assert paper_tables.main(["--config", str(spec), "--out_root", str(out)]) == 0
    assert table(out)["a"]["provenance"] == {"checkpoint": {"path": "model.bin"}}
    assert table(out)["a"]["result"] == str(out / "t" / "a" / "result.json")
    assert "- a: checkpoint model.bin" in (out / "t.md").read_text()


def test_every_missing_input_is_listed_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "tables"
    ran = ["-c", WRITE, "1", "x", "${run_dir}/result.json"]
    spec = write_spec(tmp_path / "spec.yaml", [
        row("a", ran, inputs=[str(tmp_path / "a1"), str(tmp_path / "a2")]),
        row("b", ran, inputs=[str(tmp_path / "b1"), str(tmp_path / "b2"), str(tmp_path / "spec.yaml")]),
        row("c", ran, inputs=["${tables_dir}/a/result.json"])])
    assert paper_tables.main(["--config", str(spec), "--out_root", str(out)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("missing inputs (these steps, and those that read their outputs, will not run):\n"
                              f"  t/a: {tmp_path / 'a1'}, {tmp_path / 'a2'}\n"
                              f"  t/b: {tmp_path / 'b1'}, {tmp_path / 'b2'}\n")
    rows = table(out)
    assert rows["a"]["problem"] == f"missing: {tmp_path / 'a1'}, {tmp_path / 'a2'}"
    assert rows["b"]["problem"] == f"missing: {tmp_path / 'b1'}, {tmp_path / 'b2'}"
    assert rows["c"]["problem"] == "needs the output of step 'a', which did not run"


def test_a_step_reading_a_later_or_unknown_folder_is_a_spec_error(tmp_path):
    out = tmp_path / "tables"
    spec = write_spec(tmp_path / "spec.yaml", [
        row("early", ["-c", READ, "${tables_dir}/late/result.json", "${run_dir}/result.json"]),
        row("late", ["-c", WRITE, "1", "x", "${run_dir}/result.json"])])
    with pytest.raises(SystemExit, match="step 'early' reads .*late/result.json: that is the folder of step 'late', "
                                         "which runs later"):
        paper_tables.main(["--config", str(spec), "--out_root", str(out)])
    assert not out.exists()


def test_a_folder_it_did_not_write_is_left_alone(tmp_path):
    out = tmp_path / "tables"
    (out / "t").mkdir(parents=True)
    (out / "t" / "notes.txt").write_text("mine")
    spec = write_spec(tmp_path / "spec.yaml", [row("a", ["-c", WRITE, "1", "x", "${run_dir}/result.json"])])
    with pytest.raises(SystemExit, match="was not written by scripts/paper_tables.py"):
        paper_tables.main(["--config", str(spec), "--out_root", str(out)])
    assert (out / "t" / "notes.txt").read_text() == "mine"


def test_a_folder_of_the_earlier_version_is_replaced(tmp_path, capsys):
    out = tmp_path / "tables"
    (out / "t" / "a").mkdir(parents=True)  # what a run before the marker file left: step folders with command.txt
    (out / "t" / "a" / "command.txt").write_text("python test.py\n")
    (out / "t" / "a" / "stale.npy").write_text("old")
    spec = write_spec(tmp_path / "spec.yaml", [row("a", ["-c", WRITE, "1", "x", "${run_dir}/result.json"])])
    assert paper_tables.main(["--config", str(spec), "--out_root", str(out)]) == 0
    assert f"[t] replacing the previous run's {out / 't'}/ and t.md/.json\n" in capsys.readouterr().out
    assert not (out / "t" / "a" / "stale.npy").exists() and (out / "t" / "a" / "result.json").is_file()
