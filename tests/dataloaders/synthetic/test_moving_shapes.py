"""The HAP-VR demo's synthetic raw videos: frame folders in the extract_frames layout, a FIVR-style benchmark in
the published pickle layout, motion between frames, and a complete folder reused as it is."""
from __future__ import annotations

import cv2
import numpy as np

from dataloaders.synthetic.moving_shapes import generate_moving_shapes, scene
from modules.benchmarks import load_benchmark


def test_the_folders_and_the_benchmark(tmp_path):
    made = generate_moving_shapes(tmp_path, num_train=3, num_queries=2, per_label=1, num_distractors=2, frames=5,
                                  size=32)
    assert not made["reused"]
    train = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert train == ["t000", "t001", "t002"] and len(list((tmp_path / "train" / "t000").glob("*.jpg"))) == 5
    frame = cv2.imread(str(tmp_path / "train" / "t000" / "000000.jpg"))
    assert frame.shape == (32, 32, 3)
    bench = load_benchmark("fivr5k", tmp_path / "eval")
    assert list(bench.queries) == ["q00", "q01"]
    assert {"q00_nd0", "q00_ds0", "x000"} <= set(bench.database)
    assert "q00_nd0" in (tmp_path / "eval" / "fivr_easy_duplicates.txt").read_text()
    assert generate_moving_shapes(tmp_path, num_train=3, num_queries=2, per_label=1, num_distractors=2, frames=5,
                                  size=32)["reused"]


def test_shapes_move():
    frames = scene(np.random.default_rng(0), 4, 32)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert np.abs(frames[1].astype(int) - frames[0]).mean() > 0.5
