"""VQA evaluation: each video encoded and merged once, each question once, answers for every question.

The reference runs the whole model once per question, so a video is decoded and encoded once for each of its
questions (about 24 times on MSRVTT-QA). Features depend on one item only, so here videos are encoded once,
their hierarchy tokens computed once, and indexed for their questions; the answers are the same.
Each process takes a contiguous shard of the videos and of the questions; results are gathered in rank order.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from modules.engine.checkpoint import atomic_write
from modules.engine.distributed import DistInfo, gather_rows
from modules.engine.precision import autocast_context
from modules.engine.provenance import write_json
from modules.evaluation.common import evaluating, shard_loader
from modules.evaluation.retrieval import encode_items
from modules.evaluation.qa_metrics import qa_metrics

TOP_K = 5


@torch.no_grad()
def _video_levels(model, video_set, dist: DistInfo, batch_size: int, workers: int, precision: str) -> tuple:
    """Every video's tokens at the three levels ((Nv, L, D) each; None where the model's rate does not need the
    level) and its (Nv, F) frame mask, on every process."""
    feats, mask = encode_items(model, shard_loader(video_set, dist, batch_size, workers), "video", dist, precision)
    depth = model.num_levels()  # levels of answer weight 0 (and no weighted level after them) are not merged
    levels = [[] for _ in range(depth)]
    for start in range(0, len(feats), batch_size):
        with autocast_context(dist.device, precision):
            chunk = model.merge_levels(feats[start:start + batch_size], mask[start:start + batch_size], "video",
                                       depth)
        for out, level in zip(levels, chunk):
            out.append(level.float())
    return tuple(torch.cat(level) for level in levels) + (None,) * (3 - depth), mask


@torch.no_grad()
def predict_answers(model, question_set, video_set, dist: DistInfo, batch_size: int, workers: int,
                    precision: str) -> tuple[np.ndarray, np.ndarray]:
    """((N, K) answer ids best first, (N, K) their scores) for every question, gathered in question order."""
    video_levels, video_mask = _video_levels(model, video_set, dist, batch_size, workers, precision)
    question_video = torch.as_tensor(question_set.text_to_video, device=dist.device)
    top_k = min(TOP_K, model.num_answers)
    ids, scores = [], []
    loader = shard_loader(question_set, dist, batch_size, workers)
    for batch in tqdm(loader, desc="answer questions", disable=not dist.is_main, leave=False):
        text_mask = batch["text_mask"].to(dist.device, non_blocking=True)
        videos = question_video[batch["caption_index"].to(dist.device)]
        with autocast_context(dist.device, precision):
            text = model.encode_text(batch["text_ids"].to(dist.device, non_blocking=True), text_mask)
            text_levels = model.merge_levels(text, text_mask, "text", model.num_levels())
            logits = model.answer_logits(text_levels, text_mask,
                                         tuple(None if level is None else level[videos] for level in video_levels),
                                         video_mask[videos])
        best = logits.float().topk(top_k, dim=-1)
        ids.append(best.indices)
        scores.append(best.values)
    empty = torch.empty(0, top_k, device=dist.device)
    ids = gather_rows(torch.cat(ids) if ids else empty.long())
    scores = gather_rows(torch.cat(scores) if scores else empty)
    return ids.cpu().numpy(), scores.cpu().numpy()


def save_answers(path: Path, question_set, ids: np.ndarray, scores: np.ndarray) -> None:
    """One JSON object per question: its text, video, true answer and type, the top answers and their scores
    (written atomically)."""
    answer_of = {label: answer for answer, label in question_set.vocab.items()}
    texts, video_ids, question_video = question_set.caption_texts, question_set.video_ids, question_set.text_to_video
    lines = []
    for i, (row_ids, row_scores) in enumerate(zip(ids.tolist(), scores.tolist())):
        video = video_ids[question_video[i]]
        row = {"question": texts[i], "video_id": video, "answer": question_set.answers[i],
               "answer_type": question_set.answer_types[i], "top": [answer_of[a] for a in row_ids],
               "scores": [round(s, 6) for s in row_scores]}
        lines.append(json.dumps(row) + "\n")
    atomic_write(path, lambda f: f.write("".join(lines).encode("utf-8")))


def evaluate_qa(model, question_set, video_set, dist: DistInfo, batch_size: int, workers: int, precision: str,
                majority: int | None = None, output_dir: Path | None = None, split: str = "test",
                provenance: Callable[[], dict] | None = None) -> dict | None:
    """Accuracy under both protocols (see `qa_metrics`); with `output_dir` the main process also writes
    answers_<split>.jsonl and, last, metrics_<split>.json (with a "provenance" key: `provenance()`) there.
    Returns the metrics on the main process, None on the other processes."""
    with evaluating(model):
        ids, scores = predict_answers(model, question_set, video_set, dist, batch_size, workers, precision)
    if not dist.is_main:
        return None
    metrics = qa_metrics(ids, question_set.labels, question_set.answer_types, majority)
    if output_dir is not None:
        save_answers(output_dir / f"answers_{split}.jsonl", question_set, ids, scores)
        write_json(output_dir / f"metrics_{split}.json",
                   {**metrics, "provenance": None if provenance is None else provenance()})
    return metrics
