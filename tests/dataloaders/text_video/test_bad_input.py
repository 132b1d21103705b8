"""Bad flags and unreadable annotation files stop with a one-line DataError naming the flag or the file (the entry
scripts print exactly that type without a traceback)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataloaders.errors import DataError
from dataloaders.text_video import build_dataset, msrvtt, msvd
from dataloaders.tokenizer import ClipTokenizer

VIDEO_KW = dict(max_words=12, max_frames=4, video_framerate=2, image_size=32)


def write_test_csv(folder: Path, body: bytes) -> Path:
    path = folder / msrvtt.TEST_CSV
    path.write_bytes(b"key,vid_key,video_id,sentence\n" + body)
    return path


@pytest.mark.parametrize("flags, message", [
    ({"video_framerate": 0}, r"^--video_framerate must be > 0 and --max_frames >= 1, got 0 and 4$"),
    ({"max_frames": 0}, r"^--video_framerate must be > 0 and --max_frames >= 1, got 2 and 0$"),
    ({"max_words": 1}, r"^--max_words must be at least 2 \(start and end tokens\), got 1$"),
])
def test_flags_no_video_can_satisfy_stop_at_construction(tmp_path, flags, message):
    write_test_csv(tmp_path, b"ret0,msr0,video0,a dog runs\n")
    with pytest.raises(DataError, match=message):
        build_dataset("msrvtt", "test", str(tmp_path), str(tmp_path), ClipTokenizer(), "texts",
                      **{**VIDEO_KW, **flags})


def test_per_second_sampler_needs_a_whole_framerate(tmp_path):
    (tmp_path / "val_1.json").write_text(json.dumps({"v_a": {"duration": 4, "sentences": ["A cat sleeps."]}}))
    with pytest.raises(DataError, match=r"'per_second' frame sampler of this dataset reads a whole number of "
                                        r"frames per second, got --video_framerate 2.5"):
        build_dataset("activity", "test", str(tmp_path), str(tmp_path), ClipTokenizer(), "videos",
                      **{**VIDEO_KW, "video_framerate": 2.5})


def test_non_utf8_and_oversized_rows_name_the_file_and_line(tmp_path):
    path = write_test_csv(tmp_path, b"ret0,msr0,video0,a dog runs\nret1,msr1,video1,caf\xe9\n")
    with pytest.raises(DataError, match=rf"^{path}: not UTF-8 text after line \d \(invalid continuation byte\)$"):
        msrvtt.load_annotations(str(tmp_path), "/v", "test")
    path = write_test_csv(tmp_path, b"ret0,msr0,video0,a dog runs\nret1,msr1,video1,\"" + b"a" * 200_000 + b"\"\n")
    with pytest.raises(DataError, match=rf"^{path}: unreadable row at line \d \(field larger than field limit"):
        msrvtt.load_annotations(str(tmp_path), "/v", "test")
    (tmp_path / "test_list.txt").write_bytes(b"vidA\n\xff\n")
    with pytest.raises(DataError, match=r"test_list.txt: not UTF-8 text \(byte 5: invalid start byte\)"):
        msvd.load_annotations(str(tmp_path), str(tmp_path), "test")


def test_corrupt_caption_pickle_is_a_data_error(tmp_path):
    (tmp_path / "test_list.txt").write_text("vidA\n")
    (tmp_path / "raw-captions.pkl").write_bytes(b"}]]s.")  # a dict keyed by a list: TypeError while unpickling
    with pytest.raises(DataError, match=r"raw-captions.pkl: not a plain-container pickle \(TypeError: unhashable"):
        msvd.load_annotations(str(tmp_path), str(tmp_path), "test")


def test_msrvtt_videos_entry_that_is_not_an_object(tmp_path):
    (tmp_path / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\n")
    data = {"videos": [{"video_id": "video0"}, "video1"], "sentences": [{"caption": "a cat", "video_id": "video0"}]}
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"MSRVTT_data.json: videos\[1\] is not an object with a 'video_id'$"):
        msrvtt.load_annotations(str(tmp_path), "/v", "train")
