"""Synthetic HAP-VR benchmark: the published HDF5 and pickle layouts, determinism, idempotence, and that a plain
mean-frame cosine similarity ranks the related videos first when scored through load_benchmark."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from dataloaders.synthetic.video_video import LABELS, generate_synthetic_benchmark
from dataloaders.video_video.annotations import load_easy_duplicates, load_fivr
from modules.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hapvr_synthetic")
    info = generate_synthetic_benchmark(root)
    assert info["reused"] is False and len(info["queries"]) == 5 and len(info["database"]) == 60
    return root


def test_published_formats(bench_dir):
    fivr = load_fivr(bench_dir)  # through the restricted unpickler
    split = fivr.splits["5k"]
    assert Path(fivr.path).name == "fivr.pickle" and list(fivr.splits) == ["5k"]
    assert (len(split.queries), len(split.database)) == (5, 60) and not set(split.queries) & set(split.database)
    for query in split.queries:
        assert set(fivr.annotation[query]) == set(LABELS)
        assert all(set(ids) <= set(split.database) for ids in fivr.annotation[query].values())
    easy = load_easy_duplicates(bench_dir)
    assert len(easy) == 5 and all(any(v in fivr.annotation[q]["ND"] for q in split.queries) for v in easy)
    with h5py.File(bench_dir / "fivr_5k.hdf5", "r") as f:
        assert set(f) == set(split.queries) | set(split.database)
        for vid in f:
            feats = f[vid][:]
            assert feats.dtype == np.float32 and feats.shape[1:] == (9, 512) and 20 <= feats.shape[0] <= 40
            np.testing.assert_allclose(np.linalg.norm(feats, axis=-1), 1.0, atol=1e-5)


def test_mean_frame_cosine_ranks_related_first(bench_dir):
    bench = load_benchmark("fivr5k", bench_dir)
    with h5py.File(bench_dir / "fivr_5k.hdf5", "r") as f:
        means = {vid: f[vid][:].mean(axis=(0, 1)) for vid in f}
    means = {vid: m / np.linalg.norm(m) for vid, m in means.items()}
    sims = {q: {v: float(means[q] @ means[v]) for v in bench.database} for q in bench.queries}
    metrics = bench.evaluate(sims)
    assert metrics["DSVR"] > 0.95 and metrics["DSVR_h"] > 0.95 and metrics["DSVD"] > 0.95
    assert metrics["ISVR"] > 0.9
    query = bench.queries[0]
    label = {v: lab for lab, ids in bench.annotation[query].items() for v in ids}
    by_label = {lab: np.mean([s for v, s in sims[query].items() if label.get(v) == lab]) for lab in (*LABELS, None)}
    assert by_label["ND"] > by_label["CS"] > by_label[None] and by_label["IS"] > by_label[None]


def test_deterministic_and_idempotent(tmp_path):
    first = generate_synthetic_benchmark(tmp_path / "a", seed=3, dim=16, num_distractors=4)
    again = generate_synthetic_benchmark(tmp_path / "a", seed=3, dim=16, num_distractors=4)
    other = generate_synthetic_benchmark(tmp_path / "b", seed=3, dim=16, num_distractors=4)
    assert again["reused"] is True and first["reused"] is other["reused"] is False
    for name in ("fivr.pickle", "fivr_easy_duplicates.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with h5py.File(first["hdf5"], "r") as fa, h5py.File(other["hdf5"], "r") as fb:
        assert all(np.array_equal(fa[v][:], fb[v][:]) for v in fa)
    changed = generate_synthetic_benchmark(tmp_path / "a", seed=4, dim=16, num_distractors=4)
    assert changed["reused"] is False


def test_unknown_option(tmp_path):
    with pytest.raises(TypeError, match="unknown option"):
        generate_synthetic_benchmark(tmp_path, frames=10)
