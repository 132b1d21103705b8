"""Annotation loaders on the real MSR-VTT files and on small files in each family's reference format,
bad-row errors, skipping of unreadable videos, and seeding of the augmentation."""
from __future__ import annotations

import json
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataloaders.text_video import DATASETS, build_dataset
from dataloaders.tokenizer import ClipTokenizer
from dataloaders.errors import DataError
from dataloaders.text_video import activity, didemo, lsmdc, msrvtt, msvd
from dataloaders.synthetic.clips import generate_demo_data

VIDEO_KW = dict(max_words=16, max_frames=6, video_framerate=2, image_size=32)


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate_demo_data(root, num_train=12, num_test=4, frames=16, fps=8, size=32)
    return root


# ---------------------------------------------------------------- MSR-VTT, real files

def test_msrvtt_real_test_split(real_dir):
    videos, captions = msrvtt.load_annotations(str(real_dir / "msrvtt"), "/videos", "test")
    assert len(videos) == 1000 and len(captions) == 1000
    assert videos[0].video_id == "video9770" and videos[0].path == "/videos/video9770.mp4"
    assert captions[0].text == "a person is connecting something to system"
    assert [c.video_index for c in captions] == list(range(1000))


def test_msrvtt_real_train_split(real_dir, tmp_path):
    shutil.copy(real_dir / "msrvtt" / "MSRVTT_train.9k.csv", tmp_path)
    ids = (tmp_path / "MSRVTT_train.9k.csv").read_text().split()[1:]
    assert len(ids) == 9000
    sentences = [{"caption": f"caption {k} of {vid}", "video_id": vid, "sen_id": 2 * i + k}
                 for i, vid in enumerate(ids) for k in range(2)]
    assert "video9770" not in ids  # a 1k-A test video: its caption belongs to another split
    sentences.append({"caption": "a test video", "video_id": "video9770", "sen_id": -1})
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"sentences": sentences}))
    videos, captions = msrvtt.load_annotations(str(tmp_path), "/v", "train")
    assert len(videos) == 9000 and len(captions) == 18000
    assert {v.video_id for v in videos} == set(ids)
    assert captions[1].text == f"caption 1 of {videos[captions[1].video_index].video_id}"


# ---------------------------------------------------------------- MSR-VTT, malformed files

def _write_test_csv(folder: Path, rows: list[str]) -> None:
    (folder / "MSRVTT_JSFUSION_test.csv").write_text("\n".join(["key,vid_key,video_id,sentence", *rows]) + "\n")


def test_msrvtt_missing_column_names_file_and_row(tmp_path):
    _write_test_csv(tmp_path, ["ret0,msr0,video0,a dog runs", "ret1,msr1,video1"])
    with pytest.raises(DataError, match=r"MSRVTT_JSFUSION_test.csv: row at line 3 has 3 fields, expected 4"):
        msrvtt.load_annotations(str(tmp_path), "/v", "test")


def test_msrvtt_empty_caption_and_bad_header(tmp_path):
    _write_test_csv(tmp_path, ["ret0,msr0,video0,a dog runs", "ret1,msr1,video1,  "])
    with pytest.raises(DataError, match=r"line 3 has an empty 'sentence'"):
        msrvtt.load_annotations(str(tmp_path), "/v", "val")
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text("key,video_id,sentence\nret0,video0,a dog\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['vid_key'\]"):
        msrvtt.load_annotations(str(tmp_path), "/v", "test")


def test_msrvtt_train_errors(tmp_path):
    with pytest.raises(DataError, match="MSRVTT_train.9k.csv: annotation file not found"):
        msrvtt.load_annotations(str(tmp_path), "/v", "train")
    (tmp_path / "MSRVTT_train.7k.csv").write_text("video_id\nvideo0\nvideo1\n")
    data = {"videos": [{"video_id": "video0"}, {"video_id": "video1"}],
            "sentences": [{"caption": "a cat", "video_id": "video0"}, {"caption": "", "video_id": "video1"}]}
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"sentences\[1\] \(video 'video1'\) has an empty caption"):
        msrvtt.load_annotations(str(tmp_path), "/v", "train", train_csv="MSRVTT_train.7k.csv")
    data["sentences"][1] = {"caption": "a bird", "video_id": "video7"}
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"sentences\[1\] names video id 'video7', which is not in 'videos'"):
        msrvtt.load_annotations(str(tmp_path), "/v", "train", train_csv="MSRVTT_train.7k.csv")
    del data["videos"]
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"video id 'video1' \(line 3\) has no caption"):
        msrvtt.load_annotations(str(tmp_path), "/v", "train", train_csv="MSRVTT_train.7k.csv")


def test_build_dataset_unknown_datatype(tokenizer):
    with pytest.raises(ValueError, match="known: activity, didemo, lsmdc, msrvtt, msvd"):
        build_dataset("youcook", "test", "/a", "/v", tokenizer, "texts", **VIDEO_KW)
    assert set(DATASETS) == {"msrvtt", "msvd", "lsmdc", "activity", "didemo"}


# ---------------------------------------------------------------- other families, reference formats

def test_msvd(tmp_path):
    (tmp_path / "test_list.txt").write_text("vidA\nvidB\n")
    captions = {"vidA": [["a", "man", "sings"], ["someone", "sings"]], "vidB": [["a", "dog", "barks"]],
                "vidC": [["unused"]]}
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps(captions))
    (tmp_path / "vidB.mp4").write_bytes(b"")  # only an mp4 exists for vidB
    videos, caps = msvd.load_annotations(str(tmp_path), str(tmp_path), "test")
    assert [v.video_id for v in videos] == ["vidA", "vidB"]
    assert [Path(v.path).name for v in videos] == ["vidA.avi", "vidB.mp4"]
    assert [(c.text, c.video_index) for c in caps] == [("a man sings", 0), ("someone sings", 0), ("a dog barks", 1)]
    (tmp_path / "test_list.txt").write_text("vidA\nvidZ\n")
    with pytest.raises(DataError, match=r"raw-captions.pkl: no captions for video id 'vidZ'"):
        msvd.load_annotations(str(tmp_path), str(tmp_path), "test")


def test_msvd_restricted_unpickler(tmp_path):
    (tmp_path / "train_list.txt").write_text("vidA\n")
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps(OrderedDict(vidA=[["a", "cat"]])))
    with pytest.raises(DataError, match=r"raw-captions.pkl: not a plain-container pickle .*collections.OrderedDict"):
        msvd.load_annotations(str(tmp_path), str(tmp_path), "train")


def test_lsmdc(tmp_path):
    clip_a, clip_b = "0001_American_Beauty_00.00.51.926-00.00.54.129", "0002_Movie_01.00.00.000-01.00.02.500"
    lines = [f"{clip_a}\t00.00.51.926\t00.00.54.129\t00.00.51.000\t00.00.55.000\tSomeone's \"smiling\".",
             f"{clip_b}\t1\t2\t1\t2\tSomeone walks.",
             f"{clip_a}\t1\t2\t1\t2\tShe turns.",
             f"{sorted(lsmdc.BROKEN_CLIPS)[0]}\t1\t2\t1\t2\tLeft out.", ""]
    # The training file: a clip can carry several sentences (the 1k test file lists each clip once).
    (tmp_path / "LSMDC16_annos_training.csv").write_text("\n".join(lines))
    movie = tmp_path / "videos" / "0002_Movie"
    movie.mkdir(parents=True)
    (movie / f"{clip_b}.mp4").write_bytes(b"")
    videos, caps = lsmdc.load_annotations(str(tmp_path), str(tmp_path / "videos"), "train")
    assert [v.video_id for v in videos] == [clip_a, clip_b]
    assert videos[0].path == str(tmp_path / "videos" / "0001_American_Beauty" / f"{clip_a}.avi")  # not found: default
    assert videos[1].path == str(movie / f"{clip_b}.mp4")  # found by the walk
    assert [(c.text, c.video_index) for c in caps] == [("Someone's \"smiling\".", 0), ("Someone walks.", 1),
                                                       ("She turns.", 0)]
    (tmp_path / "LSMDC16_annos_training.csv").write_text(f"{clip_a}\t1\t2\tSomeone.\n")
    with pytest.raises(DataError, match=r"LSMDC16_annos_training.csv: row at line 1 has 4 fields, expected 6"):
        lsmdc.load_annotations(str(tmp_path), str(tmp_path), "train")


def test_activity(tmp_path):
    data = {"v_abc": {"duration": 12.3, "timestamps": [[0, 5], [5, 12]], "sentences": ["A man runs.", " He stops."]},
            "v_def": {"duration": 4, "timestamps": [[0, 4]], "sentences": ["A cat sleeps."]}}
    (tmp_path / "val_1.json").write_text(json.dumps(data))
    (tmp_path / "v_def.mkv").write_bytes(b"")
    videos, caps = activity.load_annotations(str(tmp_path), str(tmp_path), "test")
    assert [(v.video_id, Path(v.path).name, v.start, v.end) for v in videos] == [
        ("v_abc", "v_abc.mp4", 0.0, 13.0), ("v_def", "v_def.mkv", 0.0, 4.0)]
    assert [(c.text, c.video_index) for c in caps] == [("A man runs. He stops.", 0), ("A cat sleeps.", 1)]
    data["v_def"].pop("duration")
    (tmp_path / "train.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"train.json: video 'v_def' needs a numeric 'duration'"):
        activity.load_annotations(str(tmp_path), str(tmp_path), "train")


def test_didemo(tmp_path):
    data = [{"video": "a@N1_1.mov", "description": "a dog jumps", "times": [[0, 0], [0, 1]]},
            {"video": "b@N2_2.mp4", "description": "a bird sings", "times": [[1, 1]]},
            {"video": "a@N1_1.mov", "description": "the dog lands", "times": [[2, 2]]}]
    (tmp_path / "test_data.json").write_text(json.dumps(data))
    (tmp_path / "a@N1_1.mp4").write_bytes(b"")  # compressed copy with a new extension
    videos, caps = didemo.load_annotations(str(tmp_path), str(tmp_path), "test")
    assert [(Path(v.path).name, v.start, v.end) for v in videos] == [("a@N1_1.mp4", 0.0, 31.0),
                                                                     ("b@N2_2.mp4", 0.0, 31.0)]
    assert [(c.text, c.video_index) for c in caps] == [("a dog jumps the dog lands", 0), ("a bird sings", 1)]
    data[1]["description"] = ""
    (tmp_path / "val_data.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"val_data.json: item 1 \(video 'b@N2_2.mp4'\) has an empty 'description'"):
        didemo.load_annotations(str(tmp_path), str(tmp_path), "val")


# ---------------------------------------------------------------- unreadable videos, seeding

def test_skip_bad_videos_in_training_only(demo, tmp_path, tokenizer):
    videos = tmp_path / "videos"
    shutil.copytree(demo / "videos", videos)
    (videos / "video0.mp4").unlink()
    train = build_dataset("msrvtt", "train", str(demo), str(videos), tokenizer, "pairs", skip_bad_videos=True,
                          **VIDEO_KW)
    sample = train[0]  # caption 0 belongs to video0: the next caption with a readable video is used
    assert train.skipped >= 1 and train.bad_videos[0] == str(videos / "video0.mp4")
    assert train.text_to_video[int(sample["caption_index"])] == int(sample["video_index"]) != 0
    strict = build_dataset("msrvtt", "train", str(demo), str(videos), tokenizer, "pairs", **VIDEO_KW)
    with pytest.raises(DataError, match="video0.mp4: video file not found"):
        strict[0]
    (videos / "video12.mp4").unlink()  # the first test video
    test = build_dataset("msrvtt", "test", str(demo), str(videos), tokenizer, "videos", **VIDEO_KW)
    with pytest.raises(DataError, match="video12.mp4: video file not found"):
        test[0]
    with pytest.raises(ValueError, match="training only"):
        build_dataset("msrvtt", "test", str(demo), str(videos), tokenizer, "videos", skip_bad_videos=True,
                      **VIDEO_KW)


def test_augmentation_seeded_by_seed_epoch_index(demo, tokenizer):
    data = build_dataset("msrvtt", "train", str(demo), str(demo / "videos"), tokenizer, "pairs", seed=5, **VIDEO_KW)
    first = data[3]["video"]
    assert torch.equal(first, data[3]["video"])
    data.set_epoch(1)
    assert not torch.equal(first, data[3]["video"])
    batches = {}
    for workers in (0, 2):
        data.set_epoch(0)
        loader = DataLoader(data, batch_size=4, num_workers=workers, shuffle=False)
        batches[workers] = next(iter(loader))
    assert torch.equal(batches[0]["video"], batches[2]["video"])
    assert torch.equal(batches[0]["video"][3], first)
    assert np.array_equal(batches[0]["text_ids"].numpy(), batches[2]["text_ids"].numpy())
