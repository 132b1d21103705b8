"""Synthetic demo questions: counts, vocabulary, agreement with the clip plan, determinism, the CLI, and a read
through the MSRVTT-QA loader over real tiny clips."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import dataloaders.synthetic.qa as synthetic_qa
from dataloaders.tokenizer import ClipTokenizer
from dataloaders.qa.msrvtt_qa import build_qa_dataset, load_answer_vocab, load_questions
from dataloaders.synthetic.clips import COLOURS, MOTIONS, SHAPES, clip_plan
from tests.helpers import ROOT



@pytest.fixture()
def no_clips(monkeypatch):
    """Questions only: the clip rendering is tested in test_synthetic.py and takes minutes at full size."""
    calls = []

    def fake(root, *args):
        calls.append(args)
        return {"reused": True}
    monkeypatch.setattr(synthetic_qa, "generate_demo_data", fake)
    return calls


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_default_size_counts_and_vocab(tmp_path, no_clips):
    info = synthetic_qa.generate_demo_qa(tmp_path)
    assert no_clips == [(600, 60, 24, 8, 64, 0)]  # the clips are asked for with the same parameters
    train, test = read_rows(tmp_path / "qa" / "train.jsonl"), read_rows(tmp_path / "qa" / "test.jsonl")
    assert len(train) == 6 * 600 and len(test) == 3 * 60
    assert (info["num_train"], info["num_test"], info["num_answers"]) == (3600, 180, 13)
    vocab = load_answer_vocab(tmp_path / "qa" / "train_ans2label.json")
    expected = sorted([*COLOURS, *SHAPES, *MOTIONS])
    assert list(vocab) == expected and list(vocab.values()) == list(range(13))
    assert all(r["answer"] in vocab for r in test)
    for rows in (train, test):
        assert {r["answer_type"] for r in rows} == {"colour", "shape", "motion"}
    for rows, per_kind in ((train, 2), (test, 1)):
        counts = Counter((r["video_id"], r["answer_type"]) for r in rows)
        assert set(counts.values()) == {per_kind} and len(counts) == 3 * len({r["video_id"] for r in rows})
    phrasings = {}
    for r in train:
        phrasings.setdefault((r["video_id"], r["answer_type"]), set()).add(r["question"])
    assert all(len(qs) == 2 for qs in phrasings.values())  # two different phrasings, not one repeated


def test_answers_agree_with_clip_plan(tmp_path, no_clips):
    synthetic_qa.generate_demo_qa(tmp_path, num_train=40, num_test=12, seed=3)
    plan = {vid: (split, {"colour": c, "shape": s, "motion": m}) for vid, split, c, s, m in clip_plan(40, 12, 3)}
    for split in ("train", "test"):
        rows = read_rows(tmp_path / "qa" / f"{split}.jsonl")
        assert {r["video_id"] for r in rows} == {vid for vid, (sp, _) in plan.items() if sp == split}
        for r in rows:
            clip_split, truth = plan[r["video_id"]]
            assert clip_split == split
            assert r["answer"] == truth[r["answer_type"]]
            assert r["answer"] not in r["question"].replace("?", "").split()  # the question does not give it away
    test = read_rows(tmp_path / "qa" / "test.jsonl")
    # Test questions are the canonical phrasing of each kind.
    _, truth = plan[test[0]["video_id"]]
    assert [r["question"] for r in test[:3]] == [f"what colour is the {truth['shape']}?",
                                                 f"what shape is the {truth['colour']} object?",
                                                 f"which way does the {truth['colour']} {truth['shape']} move?"]


def test_deterministic_and_seed_dependent(tmp_path, no_clips):
    names = ("train.jsonl", "test.jsonl", "train_ans2label.json")
    outputs = []
    for folder, seed in (("a", 0), ("b", 0), ("c", 1)):
        synthetic_qa.generate_demo_qa(tmp_path / folder, num_train=30, num_test=10, seed=seed)
        outputs.append([(tmp_path / folder / "qa" / n).read_bytes() for n in names])
    assert outputs[0] == outputs[1]
    assert outputs[0][0] != outputs[2][0]  # another seed plans other clips


def test_real_clips_load_through_qa_loader(tmp_path):
    info = synthetic_qa.generate_demo_qa(tmp_path, num_train=6, num_test=3, frames=4, fps=4, size=32, seed=0)
    assert info["clips_reused"] is False
    first = (tmp_path / "qa" / "train.jsonl").read_bytes()
    again = synthetic_qa.generate_demo_qa(tmp_path, num_train=6, num_test=3, frames=4, fps=4, size=32, seed=0)
    assert again["clips_reused"] is True and (tmp_path / "qa" / "train.jsonl").read_bytes() == first
    videos, questions = load_questions(tmp_path / "qa" / "test.jsonl", tmp_path / "videos")
    assert len(videos) == 3 and len(questions) == 9
    assert all(Path(v.path).is_file() for v in videos)
    vocab = load_answer_vocab(tmp_path / "qa" / "train_ans2label.json")
    dataset = build_qa_dataset(tmp_path / "qa" / "train.jsonl", tmp_path / "videos", vocab, ClipTokenizer(), "pairs",
                               max_words=12, max_frames=4, video_framerate=4, image_size=32)
    assert len(dataset) == 36 and (dataset.labels >= 0).all()
    sample = dataset[5]
    assert int(sample["answer"]) == vocab[dataset.answers[5]] and sample["video"].shape == (4, 3, 32, 32)


def test_cli_prints_one_summary_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dataloaders.synthetic.qa", "--root", str(tmp_path),
                             "--num_train", "3", "--num_test", "2", "--frames", "4", "--size", "32"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "18 train / 6 test" in lines[0]
    assert (tmp_path / "qa" / "train_ans2label.json").is_file()


def test_second_run_leaves_the_question_files_untouched(tmp_path, no_clips):
    synthetic_qa.generate_demo_qa(tmp_path, num_train=30, num_test=10)
    files = [tmp_path / "qa" / name for name in ("train.jsonl", "test.jsonl", "train_ans2label.json")]
    old = 1_000_000_000_000_000_000  # a distinct past mtime (ns): any rewrite would replace it
    for path in files:
        os.utime(path, ns=(old, old))
    contents = [path.read_bytes() for path in files]
    synthetic_qa.generate_demo_qa(tmp_path, num_train=30, num_test=10)
    assert [path.stat().st_mtime_ns for path in files] == [old] * 3
    assert [path.read_bytes() for path in files] == contents
    files[1].unlink()  # one file absent: the questions are written again
    synthetic_qa.generate_demo_qa(tmp_path, num_train=30, num_test=10)
    assert [path.read_bytes() for path in files] == contents


def test_writing_the_questions_is_reported_and_reusing_them_is_not(tmp_path, no_clips):
    messages = []
    first = synthetic_qa.generate_demo_qa(tmp_path, num_train=30, num_test=10, report=messages.append)
    assert messages == [f"demo data under {tmp_path}: reused the demo clips; wrote 180 training and 30 test "
                        f"questions to {tmp_path / 'qa'} (absent or out of date)"]
    second = synthetic_qa.generate_demo_qa(tmp_path, num_train=30, num_test=10, report=messages.append)
    assert first["questions_written"] and not second["questions_written"] and len(messages) == 1
