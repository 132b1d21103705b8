"""Synthetic demo data: files, determinism, idempotence, and the end-to-end read through build_dataset."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dataloaders.errors import DataError
from dataloaders.tokenizer import ClipTokenizer
from dataloaders.text_video import build_dataset
from dataloaders.synthetic.clips import COMBOS, captions_for, generate_demo_data
from dataloaders.video.reader import decord, read_frames

NUM_TRAIN, NUM_TEST, FRAMES, FPS, SIZE = 20, 10, 24, 8, 64
KW = dict(max_words=12, max_frames=8, video_framerate=2, image_size=32)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    info = generate_demo_data(root, num_train=NUM_TRAIN, num_test=NUM_TEST, frames=FRAMES, fps=FPS, size=SIZE)
    assert info["reused"] is False
    return root


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


def test_files_in_msrvtt_format(demo):
    data = json.loads((demo / "MSRVTT_data.json").read_text())
    assert len(data["videos"]) == NUM_TRAIN + NUM_TEST
    assert {"caption", "video_id", "sen_id"} <= set(data["sentences"][0])
    with open(demo / "MSRVTT_train.9k.csv") as f:
        assert [r["video_id"] for r in csv.DictReader(f)] == [f"video{i}" for i in range(NUM_TRAIN)]
    with open(demo / "MSRVTT_JSFUSION_test.csv") as f:
        test_rows = list(csv.DictReader(f))
    assert len(test_rows) == NUM_TEST and list(test_rows[0]) == ["key", "vid_key", "video_id", "sentence"]
    assert len({r["sentence"] for r in test_rows}) == NUM_TEST  # no two test clips share a caption
    canonical = {captions_for(*combo)[0] for combo in COMBOS}
    assert {r["sentence"] for r in test_rows} <= canonical
    per_video = [s for s in data["sentences"] if s["video_id"] == "video0"]
    assert len(per_video) >= 3  # paraphrases for training


def test_both_decoders_read_the_clips(demo):
    path = str(demo / "videos" / "video3.mp4")
    frames = read_frames(path, framerate=FPS, max_frames=FRAMES, backend="opencv")
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    if decord is not None:
        other = read_frames(path, framerate=FPS, max_frames=FRAMES, backend="decord")
        assert other.shape == frames.shape and np.abs(other.astype(int) - frames.astype(int)).mean() < 2
    assert frames[0].std() > 5 and np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # shape moves


def test_idempotent_and_deterministic(demo, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in demo.rglob("*") if p.is_file()}
    info = generate_demo_data(demo, num_train=NUM_TRAIN, num_test=NUM_TEST, frames=FRAMES, fps=FPS, size=SIZE)
    assert info["reused"] is True
    assert {p.name: p.stat().st_mtime_ns for p in demo.rglob("*") if p.is_file()} == before
    generate_demo_data(tmp_path, num_train=NUM_TRAIN, num_test=NUM_TEST, frames=FRAMES, fps=FPS, size=SIZE)
    for name in ("MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv"):
        assert (tmp_path / name).read_bytes() == (demo / name).read_bytes()
    a = read_frames(str(demo / "videos" / "video5.mp4"), FPS, FRAMES, backend="opencv")
    b = read_frames(str(tmp_path / "videos" / "video5.mp4"), FPS, FRAMES, backend="opencv")
    assert np.array_equal(a, b)


def test_too_many_test_clips(tmp_path):
    with pytest.raises(DataError, match="num_test=73 exceeds the 72 distinct"):
        generate_demo_data(tmp_path, num_train=1, num_test=73)


def test_end_to_end_all_modes(demo, tokenizer):
    # 24 frames at 8 fps, sampled at 2 fps: stride 4 -> 6 frames, padded to max_frames 8.
    videos_dir = str(demo / "videos")
    pairs = build_dataset("msrvtt", "train", str(demo), videos_dir, tokenizer, "pairs", **KW)
    assert len(pairs) == len(pairs.caption_texts) >= 3 * NUM_TRAIN and len(pairs.video_ids) == NUM_TRAIN
    sample = pairs[1]
    assert set(sample) == {"text_ids", "text_mask", "video", "video_mask", "video_index", "caption_index"}
    assert sample["text_ids"].shape == sample["text_mask"].shape == (12,) and sample["text_ids"].dtype == torch.int64
    assert sample["text_ids"][0] == 49406 and sample["text_mask"].sum() >= 4
    assert sample["video"].shape == (8, 3, 32, 32) and sample["video"].dtype == torch.float32
    assert sample["video_mask"].tolist() == [1] * 6 + [0] * 2 and sample["video"][6:].eq(0).all()
    assert int(sample["video_index"]) == pairs.text_to_video[1] and int(sample["caption_index"]) == 1

    texts = build_dataset("msrvtt", "test", str(demo), videos_dir, tokenizer, "texts", **KW)
    videos = build_dataset("msrvtt", "test", str(demo), videos_dir, tokenizer, "videos", **KW)
    assert len(texts) == len(videos) == NUM_TEST
    assert texts.text_to_video.tolist() == list(range(NUM_TEST))
    t = texts[4]
    assert set(t) == {"text_ids", "text_mask", "caption_index"} and int(t["caption_index"]) == 4
    v = videos[4]
    assert set(v) == {"video", "video_mask", "video_index"} and int(v["video_index"]) == 4
    assert v["video_mask"].tolist() == [1] * 6 + [0] * 2
    assert torch.equal(v["video"], videos[4]["video"])  # evaluation: no augmentation
    text = tokenizer.encode(texts.caption_texts[4])
    assert t["text_ids"][1:1 + len(text)].tolist() == text
