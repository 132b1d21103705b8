"""HAP-VR benchmarks: the golden FIVR-5K scores of the reference, small hand-computed FIVR / EVVE / SVD cases, the
hard variant, ties, missing queries and scores, the registry and the similarity files."""
from __future__ import annotations

import gzip
import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from dataloaders.errors import DataError
from modules.benchmarks import BENCHMARKS, load_benchmark, scores_from_json
from modules.benchmarks.ranking import Ranking

FIVR_KEYS = [f"{t}{kind}{v}" for v in ("", "_h") for kind in "RD" for t in ("DSV", "CSV", "ISV")]


@pytest.fixture(scope="module")
def hapvr_dir(real_dir) -> Path:
    path = real_dir / "hapvr"
    if not path.is_dir():
        pytest.skip(f"real HAP-VR annotation files not found at {path}")
    return path


@pytest.fixture(scope="module")
def golden_sims(golden_dir) -> dict:
    return scores_from_json(golden_dir / "hapvr_fivr5k_similarities.json.gz")


@pytest.fixture(scope="module")
def fivr5k(hapvr_dir):
    return load_benchmark("FIVR-5K", hapvr_dir)


def test_golden_fivr5k(fivr5k, golden_sims, golden_dir):
    expected = json.loads((golden_dir / "hapvr_benchmark_scores.json").read_text())["fivr5k"]
    result = fivr5k.score(golden_sims)
    assert list(result.metrics) == FIVR_KEYS and set(expected) == set(FIVR_KEYS)
    errors = {k: abs(result.metrics[k] - expected[k]) for k in expected}
    assert max(errors.values()) < 1e-6, errors
    for key in ("DSVR", "ISVR_h"):  # the per-query APs are what the means were taken over
        assert np.mean(list(result.per_query[key].values())) == pytest.approx(result.metrics[key], abs=1e-12)
    assert set(result.per_query) == {k for k in FIVR_KEYS if "R" in k[3:4]}


def test_golden_ranking_does_not_depend_on_dict_order(fivr5k, golden_sims):
    reversed_sims = {q: dict(reversed(list(row.items()))) for q, row in reversed(list(golden_sims.items()))}
    assert fivr5k.evaluate(reversed_sims) == pytest.approx(fivr5k.evaluate(golden_sims), abs=1e-12)


def test_fivr_missing_query_and_video(fivr5k, golden_sims):
    sims = dict(golden_sims)
    dropped = sorted(sims)[3]
    del sims[dropped]
    with pytest.raises(DataError, match=rf"FIVR-5K: 1 of 50 queries have no similarities \(first '{dropped}'\); "
                                        r"pass allow_missing=True"):
        fivr5k.evaluate(sims)
    result = fivr5k.score(sims, allow_missing=True)
    assert result.missing_queries == [dropped] and result.metrics["missing_queries"] == 1
    assert dropped not in result.per_query["DSVR"]
    assert result.metrics["DSVR"] == pytest.approx(np.mean(list(result.per_query["DSVR"].values())))

    query = sorted(golden_sims)[0]
    video = next(v for v in fivr5k.database if v != query)
    sims = {**golden_sims, query: {v: s for v, s in golden_sims[query].items() if v != video}}
    with pytest.raises(DataError, match=rf"1 \(query, video\) scores are missing in 1 queries "
                                        rf"\(first: query '{query}', video '{video}'\)"):
        fivr5k.evaluate(sims)
    result = fivr5k.score(sims, allow_missing=True)
    assert result.missing_videos == {query: [video]} and result.metrics["missing_videos"] == 1


def test_fivr_query_needs_no_score_for_itself(fivr5k, golden_sims):
    (own,) = set(fivr5k.queries) & set(fivr5k.database)  # FIVR-5K holds one query in its database
    sims = {**golden_sims, own: {v: s for v, s in golden_sims[own].items() if v != own}}
    assert fivr5k.evaluate(sims) == fivr5k.evaluate(golden_sims)  # its own score was never ranked


def write_fivr(root: Path, easy: list[str]) -> None:
    annotation = {"q1": {"ND": ["a", "q1"], "DS": ["c"], "CS": ["d"], "IS": ["e"]},  # q1 lists itself, as FIVR does
                  "q2": {"IS": ["b"]}}
    data = {"5k": {"queries": ["q2", "q1"], "database": {"q1", "a", "b", "c", "d", "e"}}, "annotation": annotation}
    (root / "fivr_audio.pickle").write_bytes(pickle.dumps(data))
    (root / "fivr_easy_duplicates.txt").write_text("".join(f"{v}\n" for v in easy))


SMALL_FIVR = {"q1": {"q1": 1.0, "a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5},
              "q2": {"a": 0.95, "b": 0.85, "c": 0.05, "q1": 0.03, "d": 0.02, "e": 0.01}}


def test_fivr_hand_computed(tmp_path):
    write_fivr(tmp_path, easy=["a"])
    result = load_benchmark("fivr5k", tmp_path).score(SMALL_FIVR)
    m = result.metrics
    # q1 ranks a(ND) b c(DS) d(CS) e(IS), itself left out; q2 has no DSV / CSV video, so it is left out of those mAPs
    assert m["DSVR"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["CSVR"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m["ISVR"] == pytest.approx(((1 + 2 / 3 + 3 / 4 + 4 / 5) / 4 + 1 / 2) / 2)
    assert set(result.per_query["DSVR"]) == {"q1"} and set(result.per_query["ISVR"]) == {"q1", "q2"}
    # pooled: .95 .9R .85 .8 .7R ... (DSV); .95 .9R .85R .8 .7R .6R .5R (ISV); q2's pairs count as negatives
    assert m["DSVD"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert m["ISVD"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5 + 4 / 6 + 5 / 7) / 5)
    # hard: the easy duplicate a leaves the database, for ranking and for the relevant set
    assert m["DSVR_h"] == pytest.approx(1 / 2)  # q1: b c(DS) d e
    assert m["DSVD_h"] == pytest.approx(1 / 3)  # pooled .85 .8 .7R ...
    assert m["ISVR_h"] == pytest.approx(((1 / 2 + 2 / 3 + 3 / 4) / 3 + 1) / 2)


def test_fivr_hard_variant_ignores_the_easy_duplicates(tmp_path):
    write_fivr(tmp_path, easy=["a", "d"])
    bench = load_benchmark("fivr5k", tmp_path)
    moved = {q: {**row, "a": -5.0, "d": 7.0} for q, row in SMALL_FIVR.items()}
    before, after = bench.evaluate(SMALL_FIVR), bench.evaluate(moved)
    assert all(before[k] == after[k] for k in FIVR_KEYS if k.endswith("_h"))
    assert before["DSVR"] != after["DSVR"]


def test_ties_are_averaged_over_orders():
    # two tied items, one relevant: AP 1 or 1/2 depending on the order; the mean of the two orders
    assert Ranking(np.array([0.5, 0.5])).average_precision(np.array([False, True])) == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    scores, relevant = rng.integers(0, 3, 7).astype(float), rng.random(7) < 0.5
    relevant[0] = True
    orders = [p for p in itertools.permutations(range(7)) if all(np.diff(scores[list(p)]) <= 0)]
    aps = []
    for order in orders:
        hits = relevant[list(order)]
        aps.append(np.sum(np.cumsum(hits) / np.arange(1, 8) * hits) / hits.sum())
    assert Ranking(scores).average_precision(relevant) == pytest.approx(np.mean(aps), abs=1e-12)
    keep = np.array([True, False, True, True, False, True, True])
    assert Ranking(scores).subset(keep).average_precision(relevant[keep]) == pytest.approx(
        Ranking(scores[keep]).average_precision(relevant[keep]), abs=1e-12)


def write_evve(root: Path) -> None:
    events = {"e1": ({"q1"}, {"a", "b"}, {"c"}), "e2": ({"q2"}, {"d"}, set())}
    data = {"annotation": events, "queries": ["q1", "q2"], "database": ["a", "b", "c", "d", "x"]}
    (root / "evve.pickle").write_bytes(pickle.dumps(data, protocol=3))


def test_evve_hand_computed(tmp_path):
    write_evve(tmp_path)
    sims = {"q1": {"a": 0.9, "c": 0.8, "b": 0.7, "d": 0.6, "x": 0.5},
            "q2": {"a": 0.95, "b": 0.85, "c": 0.75, "x": 0.65, "d": 0.1, "q1": 0.99}}  # q1 is no database video
    result = load_benchmark("evve", tmp_path).score(sims)
    # trapezoids: q1 positives at ranks 0 and 2 -> ((1 + 1) / 2 + (1/2 + 2/3) / 2) / 2; q2 at rank 4 -> (0 + 1/5) / 2
    q1, q2 = ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2) / 2, (0 + 1 / 5) / 2
    assert result.per_query["EVVE_mAP"] == pytest.approx({"q1": q1, "q2": q2})
    assert result.metrics["EVVE_mAP"] == pytest.approx((q1 + q2) / 2)
    assert result.metrics["EVVE_mAP/e1"] == pytest.approx(q1) and result.metrics["EVVE_mAP/e2"] == pytest.approx(q2)
    # pooled .95 .9R .85 .8 .75 .7R .65 .6 .5 .1R, 3 relevant
    assert result.metrics["EVVE_uAP"] == pytest.approx((1 / 2 + 2 / 6 + 3 / 10) / 3)


def test_evve_missing_query(tmp_path):
    write_evve(tmp_path)
    sims = {"q1": {"a": 0.9, "c": 0.8, "b": 0.7, "d": 0.6, "x": 0.5}}
    bench = load_benchmark("evve", tmp_path)
    with pytest.raises(DataError, match=r"EVVE: 1 of 2 queries have no similarities \(first 'q2'\)"):
        bench.evaluate(sims)
    metrics = bench.evaluate(sims, allow_missing=True)
    assert "EVVE_mAP/e2" not in metrics and metrics["missing_queries"] == 1 and metrics["missing_videos"] == 0


def write_svd(root: Path) -> None:
    (root / "test_groundtruth").write_text("q1 a 1\nq1 b 0\nq1 c 1\nq2 d 0\nq2 e 1\n")
    (root / "unlabeled-data-id").write_text("u1\nu2\n")


SMALL_SVD = {"q1": {"a": 0.9, "b": 0.8, "c": 0.7, "u1": 0.85, "u2": 0.1},
             "q2": {"d": 0.6, "e": 0.5, "u1": 0.55, "u2": 0.95}}


def test_svd_hand_computed(tmp_path):
    write_svd(tmp_path)
    labelled = load_benchmark("svd", tmp_path, unlabeled=False)
    assert labelled.database == ("a", "b", "c", "d", "e") and labelled.queries == ("q1", "q2")
    m = labelled.evaluate(SMALL_SVD)  # scores of the distractors are ignored here
    assert m["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)
    assert m["uAP"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)  # pooled .9R .8 .7R .6 .5R
    default = load_benchmark("svd", tmp_path)  # the reference's default: the distractors are ranked too
    assert default.database == ("a", "b", "c", "d", "e", "u1", "u2")
    m = default.evaluate(SMALL_SVD)
    assert m["mAP"] == pytest.approx(((1 + 2 / 4) / 2 + 1 / 4) / 2)  # q1: a u1 b c u2; q2: u2 d u1 e
    # pooled .95 .9R .85 .8 .7R .6 .55 .5R .1
    assert m["uAP"] == pytest.approx((1 / 2 + 2 / 5 + 3 / 8) / 3)
    with pytest.raises(DataError, match=r"SVD: 1 \(query, video\) scores are missing .* video 'u2'"):
        default.evaluate({**SMALL_SVD, "q2": {"d": 0.6, "e": 0.5, "u1": 0.55}})
    with pytest.raises(DataError, match=r"SVD: similarity of query 'q2' to 'u2' is not a number: nan"):
        default.evaluate({**SMALL_SVD, "q2": {**SMALL_SVD["q2"], "u2": float("nan")}}, allow_missing=True)


def test_svd_map_ties_as_one_block_like_scikit_learn(tmp_path):
    (tmp_path / "test_groundtruth").write_text("q1 a 1\nq1 b 0\n")
    m = load_benchmark("svd", tmp_path, unlabeled=False).evaluate({"q1": {"a": 0.5, "b": 0.5}})
    assert m["mAP"] == pytest.approx(0.5) and m["uAP"] == pytest.approx(0.75)  # block vs averaged orders
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores, relevant = rng.integers(0, 4, 12).astype(float), rng.random(12) < 0.4
        relevant[0] = True
        assert Ranking(scores).step_ap(relevant) == pytest.approx(sklearn.average_precision_score(relevant, scores))


def test_svd_needs_its_distractor_list(hapvr_dir):
    with pytest.raises(DataError, match=r"unlabeled-data-id: annotation file not found; .*svdbase"):
        load_benchmark("svd", hapvr_dir)
    assert len(load_benchmark("svd", hapvr_dir, unlabeled=False).queries) == 206


def test_registry(hapvr_dir):
    assert set(BENCHMARKS) == {"evve", "fivr5k", "fivr200k", "svd"}
    big = load_benchmark("FIVR-200K", hapvr_dir)
    assert big.name == "FIVR-200K" and (len(big.queries), len(big.database)) == (100, 225960)
    assert load_benchmark("EVVE", hapvr_dir).name == "EVVE"
    with pytest.raises(ValueError, match=r"unknown benchmark 'vcdb'; known: evve, fivr200k, fivr5k, svd"):
        load_benchmark("vcdb", hapvr_dir)


def test_scores_from_json(tmp_path):
    sims = {"q": {"a": 0.5, "b": 1}}
    (tmp_path / "s.json").write_text(json.dumps(sims))
    with gzip.open(tmp_path / "s.json.gz", "wt") as f:
        json.dump(sims, f)
    assert scores_from_json(tmp_path / "s.json") == sims == scores_from_json(tmp_path / "s.json.gz")
    (tmp_path / "bad.json").write_text(json.dumps({"q": {"a": "high"}}))
    with pytest.raises(DataError, match=r"bad\.json: query 'q', video 'a': score 'high' is not a number"):
        scores_from_json(tmp_path / "bad.json")
    (tmp_path / "cut.json.gz").write_bytes((tmp_path / "s.json.gz").read_bytes()[:-8])
    with pytest.raises(DataError, match=r"cut\.json\.gz: not a JSON similarity file"):
        scores_from_json(tmp_path / "cut.json.gz")
