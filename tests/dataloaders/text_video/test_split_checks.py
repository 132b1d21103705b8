"""Evaluation splits reject a repeated video like the training splits do; a split with nothing in it stops at
construction with the file's name, in every family."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from dataloaders.errors import DataError
from dataloaders.text_video import build_dataset
from dataloaders.text_video import activity, lsmdc, msrvtt
from dataloaders.tokenizer import ClipTokenizer

VIDEO_KW = dict(max_words=12, max_frames=4, video_framerate=2, image_size=32)
TEST_HEADER = "key,vid_key,video_id,sentence"


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("split", ["val", "test"])
def test_msrvtt_test_csv_repeating_a_video_is_rejected(tmp_path, split):
    rows = [TEST_HEADER, "ret0,msr0,video0,a dog runs", "ret1,msr1,video1,a cat sleeps", "ret2,msr2,video0,a dog"]
    (tmp_path / msrvtt.TEST_CSV).write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as error:
        msrvtt.load_annotations(str(tmp_path), "/v", split)
    assert one_line(error) == f"{tmp_path / msrvtt.TEST_CSV}: row at line 4 repeats video id 'video0'"


def test_lsmdc_test_file_repeating_a_clip_is_rejected(tmp_path):
    lines = ["clipA\t1\t2\t1\t2\tSomeone walks.", "clipB\t1\t2\t1\t2\tShe turns.", "clipA\t1\t2\t1\t2\tHe runs."]
    (tmp_path / lsmdc.FILES["test"]).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"LSMDC16_challenge_1000_publictect.csv: row at line 3 repeats video id "
                                        r"'clipA'"):
        lsmdc.load_annotations(str(tmp_path), str(tmp_path), "test")
    (tmp_path / lsmdc.FILES["train"]).write_text("\n".join(lines) + "\n")  # training: several sentences a clip
    videos, captions = lsmdc.load_annotations(str(tmp_path), str(tmp_path), "train")
    assert len(videos) == 2 and len(captions) == 3


def test_activity_repeated_video_id_is_rejected(tmp_path):
    entry = '{"duration": 4, "timestamps": [[0, 4]], "sentences": ["A cat sleeps."]}'
    (tmp_path / "val_1.json").write_text(f'{{"v_a": {entry},\n "v_b": {entry},\n "v_a": {entry}}}\n')
    with pytest.raises(DataError) as error:
        activity.load_annotations(str(tmp_path), str(tmp_path), "test")
    assert one_line(error).startswith(f"{tmp_path / 'val_1.json'}: key 'v_a' repeated at line 3")


def write_empty(family: str, split: str, folder: Path) -> Path:
    """The annotation files of `family` with nothing in the `split` file; returns that file."""
    if family == "msrvtt":
        (folder / "MSRVTT_data.json").write_text(json.dumps({"videos": [], "sentences": []}))
        name = msrvtt.TEST_CSV if split == "test" else "MSRVTT_train.9k.csv"
        (folder / name).write_text((TEST_HEADER if split == "test" else "video_id") + "\n")
    elif family == "msvd":
        (folder / "raw-captions.pkl").write_bytes(pickle.dumps({"vidA": [["a", "cat"]]}))
        name = f"{split}_list.txt"
        (folder / name).write_text("\n")
    elif family == "lsmdc":
        name = lsmdc.FILES[split]
        (folder / name).write_text("")
    elif family == "activity":
        name = activity.FILES[split]
        (folder / name).write_text("{}")
    else:
        name = f"{split}_data.json"
        (folder / name).write_text("[]")
    return folder / name


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("family", ["msrvtt", "msvd", "lsmdc", "activity", "didemo"])
def test_a_split_with_nothing_in_it_names_its_file(tmp_path, family, split):
    path = write_empty(family, split, tmp_path)
    with pytest.raises(DataError) as error:
        build_dataset(family, split, str(tmp_path), str(tmp_path), ClipTokenizer(), "texts", **VIDEO_KW)
    assert re.fullmatch(rf"{re.escape(str(path))}: no (captions|video ids|sentences|videos|items) \(the file is "
                        r"empty or has only a header / blank lines\)", one_line(error))
