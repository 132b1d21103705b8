"""HAP-VR annotation files: the real ones load with the published counts; the restricted unpickler refuses code;
malformed files stop with one line naming the file (and line)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from dataloaders.errors import DataError
from dataloaders.video_video.annotations import (load_easy_duplicates, load_evve, load_fivr, load_svd_ground_truth,
                                                 load_svd_unlabeled, read_id_list, read_svd_ground_truth)
from dataloaders.video_video.pickles import load_plain_pickle


@pytest.fixture(scope="module")
def hapvr_dir(real_dir) -> Path:
    path = real_dir / "hapvr"
    if not path.is_dir():
        pytest.skip(f"real HAP-VR annotation files not found at {path}")
    return path


def test_real_fivr_counts(hapvr_dir):
    fivr = load_fivr(hapvr_dir)
    assert Path(fivr.path).name == "fivr_audio.pickle"
    assert (len(fivr.splits["5k"].queries), len(fivr.splits["5k"].database)) == (50, 5000)
    assert (len(fivr.splits["200k"].queries), len(fivr.splits["200k"].database)) == (100, 225960)
    assert len(fivr.annotation) == 100 and set(fivr.splits["5k"].queries) <= set(fivr.splits["200k"].queries)
    assert {label for labels in fivr.annotation.values() for label in labels} == {"ND", "DS", "CS", "IS", "DA"}
    assert list(fivr.splits["5k"].queries) == sorted(fivr.splits["5k"].queries)  # the reference sorts them
    easy = load_easy_duplicates(hapvr_dir)
    assert len(easy) == 4873 and easy <= set(fivr.splits["200k"].database)


def test_real_evve_counts(hapvr_dir):
    evve = load_evve(hapvr_dir)
    assert (len(evve.events), len(evve.queries), len(evve.database)) == (13, 620, 2373)
    assert sum(len(e.queries) for e in evve.events.values()) == 620
    assert sum(len(e.positives) for e in evve.events.values()) == 1252
    assert len(evve.event_of()) == 620


def test_real_svd_counts(hapvr_dir):
    truth = load_svd_ground_truth(hapvr_dir)
    assert len(truth) == 206 and sum(map(len, truth.values())) == 6355
    assert sum(label for row in truth.values() for label in row.values()) == 1759
    assert truth["6520763290014977287.mp4"]["6534914182570052871.mp4"] == 1


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"annotation": _RunsCode(marker)}))
    with pytest.raises(DataError, match=r"evil\.pickle: not a plain-container pickle .*refusing to load .*system"):
        load_plain_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_admits_containers(tmp_path, protocol):
    data = {"a": [1, 2.5, "x"], "b": (frozenset({"y"}), {"z"}), "c": {"nested": None}}
    path = tmp_path / "plain.pickle"
    path.write_bytes(pickle.dumps(data, protocol=protocol))  # protocols 2-3 spell sets as calls of builtins.set
    assert load_plain_pickle(path) == data


def test_corrupt_pickle_is_one_line(tmp_path):
    path = tmp_path / "evve.pickle"
    path.write_bytes(pickle.dumps({"a": 1})[:-3])
    with pytest.raises(DataError, match=r"evve\.pickle: not a plain-container pickle"):
        load_evve(tmp_path)


def test_svd_ground_truth_tolerates_crlf_and_trailing_newline(tmp_path):
    path = tmp_path / "test_groundtruth"
    path.write_bytes(b"q1.mp4 a.mp4 1\r\nq1.mp4 b.mp4 0\r\n\r\nq2.mp4 c.mp4 0\r\n")
    assert read_svd_ground_truth(path) == {"q1.mp4": {"a.mp4": 1, "b.mp4": 0}, "q2.mp4": {"c.mp4": 0}}


@pytest.mark.parametrize("bad, reason", [("q1.mp4 b.mp4", "three fields"), ("q1.mp4 b.mp4 2", "label 2"),
                                         ("q1.mp4 b.mp4 1 extra", "four fields"), ("q1.mp4 a.mp4 0", "repeated pair")])
def test_malformed_svd_line_names_file_and_line(tmp_path, bad, reason):
    path = tmp_path / "test_groundtruth"
    path.write_text(f"q1.mp4 a.mp4 1\n\n{bad}\n")
    with pytest.raises(DataError, match=r"test_groundtruth: line 3: ") as info:
        read_svd_ground_truth(path)
    assert "\n" not in str(info.value), reason


def test_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(DataError, match=r"fivr_audio\.pickle: annotation file not found \(nor fivr\.pickle\); "
                                        r"get it from https://github\.com/gkordo/s2vs"):
        load_fivr(tmp_path)
    with pytest.raises(DataError, match=r"unlabeled-data-id: annotation file not found; get it from the SVD dataset"):
        load_svd_unlabeled(tmp_path)
    with pytest.raises(DataError, match=r"evve\.pickle: annotation file not found; .*MKLab-ITI/visil"):
        load_evve(tmp_path)


def test_visil_name_and_structure_errors(tmp_path):
    fivr = {"5k": {"queries": ["q"], "database": {"a", "q"}}, "annotation": {"q": {"ND": ["a"]}}}
    (tmp_path / "fivr.pickle").write_bytes(pickle.dumps(fivr))
    loaded = load_fivr(tmp_path)
    assert loaded.splits["5k"].database == ("a", "q") and loaded.annotation["q"]["ND"] == {"a"}
    (tmp_path / "fivr.pickle").write_bytes(pickle.dumps({**fivr, "annotation": {}}))
    with pytest.raises(DataError, match=r"fivr\.pickle: 1 5k queries have no annotation, e.g. 'q'"):
        load_fivr(tmp_path)
    (tmp_path / "fivr.pickle").write_bytes(pickle.dumps({"5k": {"queries": ["q"]}, "annotation": {}}))
    with pytest.raises(DataError, match=r"\['5k'\] has no \['database'\]"):
        load_fivr(tmp_path)


def test_evve_query_outside_every_event(tmp_path):
    evve = {"annotation": {"e": ({"q1"}, {"a"}, set())}, "queries": ["q1", "q2"], "database": ["a"]}
    (tmp_path / "evve.pickle").write_bytes(pickle.dumps(evve, protocol=3))
    with pytest.raises(DataError, match=r"1 queries belong to no event, e.g. 'q2'"):
        load_evve(tmp_path)


def test_id_list(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("a\r\nb\n\nb\na")
    assert read_id_list(path) == ["a", "b"]
    path.write_text("a\nb c\n")
    with pytest.raises(DataError, match=r"ids\.txt: line 2: expected one video id"):
        read_id_list(path)
