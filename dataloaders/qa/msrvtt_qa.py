"""MSRVTT-QA format: questions as jsonl (`answer`, `question`, `video_id`, `answer_type` per line), the answer
vocabulary as a JSON object answer -> class id (`train_ans2label.json`), videos `{video_path}/{video_id}.mp4`.

A question's sample is the retrieval sample (the question as the caption, its video) plus its answer's class id,
-1 when the answer is not in the vocabulary:
  "pairs": text_ids, text_mask, video, video_mask, video_index, caption_index, answer (int64 scalar)
  "texts": text_ids, text_mask, caption_index, answer
  "videos": unchanged (one per video)
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from dataloaders.errors import DataError
from dataloaders.text_video.dataset import (CaptionItem, TextVideoDataset, VideoItem, build_gallery, load_json,
                                           read_text, require_file)

log = logging.getLogger(__name__)

FIELDS = ("answer", "question", "video_id", "answer_type")


@dataclass(frozen=True)
class Question:
    """One question, its answer as text, the answer type (e.g. "what") and the index of its video in the gallery."""
    text: str
    answer: str
    answer_type: str
    video_index: int


def load_answer_vocab(path: str | Path) -> dict[str, int]:
    """answer -> class id from a JSON object; the ids must be exactly 0..N-1, each used once."""
    vocab = load_json(path)
    if not isinstance(vocab, dict) or not vocab:
        raise DataError(f"{path}: expected a non-empty JSON object answer -> class id, got {type(vocab).__name__}")
    size = len(vocab)
    owner: dict[int, str] = {}
    for answer, label in vocab.items():
        # bool is an int subclass; `true` as an id is a mistake, not class 1.
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < size:
            raise DataError(f"{path}: answer {answer!r} has id {label!r}, expected an integer in 0..{size - 1}")
        if label in owner:
            raise DataError(f"{path}: answer {answer!r} has id {label}, already given to {owner[label]!r}")
        owner[label] = answer
    return dict(vocab)


def _check_row(path: str, line_no: int, row: Any) -> dict[str, str]:
    if not isinstance(row, dict):
        raise DataError(f"{path}: line {line_no} is a JSON {type(row).__name__}, expected an object "
                        f"with keys {', '.join(FIELDS)}")
    for key in FIELDS:
        if key not in row:
            raise DataError(f"{path}: line {line_no} lacks key {key!r} (expected keys: {', '.join(FIELDS)})")
        value = row[key]
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{path}: line {line_no} key {key!r} is {value!r}, expected a non-empty string")
    return row


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every non-blank line; every row must carry the four fields as non-empty strings."""
    path = require_file(path)
    rows = []
    for line_no, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
        rows.append((line_no, _check_row(path, line_no, row)))
    return rows


def load_questions(jsonl_path: str | Path, video_path: str | Path) -> tuple[list[VideoItem], list[Question]]:
    """The videos (in first-appearance order of video_id) and the questions of a jsonl file, in file order.

    A video file is not checked here: a missing one is reported when it is read, as the retrieval loaders do.
    """
    rows = [row for _, row in read_jsonl(jsonl_path)]
    videos, captions = build_gallery([(r["video_id"], r["question"]) for r in rows],
                                     lambda vid: VideoItem(vid, os.path.join(video_path, f"{vid}.mp4")))
    questions = [Question(r["question"], r["answer"], r["answer_type"], c.video_index)
                 for r, c in zip(rows, captions)]
    return videos, questions


def majority_label(labels: Iterable[int], source: str | Path = "majority_label") -> int:
    """The most frequent class id (ties: the smallest); -1 (out of vocabulary) is not a class. `source` (the file
    the labels come from) names the error when none is a class."""
    counts = Counter(int(x) for x in np.asarray(list(labels), dtype=np.int64) if x >= 0)
    if not counts:
        raise DataError(f"{source}: no label is in the vocabulary (all answers are outside it, or there are none)")
    return min(counts, key=lambda label: (-counts[label], label))


class QADataset(TextVideoDataset):
    """TextVideoDataset over questions; "pairs" and "texts" samples also carry `answer` (class id, -1 if none).

    labels: (num_questions,) int64, answers / answer_types: one string per question, dropped: questions left out
    by `build_qa_dataset` (0 when built directly).
    """

    def __init__(self, videos: list[VideoItem], questions: list[Question], vocab: dict[str, int],
                 tokenizer: Callable, mode: str, **kwargs: Any) -> None:
        super().__init__(videos, [CaptionItem(q.text, q.video_index) for q in questions], tokenizer, mode, **kwargs)
        self.vocab = vocab
        self.answers = [q.answer for q in questions]
        self.answer_types = [q.answer_type for q in questions]
        self.labels = np.array([vocab.get(q.answer, -1) for q in questions], dtype=np.int64)
        self.dropped = 0

    def _complete(self, sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The parent may move a "pairs" sample to another caption (skip_bad_videos), so index by the sample's own.
        if "caption_index" in sample:
            sample["answer"] = torch.tensor(self.labels[int(sample["caption_index"])], dtype=torch.int64)
        return sample


def _keep_used_videos(videos: list[VideoItem], questions: list[Question]
                      ) -> tuple[list[VideoItem], list[Question]]:
    """Drop gallery videos no question points at any more and renumber the questions' video indices."""
    used = sorted({q.video_index for q in questions})
    if len(used) == len(videos):
        return videos, questions
    new_index = {old: new for new, old in enumerate(used)}
    return ([videos[i] for i in used],
            [Question(q.text, q.answer, q.answer_type, new_index[q.video_index]) for q in questions])


def build_qa_dataset(jsonl_path: str | Path, video_path: str | Path, vocab: dict[str, int], tokenizer: Callable,
                     mode: str, drop_out_of_vocab: bool = False, **video_kwargs: Any) -> QADataset:
    """QADataset of a jsonl file; video_kwargs are TextVideoDataset's (max_words, max_frames, ...).

    drop_out_of_vocab=True (training: such an answer has no class) leaves out questions whose answer is not in
    `vocab`, logs how many and keeps the count in `dataset.dropped`. Otherwise (evaluation) they stay, label -1:
    the standard protocol counts them wrong.
    """
    videos, questions = load_questions(jsonl_path, video_path)
    if not questions:
        raise DataError(f"{jsonl_path}: no questions (the file has only blank lines)")
    kept = [q for q in questions if q.answer in vocab] if drop_out_of_vocab else questions
    if not kept:
        raise DataError(f"{jsonl_path}: none of the {len(questions)} answers is in the vocabulary")
    dropped = len(questions) - len(kept)
    if dropped:
        log.warning("%s: %d of %d questions have answers outside the vocabulary and are left out",
                    jsonl_path, dropped, len(questions))
        videos, kept = _keep_used_videos(videos, kept)
    dataset = QADataset(videos, kept, vocab, tokenizer, mode, **video_kwargs)
    dataset.dropped = dropped
    return dataset
