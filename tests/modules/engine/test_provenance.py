"""Provenance records: sha256 of files (cached by size and mtime), the command and the time, matrices' makers."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import datetime, timezone

from modules.engine.provenance import file_digest, matrix_record, provenance, write_json


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_digest_is_sha256_and_follows_a_changed_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(3 << 20))  # more than one read block
    assert file_digest(path) == sha256(path)
    path.write_bytes(b"other weights")
    os.utime(path, ns=(1, 1))  # a new (size, mtime): the cached digest is not reused
    assert file_digest(path) == hashlib.sha256(b"other weights").hexdigest()


def test_provenance_records_command_time_checkpoint_and_weights(tmp_path):
    checkpoint, clip = tmp_path / "model.bin", tmp_path / "clip.pt"
    checkpoint.write_bytes(b"model")
    clip.write_bytes(b"clip")
    record = provenance({"init_model": checkpoint, "clip_path": clip, "estimator": None}, checkpoint)
    assert record["checkpoint"] == {"path": str(checkpoint), "sha256": sha256(checkpoint)}
    assert record["weights"] == {"init_model": {"path": str(checkpoint), "sha256": sha256(checkpoint)},
                                 "clip_path": {"path": str(clip), "sha256": sha256(clip)}}
    assert record["command"].startswith(sys.executable) and record["cwd"] == os.getcwd()
    written = datetime.fromisoformat(record["time"])
    assert written.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - written).total_seconds()) < 60
    assert "inputs" not in record


def test_trained_in_this_run_names_the_saved_file_when_there_is_one(tmp_path):
    saved = tmp_path / "pytorch_model.bin.0"
    assert provenance({}, saved, trained_in_this_run=True)["checkpoint"] == {"trained_in_this_run": True}
    saved.write_bytes(b"trained")
    assert provenance({}, saved, trained_in_this_run=True)["checkpoint"] == {
        "trained_in_this_run": True, "path": str(saved), "sha256": sha256(saved)}
    assert provenance({})["checkpoint"] is None  # a model without a weights file (--clip_arch)
    assert "checkpoint" not in provenance(inputs={}) and "weights" not in provenance(inputs={})


def test_matrix_record_carries_the_makers_provenance_only_for_that_very_matrix(tmp_path):
    matrix = tmp_path / "sims_test.npy"
    matrix.write_bytes(b"matrix")
    maker = {"checkpoint": {"path": "m.bin", "sha256": "ab"}}
    write_json(tmp_path / "sims_test_ids.json", {"sims_sha256": sha256(matrix), "provenance": maker})
    assert matrix_record(matrix) == {"path": str(matrix), "sha256": sha256(matrix), "made_by": maker}
    write_json(tmp_path / "sims_test_ids.json", {"sims_sha256": "0" * 64, "provenance": maker})
    assert "made_by" not in matrix_record(matrix)  # the ids describe another matrix
    assert json.loads((tmp_path / "sims_test_ids.json").read_text())["provenance"] == maker
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sims_test.npy", "sims_test_ids.json"]  # no temp files
