"""VQA accuracy: both protocols on a hand-checked example, top-5, per type, the majority baseline, empty
protocols, input checks, the table, and agreement with a plain per-question loop on random input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modules.evaluation.qa_metrics import qa_metrics, qa_table

# Six questions; question 4 has an answer outside the vocabulary (-1) and the model "predicts" -1 there too.
TOPK = np.array([[3, 1, 2, 4, 5],    # label 3: top-1 hit
                 [0, 1, 2, 7, 4],    # label 7: top-5 hit (4th)
                 [0, 1, 2, 4, 5],    # label 9: miss
                 [9, 8, 7, 6, 2],    # label 2: top-5 hit (5th)
                 [-1, 0, 1, 2, 3],   # label -1: never a hit
                 [2, 0, 1, 3, 4]])   # label 2: top-1 hit
LABELS = np.array([3, 7, 9, 2, -1, 2])
TYPES = ["what", "who", "what", "what", "who", "how"]


def test_hand_checked_example():
    m = qa_metrics(TOPK, LABELS, TYPES, majority=2)
    assert m["num_test"] == 6 and m["num_test_reference"] == 5 and m["num_out_of_vocab"] == 1
    assert m["acc_top1"] == pytest.approx(100 * 2 / 6)
    assert m["acc_top5"] == pytest.approx(100 * 4 / 6)
    assert m["acc_top1_reference"] == pytest.approx(100 * 2 / 5)
    assert m["acc_top5_reference"] == pytest.approx(100 * 4 / 5)
    assert m["majority_baseline"] == pytest.approx(100 * 2 / 6)  # labels 2 at questions 3 and 5
    assert m["majority_baseline_reference"] == pytest.approx(100 * 2 / 5)


def test_by_type_counts_and_accuracies():
    by_type = qa_metrics(TOPK, LABELS, TYPES)["by_type"]
    assert list(by_type) == ["how", "what", "who"]
    what, who, how = by_type["what"], by_type["who"], by_type["how"]
    assert (what["num_test"], what["num_test_reference"]) == (3, 3)
    assert what["acc_top1"] == pytest.approx(100 / 3) and what["acc_top5"] == pytest.approx(200 / 3)
    assert (who["num_test"], who["num_test_reference"]) == (2, 1)
    assert who["acc_top1"] == 0 and who["acc_top5"] == pytest.approx(50.0)
    assert who["acc_top1_reference"] == 0 and who["acc_top5_reference"] == pytest.approx(100.0)
    assert how["acc_top1"] == how["acc_top5_reference"] == pytest.approx(100.0)
    assert set(how) == {"num_test", "num_test_reference", "acc_top1", "acc_top5", "acc_top1_reference",
                        "acc_top5_reference"}


def test_only_first_five_columns_count():
    topk = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    m = qa_metrics(topk, np.array([5, 1]), ["a", "a"])
    assert m["acc_top5"] == pytest.approx(50.0)  # question 0's answer is 6th, question 1's answer 5th
    assert m["acc_top1"] == 0


def test_no_majority_keys_without_majority():
    m = qa_metrics(TOPK, LABELS, TYPES)
    assert "majority_baseline" not in m and "majority_baseline_reference" not in m
    assert "majority-answer baseline" not in qa_table(m)


def test_all_out_of_vocab_gives_none_and_is_json_safe():
    m = qa_metrics(np.zeros((3, 5), dtype=np.int64), np.array([-1, -1, -1]), ["x", "y", "x"], majority=0)
    assert m["acc_top1"] == 0 and m["num_test_reference"] == 0
    assert m["acc_top1_reference"] is None and m["acc_top5_reference"] is None
    assert m["majority_baseline"] == 0 and m["majority_baseline_reference"] is None
    assert m["by_type"]["x"]["acc_top1_reference"] is None
    json.dumps(m, allow_nan=False)  # no NaN anywhere
    assert "| x | 2 | 0.0 | 0.0 | 0 | - | - |" in qa_table(m)


@pytest.mark.parametrize("topk, labels, types, message", [
    (np.zeros((2, 4), dtype=int), np.zeros(2, dtype=int), ["a", "b"], r"K >= 5, got shape \(2, 4\)"),
    (np.zeros(5, dtype=int), np.zeros(5, dtype=int), ["a"] * 5, r"topk must be \(N, K\)"),
    (np.zeros((2, 5), dtype=int), np.zeros(3, dtype=int), ["a", "b"], r"labels must be \(N,\) = \(2,\)"),
    (np.zeros((2, 5), dtype=int), np.zeros(2, dtype=int), ["a"], r"1 answer types for 2 questions"),
    (np.zeros((2, 5)), np.zeros(2, dtype=int), ["a", "b"], r"topk must hold integer class ids"),
    (np.zeros((2, 5), dtype=int), np.array([0.0, 1.0]), ["a", "b"], r"labels must hold integer class ids"),
    (np.zeros((2, 5), dtype=int), np.array([0, -2]), ["a", "b"], r"labels must be class ids >= 0 or -1"),
])
def test_bad_input_is_one_line_error(topk, labels, types, message):
    with pytest.raises(ValueError, match=message) as info:
        qa_metrics(topk, labels, types)
    assert "\n" not in str(info.value)


def test_table_layout():
    table = qa_table(qa_metrics(TOPK, LABELS, TYPES, majority=2)).splitlines()
    assert table[0].startswith("| questions | count | top-1 | top-5 |") and "OOV dropped" in table[0]
    assert [line.split("|")[1].strip() for line in table[2:6]] == ["all", "how", "what", "who"]
    assert table[2] == "| all | 6 | 33.3 | 66.7 | 5 | 40.0 | 80.0 |"
    assert table[5] == "| who | 2 | 0.0 | 50.0 | 1 | 0.0 | 100.0 |"
    assert table[-1] == "majority-answer baseline: top-1 33.3 (40.0 with OOV dropped)"


def _loop_reference(topk: np.ndarray, labels: np.ndarray, rows: list[int]) -> tuple:
    """Plain per-question counting: (standard top-1, top-5, reference top-1, top-5) over `rows`."""
    hit1 = sum(labels[i] >= 0 and topk[i, 0] == labels[i] for i in rows)
    hit5 = sum(labels[i] >= 0 and labels[i] in topk[i, :5] for i in rows)
    n_ref = sum(labels[i] >= 0 for i in rows)
    ref = (lambda h: 100 * h / n_ref if n_ref else None)
    return 100 * hit1 / len(rows), 100 * hit5 / len(rows), ref(hit1), ref(hit5)


@pytest.mark.parametrize("seed", range(5))
def test_matches_plain_loop_on_random_input(seed):
    rng = np.random.default_rng(seed)
    n, classes = 200, 12
    labels = rng.integers(-1, classes, size=n)
    topk = np.stack([rng.permutation(classes)[:7] for _ in range(n)])
    types = [str(t) for t in rng.choice(["what", "who", "how"], size=n)]
    m = qa_metrics(topk, labels, types)
    keys = ("acc_top1", "acc_top5", "acc_top1_reference", "acc_top5_reference")
    for got, want in zip((m[k] for k in keys), _loop_reference(topk, labels, list(range(n)))):
        assert math.isclose(got, want)
    for t, sub in m["by_type"].items():
        rows = [i for i in range(n) if types[i] == t]
        assert sub["num_test"] == len(rows)
        for got, want in zip((sub[k] for k in keys), _loop_reference(topk, labels, rows)):
            assert math.isclose(got, want)
    # Standard = reference scaled by the in-vocabulary fraction.
    assert m["acc_top1"] == pytest.approx(m["acc_top1_reference"] * m["num_test_reference"] / n)
