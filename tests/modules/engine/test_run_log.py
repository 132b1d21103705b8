"""The run log: lines kept until the folder is opened, a resume's rewind of metrics.jsonl."""
from __future__ import annotations

import json

from modules.engine.run_log import RunLog


def test_lines_before_attach_are_printed_and_written_first(tmp_path, capsys):
    log = RunLog(None, True, tensorboard=False)
    log.info("building the model")
    assert not any(tmp_path.iterdir()) and "building the model" in capsys.readouterr().out
    log.attach(tmp_path, "log_test.txt", metrics=False)
    log.info("evaluating")
    log.close()
    lines = (tmp_path / "log_test.txt").read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["building the model", "evaluating"]
    assert not (tmp_path / "metrics.jsonl").exists()


def test_rewind_keeps_each_step_once(tmp_path):
    log = RunLog(tmp_path, True, tensorboard=False)
    for step, split in [(2, "train"), (4, "train"), (4, "val"), (6, "train"), (8, "train"), (-1, "test")]:
        log.metrics(step, split, {"loss": 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "spl')  # the half line of a killed write
    assert log.rewind(4) == 4
    log.metrics(6, "train", {"loss": 0.5})
    log.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in records] == [(2, "train"), (4, "train"), (4, "val"), (6, "train")]
    assert records[-1]["loss"] == 0.5
