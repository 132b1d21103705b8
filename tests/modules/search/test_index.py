"""The index's bookkeeping: what an update encodes, keeps and drops, shards written and deleted, mismatches refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.engine.errors import RunError
from modules.search.index import SearchIndex
from modules.search.videos import VideoFile, find_videos

MODEL = {"init_model": "/m.bin", "sha256": "a" * 64, "flags": {"model": "wti"}, "rate": [1, 0, 0]}
INPUTS = {"max_frames": 2, "video_framerate": 1.0, "slice_framepos": "uniform", "video_backend": "decord",
          "frame_sampler": "stride", "image_size": 32}


def arrays(n: int) -> dict[str, np.ndarray]:
    return {"feats": np.zeros((n, 2, 4), np.float16), "mask": np.ones((n, 2), np.uint8),
            "pooled": np.zeros((n, 4), np.float16), "times": np.zeros((n, 2), np.float32)}


def files(*specs: tuple[str, int]) -> list[VideoFile]:
    return [VideoFile(name, f"/v/{name}", size, 7) for name, size in specs]


def test_plan_encodes_new_and_changed_keeps_unchanged_drops_removed(tmp_path):
    index = SearchIndex.new(tmp_path, Path("/v"), MODEL, INPUTS)
    todo, kept, changed, removed = index.plan(files(("a.mp4", 1), ("b.mp4", 1), ("bad.mp4", 1)))
    assert [f.id for f in todo] == ["a.mp4", "b.mp4", "bad.mp4"] and kept == changed == removed == []
    index.add_shard(todo[:2], arrays(2))
    index.add_unreadable(todo[2], "cannot open")
    index.save()
    index = SearchIndex.load(tmp_path)
    todo, kept, changed, removed = index.plan(files(("b.mp4", 2), ("bad.mp4", 1), ("c.mp4", 1)))
    assert [f.id for f in todo] == ["b.mp4", "c.mp4"] and kept == ["bad.mp4"]
    assert changed == ["b.mp4"] and removed == ["a.mp4"]
    assert [v["id"] for v in index.manifest["unreadable"]] == ["bad.mp4"]
    index.add_shard(todo, arrays(2))
    index.save()
    # The first shard holds only dropped rows now: it is deleted.
    assert index.manifest["shards"] == ["shard-00001.npz"] and not (tmp_path / "shard-00000.npz").exists()
    assert [(v["id"], v["row"]) for v in index.manifest["videos"]] == [("b.mp4", 0), ("c.mp4", 1)]
    assert len(SearchIndex.load(tmp_path).gallery()) == 2
    todo, kept, changed, removed = SearchIndex.load(tmp_path).plan(files(("c.mp4", 1)))
    assert todo == changed == [] and kept == ["c.mp4"] and removed == ["b.mp4", "bad.mp4"]


@pytest.mark.parametrize("change, message", [
    ({"sha256": "b" * 64}, "built with another model (sha256"),
    ({"flags": {"model": "meanp"}}, "built with another model (model 'wti' (now 'meanp'))"),
])
def test_another_model_is_refused(tmp_path, change, message):
    index = SearchIndex.new(tmp_path, Path("/v"), MODEL, INPUTS)
    with pytest.raises(RunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        index.check_matches(Path("/v"), {**MODEL, **change}, INPUTS)
    with pytest.raises(RunError, match="not of --videos /w"):
        index.check_matches(Path("/w"), MODEL, INPUTS)
    index.check_matches(Path("/v"), {**MODEL, "rate": [1, 1, 1]}, INPUTS)  # the rate only weighs scores


def test_find_videos_walks_recursively_and_keeps_video_extensions(tmp_path):
    for name in ("a.mp4", "sub/b.AVI", "sub/deeper/c.webm", "notes.txt", "sub/d.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [f.id for f in find_videos(tmp_path)] == ["a.mp4", "sub/b.AVI", "sub/deeper/c.webm"]
    with pytest.raises(Exception, match="folder not found"):
        find_videos(tmp_path / "absent")
