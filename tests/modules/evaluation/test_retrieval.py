"""Saved evaluations: the matrix, its ids with the matrix's sha256, the metrics, each with its provenance."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from modules.evaluation.retrieval import compute_metrics, save_evaluation


def test_save_evaluation_records_the_matrix_hash_and_provenance(tmp_path):
    sims = np.random.default_rng(0).random((4, 4)).astype(np.float32)
    text_to_video = np.arange(4)
    record = {"command": "python test.py", "checkpoint": {"path": "m.bin", "sha256": "ab"}}
    save_evaluation(tmp_path, "test", sims, [f"v{i}#0" for i in range(4)], [f"v{i}" for i in range(4)],
                    text_to_video, compute_metrics(sims, text_to_video), record)
    np.testing.assert_array_equal(np.load(tmp_path / "sims_test.npy"), sims)
    ids = json.loads((tmp_path / "sims_test_ids.json").read_text())
    assert ids["sims_sha256"] == hashlib.sha256((tmp_path / "sims_test.npy").read_bytes()).hexdigest()
    assert ids["provenance"] == record and ids["text_to_video"] == [0, 1, 2, 3]
    metrics = json.loads((tmp_path / "metrics_test.json").read_text())
    assert metrics["provenance"] == record and metrics["t2v_R1"] == compute_metrics(sims, text_to_video)["t2v_R1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics_test.json", "sims_test.npy", "sims_test_ids.json"]
