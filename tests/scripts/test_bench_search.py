"""scripts/bench/search.py on a small collection: the measured rows are there for every first stage and --rerank,
and re-ranking every clip reproduces exhaustive scoring exactly (the bench's recall figures measure only the first
stage); the collection is reused by a second run and the first stages are not left behind."""
from __future__ import annotations

import argparse
import json

import torch

from scripts.bench import search as bench


def test_the_bench_measures_every_configuration_and_is_exact_when_everything_is_reranked(tmp_path):
    args = argparse.Namespace(workdir=str(tmp_path), clips=600, queries=6, exact_upto=100_000, nprobe=None)
    result = bench.run_size(args)
    rows = result["rows"]
    assert [(r["mode"], r["kind"], r["rerank"]) for r in rows] == [
        (mode, "flat", count) for mode in ("pooled", "tokens") for count in bench.RERANKS]
    for row in rows:
        assert 0 <= row["top10"] <= 1 and row["ms"] > 0 and row["batch_ms"] > 0
        assert row["batch_same"] == 1.0  # all queries in one call rank as each alone
        if row["rerank"] >= 600:
            assert row["top10"] == 1.0 and row["r1_agree"] == 1.0
    assert result["exhaustive_R1"] >= 0.3  # each caption is written from its own clip (chance: 1 in 600)
    assert json.loads((tmp_path / "clips600" / "bench.json").read_text())["clips"] == 600
    assert not (tmp_path / "clips600" / "first_stage").exists()
    assert bench.run_size(args)["exhaustive_R1"] == result["exhaustive_R1"]  # the same collection, reused
    assert torch.is_grad_enabled()  # the bench's no-grad does not leak into its caller
    assert "| 600 | tokens | flat | - | 1000 |" in bench.table([result]) and result["peak_anon_mb"] > 0
