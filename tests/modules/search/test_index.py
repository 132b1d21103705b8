"""The index's bookkeeping: what an update encodes, keeps and drops, shards written and deleted, mismatches refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modules.engine.errors import RunError
from modules.search.index import SearchIndex
from modules.search.videos import VideoFile, find_videos

MODEL = {"init_model": "/m.bin", "sha256": "a" * 64, "flags": {"model": "wti"}, "rate": [1, 0, 0]}
INPUTS = {"max_frames": 2, "video_framerate": 1.0, "slice_framepos": "uniform", "video_backend": "decord",
          "frame_sampler": "stride", "image_size": 32}


def arrays(n: int, first: int = 0) -> dict[str, np.ndarray]:
    """Rows whose features say which they are: feats[i] all equal to first + i."""
    value = np.arange(first, first + n, dtype=np.float16)
    return {"feats": np.broadcast_to(value[:, None, None], (n, 2, 4)).copy(), "mask": np.ones((n, 2), np.uint8),
            "pooled": np.zeros((n, 4), np.float16), "times": np.zeros((n, 2), np.float32),
            "weights": np.full((n, 2), 0.5, np.float32)}


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
    assert index.manifest["shards"] == [{"name": "shard-00001", "rows": 2}] and not (tmp_path / "shard-00000").exists()
    assert [(v["id"], v["key"], v["row"]) for v in index.manifest["videos"]] == [("b.mp4", 2, 0), ("c.mp4", 3, 1)]
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


def test_compaction_rewrites_half_dropped_shards_and_keeps_keys(tmp_path):
    index = SearchIndex.new(tmp_path, Path("/v"), MODEL, INPUTS)
    names = [f"{c}.mp4" for c in "abcdefgh"]
    todo, *_ = index.plan(files(*((n, 1) for n in names)))
    index.add_shard(todo[:4], arrays(4, 0))
    index.add_shard(todo[4:], arrays(4, 4))
    index.save()
    todo, *_ = index.plan(files(*((n, 1) for n in ["a.mp4", "b.mp4", "c.mp4", "e.mp4", "f.mp4"])))
    assert todo == [] and index.compact(shard_size=10) == 2  # the second shard kept 2 of 4 rows: rewritten
    index.save()
    assert [s["name"] for s in index.manifest["shards"]] == ["shard-00000", "shard-00002"]
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-00000", "shard-00002"]
    gallery = SearchIndex.load(tmp_path).gallery()
    assert gallery.ids == ["a.mp4", "b.mp4", "c.mp4", "e.mp4", "f.mp4"] and gallery.keys.tolist() == [0, 1, 2, 4, 5]
    feats, mask, times = gallery.take(np.array([4, 0, 3]))
    assert feats[:, 0, 0].tolist() == [5.0, 0.0, 4.0] and feats.dtype == torch.float32 and mask.shape == (3, 2)
    assert isinstance(gallery.shards[0]["feats"], np.memmap)  # read on demand, not loaded
    assert index.compact(shard_size=10) == 0


def test_an_index_of_another_format_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "hbi-search-index-v1"}')
    with pytest.raises(RunError, match="found 'hbi-search-index-v1'.*in an empty folder"):
        SearchIndex.load(tmp_path)
