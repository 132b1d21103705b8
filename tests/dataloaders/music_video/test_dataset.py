"""Split files, per-clip files and MusicVideoDataset: parsing, shapes and dtypes, and a one-line DataError naming
the file and the key for every kind of bad input."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dataloaders.errors import DataError
from dataloaders.music_video import MusicVideoDataset, load_clip, read_split, segment_features, track_path

LAYOUT = {"video": ("video_feature", "video_clip_feature"), "music": ("music_feature", "music_bert_feature"),
          "video_beat": ("video_beat", "video_beat"), "music_beat": ("music_beat", "music_beat")}


def write_clip(root: Path, clip_id: str, video_len: int = 45, music_len: int = 61, beat_len: int = 1306,
               **override) -> None:
    """One clip at the published widths (512 / 768); `override` replaces a track's whole file dict."""
    g = torch.Generator().manual_seed(len(clip_id))
    data = {"video": torch.randn(video_len, 512, generator=g), "music": torch.randn(music_len, 768, generator=g),
            "video_beat": (torch.rand(beat_len, generator=g) < 0.1).float(),
            "music_beat": torch.rand(beat_len + 7, generator=g)}
    for track, (folder, key) in LAYOUT.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        torch.save(override.get(track, {"fps": 30.0, key: data[track]}), root / folder / f"{clip_id}.pt")


@pytest.fixture()
def layout(tmp_path) -> Path:
    for clip_id in ("a", "bb", "ccc"):
        write_clip(tmp_path, clip_id)
    (tmp_path / "test.txt").write_text("a\nbb\nccc\n")
    return tmp_path


def test_split_parsing_tolerates_crlf_blank_lines_and_no_last_newline(tmp_path):
    (tmp_path / "train.txt").write_bytes(b"clip1\r\n\r\nclip2\r\n  clip3  \n\nclip4")
    assert read_split(tmp_path, "train") == ["clip1", "clip2", "clip3", "clip4"]


@pytest.mark.parametrize("body, message", [
    (b"a\nb\r\na\n", r"train.txt: line 3 repeats clip id 'a' \(first at line 1\)$"),
    (b"", r"train.txt: no clip ids \(the file is empty or has only blank lines\)$"),
    (b"\r\n \n", r"train.txt: no clip ids"),
    (b"a\n\xff\n", r"train.txt: not UTF-8 text"),
])
def test_bad_split_files(tmp_path, body, message):
    (tmp_path / "train.txt").write_bytes(body)
    with pytest.raises(DataError, match=message):
        read_split(tmp_path, "train")


def test_missing_split_file_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path / 'val.txt'}: split file not found$"):
        MusicVideoDataset(tmp_path, "val")
    with pytest.raises(ValueError, match="split must be one of"):
        read_split(tmp_path, "dev")


def test_dataset_samples(layout):
    for segments in ("even", "chunk"):
        ds = MusicVideoDataset(layout, "test", segments=segments)
        assert ds.ids == ["a", "bb", "ccc"] and len(ds) == 3
        sample = ds[1]
        assert set(sample) == {"music", "music_beat", "video", "video_beat", "index"}
        shapes = {k: tuple(v.shape) for k, v in sample.items()}
        assert shapes == {"music": (30, 768), "music_beat": (30, 25), "video": (30, 512), "video_beat": (30, 25),
                          "index": ()}
        assert all(sample[k].dtype == torch.float32 for k in LAYOUT) and sample["index"].dtype == torch.int64
        assert sample["index"].item() == 1
        raw = torch.load(track_path(layout, "video", "bb"), weights_only=True)["video_clip_feature"]
        assert torch.equal(sample["video"], segment_features(raw, 30, segments))
    # 45 video frames: the reference's chunks fill 23 of 30 segments, the even rule all of them
    assert (MusicVideoDataset(layout, "test", segments="chunk")[0]["video"][23:] == 0).all()
    assert (MusicVideoDataset(layout, "test")[0]["video"].abs().sum(1) > 0).all()


def test_other_sizes_and_batches(layout):
    ds = MusicVideoDataset(layout, "test", num_segments=12, beat_bins=5)
    batch = torch.utils.data.default_collate([ds[i] for i in range(3)])
    assert batch["video"].shape == (3, 12, 512) and batch["music_beat"].shape == (3, 12, 5)
    assert batch["index"].tolist() == [0, 1, 2]


def test_construction_names_the_missing_files_and_their_count(layout):
    for clip_id in ("bb", "ccc"):
        (layout / "music_beat" / f"{clip_id}.pt").unlink()
    (layout / "video_feature" / "ccc.pt").unlink()
    with pytest.raises(DataError, match=r"3 file\(s\) of the 3 clips of test.txt not found: music_beat/bb.pt, "
                                        r"music_beat/ccc.pt, video_feature/ccc.pt$"):
        MusicVideoDataset(layout, "test")
    (layout / "test.txt").write_text("a\nzz\n")
    with pytest.raises(DataError, match=r"4 file\(s\) of the 2 clips of test.txt not found: music_feature/zz.pt, "
                                        r"music_beat/zz.pt, video_feature/zz.pt and 1 more$"):
        MusicVideoDataset(layout, "test")


def test_file_removed_after_construction(layout):
    ds = MusicVideoDataset(layout, "test")
    path = layout / "video_beat" / "a.pt"
    path.unlink()
    with pytest.raises(DataError, match=rf"^{path}: file not found \(expected a dict with key 'video_beat'\)$"):
        ds[0]


@pytest.mark.parametrize("track, content, message", [
    ("music", {"fps": 30.0, "music_feature": torch.zeros(5, 768)},
     r"music_feature/x.pt: missing key 'music_bert_feature' \(keys: fps, music_feature\)$"),
    ("video_beat", {"fps": 30.0, "video_beat": torch.zeros(40, 2)},
     r"video_beat/x.pt: 'video_beat' has shape \(40, 2\), expected 1-D \(frames,\)$"),
    ("video", {"fps": 30.0, "video_clip_feature": torch.zeros(0, 512)},
     r"video_feature/x.pt: 'video_clip_feature' is empty \(0 frames\), expected 2-D \(frames, 512\) with at least "
     r"one frame$"),
    ("music_beat", {"fps": 30.0, "music_beat": torch.zeros(0)},
     r"music_beat/x.pt: 'music_beat' is empty \(0 frames\)"),
    ("video", {"fps": 30.0, "video_clip_feature": torch.zeros(9, 256)},
     r"video_feature/x.pt: 'video_clip_feature' has shape \(9, 256\), expected 2-D \(frames, 512\)$"),
    ("music", {"fps": 30.0, "music_bert_feature": torch.zeros(768)},
     r"music_feature/x.pt: 'music_bert_feature' has shape \(768,\), expected 2-D \(frames, 768\)$"),
    ("music", {"fps": 30.0, "music_bert_feature": [1.0, 2.0]},
     r"music_feature/x.pt: 'music_bert_feature' is a list, expected a tensor$"),
    ("video", torch.zeros(9, 512), r"video_feature/x.pt: expected a dict with key 'video_clip_feature', got Tensor$"),
    ("video", {"video_clip_feature": torch.full((9, 512), float("nan"))},
     r"video_feature/x.pt: 'video_clip_feature' holds NaN or infinite values$"),
])
def test_content_errors_name_the_file_and_key(tmp_path, track, content, message):
    write_clip(tmp_path, "x", **{track: content})
    (tmp_path / "test.txt").write_text("x\n")
    ds = MusicVideoDataset(tmp_path, "test", segments="chunk")  # files exist: content is checked at load time
    for segments in ("even", "chunk"):  # empty tracks are refused in the reference mode too (NaN rows)
        with pytest.raises(DataError, match=rf"^{tmp_path}/{message}"):
            load_clip(tmp_path, "x", segments=segments)
    with pytest.raises(DataError, match=message):
        ds[0]


def test_unreadable_files(tmp_path):
    write_clip(tmp_path, "x")
    (tmp_path / "video_feature" / "x.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"video_feature/x.pt: not a torch file of tensors"):
        load_clip(tmp_path, "x")
    (tmp_path / "video_feature" / "x.pt").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match=r"video_feature/x.pt: (unreadable .pt file \(|not a torch file)"):
        load_clip(tmp_path, "x")
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))
    (tmp_path / "video_feature" / "x.pt").write_bytes(pickle.dumps({"video_clip_feature": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"video_feature/x.pt: not a torch file of tensors \(torch.load with "
                                        r"weights_only=True refused it"):
        load_clip(tmp_path, "x")


def test_beat_dtypes_and_any_width(tmp_path):
    write_clip(tmp_path, "x", video_beat={"fps": 30.0, "video_beat": torch.ones(900, dtype=torch.bool)},
               video={"fps": 30.0, "video_clip_feature": torch.ones(50, 7, dtype=torch.float16)})
    with pytest.raises(DataError, match=r"has shape \(50, 7\), expected 2-D \(frames, 512\)"):
        load_clip(tmp_path, "x")
    clip = load_clip(tmp_path, "x", video_dim=None)
    assert clip["video"].shape == (30, 7) and clip["video"].dtype == torch.float32
    assert torch.equal(clip["video_beat"], torch.ones(30, 25))
