"""VQA accuracy under two protocols, overall and per answer type.

standard:  every test question counts; one whose answer is not in the vocabulary (label -1) is always wrong.
reference: the HBI code drops those questions from the test set (its loader keeps only in-vocabulary answers),
           which raises the accuracy: 859 of the 12,278 MSRVTT-QA val answers (7.0%) are outside the
           1,500-answer training vocabulary.
"""
from __future__ import annotations

import numpy as np

from modules.engine.tables import cell, markdown_table

TOP_K = (1, 5)


def _accuracies(hits: dict[int, np.ndarray], in_vocab: np.ndarray, rows: np.ndarray) -> dict:
    """Accuracies (%) of the questions in `rows` ((N,) bool) under both protocols; None where nothing is counted."""
    n, n_ref = int(rows.sum()), int((rows & in_vocab).sum())
    out: dict = {}
    for k, hit in hits.items():
        correct = int((hit & rows).sum())  # hits are already False for out-of-vocabulary questions
        out[f"acc_top{k}"] = 100.0 * correct / n if n else None
        out[f"acc_top{k}_reference"] = 100.0 * correct / n_ref if n_ref else None
    return {**out, "num_test": n, "num_test_reference": n_ref}  # accuracies first: epoch logs show the first few


def _check(topk: np.ndarray, labels: np.ndarray, answer_types: list[str]) -> None:
    if topk.ndim != 2 or topk.shape[1] < max(TOP_K):
        raise ValueError(f"qa_metrics: topk must be (N, K) with K >= {max(TOP_K)}, got shape {topk.shape}")
    if labels.shape != (topk.shape[0],):
        raise ValueError(f"qa_metrics: labels must be (N,) = ({topk.shape[0]},) to match topk, got {labels.shape}")
    if len(answer_types) != len(labels):
        raise ValueError(f"qa_metrics: {len(answer_types)} answer types for {len(labels)} questions")
    for name, array in (("topk", topk), ("labels", labels)):
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"qa_metrics: {name} must hold integer class ids, got dtype {array.dtype}")
    if labels.size and labels.min() < -1:
        raise ValueError(f"qa_metrics: labels must be class ids >= 0 or -1 (out of vocabulary), got {labels.min()}")


def qa_metrics(topk: np.ndarray, labels: np.ndarray, answer_types: list[str], majority: int | None = None) -> dict:
    """topk: (N, K >= 5) predicted class ids, best first; labels: (N,) class ids, -1 for an answer outside the
    vocabulary; answer_types: N strings; majority: the class of the always-the-same-answer baseline.

    Returns percentages acc_top1, acc_top5 (standard), acc_top1_reference, acc_top5_reference (OOV dropped),
    counts num_test, num_test_reference, num_out_of_vocab, majority_baseline(_reference) when `majority` is
    given, and `by_type` {answer type (sorted): the counts and four accuracies}. An empty protocol gives None.
    """
    topk, labels = np.asarray(topk), np.asarray(labels)
    _check(topk, labels, answer_types)
    in_vocab = labels >= 0
    hits = {k: (topk[:, :k] == labels[:, None]).any(axis=1) & in_vocab for k in TOP_K}
    everything = np.ones(len(labels), dtype=bool)
    metrics = _accuracies(hits, in_vocab, everything)
    metrics["num_out_of_vocab"] = int((~in_vocab).sum())
    if majority is not None:
        baseline = _accuracies({1: (labels == majority) & in_vocab}, in_vocab, everything)
        metrics["majority_baseline"] = baseline["acc_top1"]
        metrics["majority_baseline_reference"] = baseline["acc_top1_reference"]
    types = np.asarray(answer_types, dtype=object)
    metrics["by_type"] = {t: _accuracies(hits, in_vocab, types == t) for t in sorted(set(answer_types))}
    return metrics


def _cell(value) -> str:
    return str(value) if isinstance(value, int) else cell(value)


def qa_table(metrics: dict) -> str:
    """Markdown table: rows "all" then each answer type; count, top-1, top-5 under both protocols (one decimal),
    then a line with the majority-answer baseline when the metrics have it."""
    rows = {"all": metrics, **metrics["by_type"]}
    columns = ("num_test", "acc_top1", "acc_top5", "num_test_reference", "acc_top1_reference", "acc_top5_reference")
    headers = ("count", "top-1", "top-5", "count (OOV dropped)", "top-1 (OOV dropped)", "top-5 (OOV dropped)")
    table = markdown_table(rows, columns, head="questions", headers=headers, fmt=_cell)
    if "majority_baseline" in metrics:
        # The blank line ends the table in Markdown.
        table += (f"\n\nmajority-answer baseline: top-1 {cell(metrics['majority_baseline'])} "
                  f"({cell(metrics['majority_baseline_reference'])} with OOV dropped)")
    return table
