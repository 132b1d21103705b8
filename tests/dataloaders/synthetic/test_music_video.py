"""Synthetic music-video pairs: a layout MusicVideoDataset reads, deterministic by seed, reused when complete, and
paired tracks that share structure."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dataloaders.music_video import MusicVideoDataset, read_split, track_path
from dataloaders.synthetic.music_video import DEFAULTS, generate_demo_music_video
from tests.helpers import ROOT

SMALL = dict(num_train=12, num_val=4, num_test=6)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("mv")
    return root, generate_demo_music_video(root, **SMALL)


def test_layout_loads(demo):
    root, info = demo
    assert not info["reused"] and info["video_dim"] == DEFAULTS["video_dim"]
    assert json.loads((root / "demo_meta.json").read_text())["music_dim"] == info["music_dim"]
    ids = {split: read_split(root, split) for split in ("train", "val", "test")}
    assert [len(v) for v in ids.values()] == [12, 4, 6]
    assert len(set(sum(ids.values(), []))) == 22  # no clip in two splits
    for split, count in zip(ids, (12, 4, 6)):
        ds = MusicVideoDataset(root, split, video_dim=info["video_dim"], music_dim=info["music_dim"])
        sample = ds[count - 1]
        assert sample["video"].shape == (30, info["video_dim"]) and sample["music"].shape == (30, info["music_dim"])
        assert sample["video_beat"].shape == sample["music_beat"].shape == (30, 25)
    lengths = set()
    for clip_id in ids["train"]:
        video = torch.load(track_path(root, "video", clip_id), weights_only=True)
        music = torch.load(track_path(root, "music", clip_id), weights_only=True)
        beat = torch.load(track_path(root, "music_beat", clip_id), weights_only=True)["music_beat"]
        assert video["fps"] != music["fps"] and set(beat.unique().tolist()) <= {0.0, 1.0}
        lengths.add(len(video["video_clip_feature"]))
        assert 60 <= len(video["video_clip_feature"]) <= 200
    assert len(lengths) > 6  # lengths vary


def test_deterministic_by_seed_and_reused(demo, tmp_path):
    root, _ = demo
    again = generate_demo_music_video(tmp_path / "same", **SMALL)
    other = generate_demo_music_video(tmp_path / "other", **SMALL, seed=1)
    assert not again["reused"]
    for track in ("video", "music", "video_beat", "music_beat"):
        a, b, c = (torch.load(track_path(r, track, "mv00003"), weights_only=True)
                   for r in (root, tmp_path / "same", tmp_path / "other"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]
                                            for k in a)
        key = [k for k in a if k != "fps"][0]
        assert a[key].shape != c[key].shape or not torch.equal(a[key], c[key])
    assert generate_demo_music_video(root, **SMALL)["reused"]


def test_pairs_share_structure(demo):
    """A clip's music is nearer its own video than the others (features by a least-squares map, beats by
    correlation), so a model can learn the pairing."""
    root, info = demo
    ds = MusicVideoDataset(root, "train", video_dim=info["video_dim"], music_dim=info["music_dim"])
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    mb, vb = (batch[k].flatten(1) for k in ("music_beat", "video_beat"))
    mb, vb = mb - mb.mean(1, keepdim=True), vb - vb.mean(1, keepdim=True)
    corr = torch.nn.functional.normalize(mb, dim=1) @ torch.nn.functional.normalize(vb, dim=1).T
    assert corr.diag().mean() > corr.mean() + 0.15
    music, video = batch["music"].mean(1), batch["video"].mean(1)  # the clip's mean latent, projected
    fit = torch.linalg.lstsq(music, video).solution
    sims = torch.nn.functional.normalize(music @ fit, dim=1) @ torch.nn.functional.normalize(video, dim=1).T
    assert (sims.argmax(1) == torch.arange(len(ds))).float().mean() > 0.8


def test_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dataloaders.synthetic.music_video", "--root", str(tmp_path),
                          "--num_train", "3", "--num_val", "1", "--num_test", "2", "--video_dim", "8"],
                         cwd=ROOT, capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1"})
    assert "3 train / 1 val / 2 test pairs, video_dim 8, music_dim 24" in out.stdout
    assert MusicVideoDataset(tmp_path, "test", video_dim=8, music_dim=24)[1]["video"].shape == (30, 8)
