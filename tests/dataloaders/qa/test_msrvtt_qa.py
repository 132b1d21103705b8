"""MSRVTT-QA loading: the real val questions and vocabulary, both accuracy protocols on them, malformed files,
and the question dataset's samples over the tiny synthetic clips."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dataloaders.tokenizer import ClipTokenizer
from dataloaders.errors import DataError
from dataloaders.qa.msrvtt_qa import (QADataset, Question, build_qa_dataset, load_answer_vocab, load_questions,
                                   majority_label)
from modules.evaluation.qa_metrics import qa_metrics

KW = dict(max_words=12, max_frames=4, video_framerate=4, image_size=32)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def row(video_id: str, question: str, answer: str, answer_type: str = "what") -> dict:
    return {"answer": answer, "question": question, "video_id": video_id, "answer_type": answer_type}


def oracle_topk(labels: np.ndarray, num_answers: int) -> np.ndarray:
    """(N, 5): the true class first where there is one, then other classes; class 0 first for OOV questions."""
    first = np.where(labels >= 0, labels, 0)
    return (first[:, None] + np.arange(5)[None, :]) % num_answers


# ---------------------------------------------------------------- real files

@pytest.fixture(scope="module")
def real_qa(real_dir) -> dict:
    folder = real_dir / "msrvtt"
    val, vocab_file = folder / "val.jsonl", folder / "train_ans2label.json"
    if not (val.is_file() and vocab_file.is_file()):
        pytest.skip(f"MSRVTT-QA files val.jsonl / train_ans2label.json not found in {folder}")
    videos, questions = load_questions(val, "/videos")
    return {"val": val, "vocab": load_answer_vocab(vocab_file), "videos": videos, "questions": questions,
            "raw": [json.loads(line) for line in val.read_text().splitlines() if line.strip()]}


def test_real_val_and_vocab_sizes(real_qa):
    videos, questions, vocab = real_qa["videos"], real_qa["questions"], real_qa["vocab"]
    assert len(questions) == 12278 and len(videos) == 497
    assert len(vocab) == 1500 and sorted(vocab.values()) == list(range(1500))
    assert videos[0].video_id == "video6513" and videos[0].path == "/videos/video6513.mp4"
    assert questions[0] == Question("what are three people sitting on?", "couch", "what", 0)
    # Gallery order is first appearance, and every question points at its own video.
    raw = real_qa["raw"]
    assert [v.video_id for v in videos] == list(dict.fromkeys(r["video_id"] for r in raw))
    assert all(videos[q.video_index].video_id == r["video_id"] for q, r in zip(questions, raw))


def test_real_oracle_under_both_protocols(real_qa):
    vocab, questions, raw = real_qa["vocab"], real_qa["questions"], real_qa["raw"]
    labels = np.array([vocab.get(q.answer, -1) for q in questions])
    metrics = qa_metrics(oracle_topk(labels, len(vocab)), labels, [q.answer_type for q in questions])
    # The in-vocabulary count, straight from the raw JSON and the vocabulary's keys.
    in_vocab = sum(r["answer"] in set(vocab) for r in raw)
    assert in_vocab == 12278 - 859  # 859 val answers (7.0%) are not among the 1,500 training answers
    assert metrics["num_out_of_vocab"] == 859 and metrics["num_test_reference"] == in_vocab
    assert metrics["acc_top1_reference"] == pytest.approx(100.0)
    assert metrics["acc_top5_reference"] == pytest.approx(100.0)
    assert metrics["acc_top1"] == pytest.approx(100.0 * in_vocab / 12278) and metrics["acc_top1"] < 93.1
    assert metrics["by_type"]["what"]["num_test"] == sum(r["answer_type"] == "what" for r in raw) == 8337
    assert metrics["by_type"]["how"]["acc_top1"] == pytest.approx(100.0)  # no "how" answer is out of vocabulary


def test_real_flipped_answer_changes_standard_only(real_qa, tmp_path):
    vocab, raw = real_qa["vocab"], real_qa["raw"]
    labels = np.array([vocab.get(r["answer"], -1) for r in raw])
    flip = int(np.flatnonzero(labels >= 0)[10])
    edited = [dict(r) for r in raw]
    edited[flip]["answer"] = "an answer nobody gave"
    _, questions = load_questions(write_jsonl(tmp_path / "val.jsonl", edited), "/videos")
    new_labels = np.array([vocab.get(q.answer, -1) for q in questions])
    assert new_labels[flip] == -1 and (new_labels != labels).sum() == 1
    topk = oracle_topk(labels, len(vocab))  # the model still answers the original answer
    types = [q.answer_type for q in questions]
    before, after = qa_metrics(topk, labels, types), qa_metrics(topk, new_labels, types)
    assert after["acc_top1"] == pytest.approx(before["acc_top1"] - 100.0 / len(raw))
    assert after["acc_top1"] < before["acc_top1"]
    assert after["acc_top1_reference"] == before["acc_top1_reference"] == pytest.approx(100.0)
    assert after["num_test_reference"] == before["num_test_reference"] - 1


# ---------------------------------------------------------------- malformed files

def test_blank_lines_allowed_and_gallery_order(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [row("v2", "what is it?", "cat"), "", "   ",
                                               row("v1", "who runs?", "man", "who"), row("v2", "what color?", "red")])
    videos, questions = load_questions(path, tmp_path / "vids")
    assert [v.video_id for v in videos] == ["v2", "v1"]
    assert videos[1].path == str(tmp_path / "vids" / "v1.mp4")
    assert [q.video_index for q in questions] == [0, 1, 0]
    assert questions[1] == Question("who runs?", "man", "who", 1)


@pytest.mark.parametrize("bad, message", [
    ('{"answer": "cat", "question": "what?"', r"line 3 is not valid JSON"),
    ('["cat", "what?", "v1", "what"]', r"line 3 is a JSON list, expected an object"),
    ('{"answer": "cat", "question": "what?", "video_id": "v1"}', r"line 3 lacks key 'answer_type'"),
    ('{"answer": 3, "question": "what?", "video_id": "v1", "answer_type": "what"}',
     r"line 3 key 'answer' is 3, expected a non-empty string"),
    ('{"answer": "cat", "question": " ", "video_id": "v1", "answer_type": "what"}',
     r"line 3 key 'question' is ' ', expected a non-empty string"),
])
def test_malformed_line_names_file_line_and_key(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [row("v0", "what is it?", "cat"), "", bad])
    with pytest.raises(DataError, match=r"bad\.jsonl: " + message):
        load_questions(path, "/videos")


def test_missing_question_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: annotation file not found"):
        load_questions(tmp_path / "nope.jsonl", "/videos")


@pytest.mark.parametrize("content, message", [
    ({"cat": 0, "dog": 2}, r"answer 'dog' has id 2, expected an integer in 0\.\.1"),
    ({"cat": 0, "dog": 0}, r"answer 'dog' has id 0, already given to 'cat'"),
    ({"cat": "0", "dog": 1}, r"answer 'cat' has id '0', expected an integer"),
    ({"cat": 0, "dog": True}, r"answer 'dog' has id True"),
    ({"cat": -1, "dog": 0}, r"answer 'cat' has id -1"),
    (["cat", "dog"], r"expected a non-empty JSON object"),
    ({}, r"expected a non-empty JSON object"),
])
def test_bad_vocab_names_file_and_key(tmp_path, content, message):
    path = tmp_path / "ans2label.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=r"ans2label\.json: " + message):
        load_answer_vocab(path)


def test_vocab_invalid_json_and_good_vocab(tmp_path):
    path = tmp_path / "ans2label.json"
    path.write_text('{"cat": 0,')
    with pytest.raises(DataError, match=r"ans2label\.json: invalid JSON at line 1"):
        load_answer_vocab(path)
    path.write_text(json.dumps({"dog": 1, "cat": 0}))
    assert load_answer_vocab(path) == {"cat": 0, "dog": 1}


def test_majority_label():
    assert majority_label([3, 1, 1, 3, -1, -1, -1, 2]) == 1  # tie 1 / 3 -> smallest; -1 is not a class
    assert majority_label(np.array([5, 5, 0, -1])) == 5
    with pytest.raises(ValueError, match="no label is in the vocabulary"):
        majority_label([-1, -1])


def test_majority_label_of_a_file_without_known_answers_names_it():
    with pytest.raises(DataError, match=r"^data/train.jsonl: no label is in the vocabulary"):
        majority_label([-1, -1], "data/train.jsonl")


def test_questions_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(row("video3", "what colour is it?", "r\u00e9d", "colour"), ensure_ascii=False) + "\n",
                    encoding="latin-1")  # not UTF-8
    with pytest.raises(DataError, match=r"test.jsonl: not UTF-8 text \(byte \d+: invalid continuation byte\)"):
        load_questions(path, tmp_path)


# ---------------------------------------------------------------- the dataset over real (tiny) clips

@pytest.fixture(scope="module")
def qa_files(tiny_demo, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("qa")
    rows = [row("video3", "what colour is it?", "red", "colour"),
            row("video1", "what shape is it?", "unicorn", "shape"),  # not in the vocabulary
            row("video3", "which way?", "left", "motion"),
            row("video5", "what shape is it?", "dragon", "shape")]  # video5's only question, out of vocabulary
    return {"jsonl": write_jsonl(folder / "q.jsonl", rows), "videos": tiny_demo / "videos",
            "vocab": {"left": 0, "red": 1, "circle": 2}}


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


def test_dataset_samples_carry_answer(qa_files, tokenizer):
    pairs = build_qa_dataset(qa_files["jsonl"], qa_files["videos"], qa_files["vocab"], tokenizer, "pairs", **KW)
    assert isinstance(pairs, QADataset) and pairs.dropped == 0
    assert pairs.labels.dtype == np.int64 and pairs.labels.tolist() == [1, -1, 0, -1]
    assert pairs.answers == ["red", "unicorn", "left", "dragon"]
    assert pairs.answer_types == ["colour", "shape", "motion", "shape"]
    assert pairs.video_ids == ["video3", "video1", "video5"]
    for i, expected in enumerate([1, -1, 0, -1]):
        sample = pairs[i]
        assert sample["answer"].dtype == torch.int64 and sample["answer"].shape == ()
        assert int(sample["answer"]) == expected and int(sample["caption_index"]) == i
        assert sample["video"].shape == (4, 3, 32, 32)
    texts = build_qa_dataset(qa_files["jsonl"], qa_files["videos"], qa_files["vocab"], tokenizer, "texts", **KW)
    assert len(texts) == 4 and int(texts[1]["answer"]) == -1 and int(texts[2]["answer"]) == 0
    assert "video" not in texts[0]
    videos = build_qa_dataset(qa_files["jsonl"], qa_files["videos"], qa_files["vocab"], tokenizer, "videos", **KW)
    assert len(videos) == 3 and "answer" not in videos[2] and int(videos[2]["video_index"]) == 2


def test_drop_out_of_vocab_for_training(qa_files, tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="dataloaders.qa.msrvtt_qa"):
        train = build_qa_dataset(qa_files["jsonl"], qa_files["videos"], qa_files["vocab"], tokenizer, "pairs",
                                 drop_out_of_vocab=True, **KW)
    assert train.dropped == 2 and len(train) == 2 and train.labels.tolist() == [1, 0]
    assert "q.jsonl: 2 of 4 questions have answers outside the vocabulary" in caplog.text
    assert train.video_ids == ["video3"]  # video1 and video5 have no question left
    assert [int(train[i]["answer"]) for i in range(2)] == [1, 0]
    assert all(int(train[i]["video_index"]) == 0 for i in range(2))


def test_nothing_left_and_missing_video(qa_files, tokenizer, tmp_path):
    with pytest.raises(DataError, match=r"q\.jsonl: none of the 4 answers is in the vocabulary"):
        build_qa_dataset(qa_files["jsonl"], qa_files["videos"], {"zebra": 0}, tokenizer, "pairs",
                         drop_out_of_vocab=True, **KW)
    path = write_jsonl(tmp_path / "q.jsonl", [row("video999", "what?", "red")])
    texts = build_qa_dataset(path, qa_files["videos"], qa_files["vocab"], tokenizer, "texts", **KW)
    assert int(texts[0]["answer"]) == 1  # the question alone never opens the video
    pairs = build_qa_dataset(path, qa_files["videos"], qa_files["vocab"], tokenizer, "pairs", **KW)
    with pytest.raises(DataError, match=r"video999\.mp4: video file not found"):
        pairs[0]
