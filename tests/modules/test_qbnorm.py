"""QB-Norm: golden rankings and metrics of the official code, log-space stability, streaming, loading, CLI."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.evaluation.metrics import geometric_mean, retrieval_metrics
from modules.qbnorm import check_finite, load_sims, qb_norm, qb_norm_weighted
from tests.helpers import ROOT

GOLDEN_CASES = ("k1_b20", "multi_caption_k1_b20")
OFFICIAL_KEYS = {"R1": "R1", "R5": "R5", "R10": "R10", "R50": "R50", "MdR": "MedR", "MnR": "MeanR"}


def rankings(sims: np.ndarray) -> np.ndarray:
    """Per-row order of columns, best first, ties in column order."""
    return np.argsort(-np.asarray(sims), axis=1, kind="stable")


def reference_log_scores(bank: np.ndarray, test: np.ndarray, beta: float) -> np.ndarray:
    """Plain float64 inverted softmax of every row, in log space (an independent logsumexp)."""
    lse = np.logaddexp.reduce(beta * bank.astype(np.float64), axis=0)
    return beta * test.astype(np.float64) - lse


def random_case(seed: int, bank_rows: int = 60, queries: int = 30, gallery: int = 25):
    """Random querybank (bank_rows, gallery) and test (queries, gallery) with a few hub columns."""
    rng = np.random.default_rng(seed)
    hub = np.where(rng.random(gallery) < 0.2, 0.3, 0.0)
    bank = rng.uniform(-0.5, 0.5, (bank_rows, gallery)) + hub
    test = rng.uniform(-0.5, 0.5, (queries, gallery)) + hub
    return bank, test


@pytest.fixture(scope="module")
def golden(golden_dir: Path):
    arrays = np.load(golden_dir / "qbnorm_metrics_reference.npz")
    scalars = json.loads((golden_dir / "qbnorm_metrics_reference.json").read_text())
    return arrays, scalars


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_rankings_and_metrics(golden, case: str) -> None:
    arrays, scalars = golden
    bank, test, official = (arrays[f"{case}/{key}"] for key in ("train_test", "test_test", "normalized"))
    k, beta = int(scalars[f"{case}/k"]), scalars[f"{case}/beta"]
    queries_per_video = int(scalars[f"{case}/queries_per_video"])
    out = qb_norm(bank, test, k=k, beta=beta)
    np.testing.assert_array_equal(rankings(out), rankings(official))
    np.testing.assert_array_equal((out != test).any(axis=1), (official != test).any(axis=1))  # same rows rescored
    for sims, key in ((test, "t2v_before"), (out, "t2v_after")):
        ours = retrieval_metrics(sims, queries_per_video=queries_per_video)
        expected = scalars[f"{case}/{key}"]
        assert {k: round(v, 1) for k, v in ours.items()} == {k: expected[o] for k, o in OFFICIAL_KEYS.items()}
        assert round(geometric_mean(ours), 1) == expected["geometric_mean_R1-R5-R10"]


def test_input_not_modified(golden) -> None:
    arrays, _ = golden
    test = arrays["k1_b20/test_test"].copy()
    qb_norm(arrays["k1_b20/train_test"], test)
    np.testing.assert_array_equal(test, arrays["k1_b20/test_test"])


def test_large_beta_is_finite_and_ranks_like_float64_reference() -> None:
    bank, test = random_case(0)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(1000 * test) / np.exp(1000 * bank).sum(axis=0)
    assert not np.isfinite(naive).all()  # the official formula breaks down here
    out = qb_norm(bank, test, beta=1000.0, mode="inverted")
    assert np.isfinite(out).all()
    expected = reference_log_scores(bank, test, 1000.0)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(rankings(out), rankings(expected))


def test_dynamic_rescores_only_rows_whose_top1_is_active() -> None:
    bank, test = random_case(1, gallery=40)
    out = qb_norm(bank, test, k=2, beta=20.0)
    active = np.zeros(bank.shape[1], dtype=bool)
    active[np.argsort(-bank, axis=1)[:, :2].ravel()] = True
    rescored = active[test.argmax(axis=1)]
    assert 0 < rescored.sum() < len(test)
    np.testing.assert_array_equal(out[~rescored], test[~rescored])
    np.testing.assert_allclose(out[rescored], reference_log_scores(bank, test, 20.0)[rescored], rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_chunked_equals_unchunked(k: int) -> None:
    bank, test = random_case(2)
    whole = qb_norm(bank, test, k=k, beta=50.0, chunk_rows=10_000)
    for chunk_rows in (1, 7):
        chunked = qb_norm(bank, test, k=k, beta=50.0, chunk_rows=chunk_rows)
        np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(rankings(chunked), rankings(whole))


def test_memmap_float16_input(tmp_path: Path) -> None:
    bank, test = (a.astype(np.float16) for a in random_case(3))
    np.save(tmp_path / "bank.npy", bank)
    mapped = np.load(tmp_path / "bank.npy", mmap_mode="r")
    out = qb_norm(mapped, test, beta=20.0, chunk_rows=8)
    np.testing.assert_allclose(out, qb_norm(bank.astype(np.float64), test, beta=20.0), rtol=1e-12)


def test_transpose_is_v2t_of_transposed_problem() -> None:
    bank, test = random_case(4, bank_rows=50, queries=30, gallery=30)
    np.testing.assert_array_equal(qb_norm(bank, test, transpose=True), qb_norm(bank, test.T).T)


def test_weighted_modes() -> None:
    (bank_a, test_a), (bank_b, test_b) = random_case(5), random_case(6)
    weights = [1.0, 0.4]
    mode1 = qb_norm_weighted([bank_a, bank_b], [test_a, test_b], weights, mode="mode1", chunk_rows=9)
    np.testing.assert_allclose(mode1, qb_norm(bank_a + 0.4 * bank_b, test_a + 0.4 * test_b), rtol=1e-12)
    mode2 = qb_norm_weighted([bank_a, bank_b], [test_a, test_b], weights, mode="mode2")
    parts = []
    for bank, test in ((bank_a, test_a), (bank_b, test_b)):  # the official order of operations, in linear space
        active = np.unique(np.argsort(-bank, axis=1)[:, :1])
        rows = np.isin(test.argmax(axis=1), active)
        part = test.copy()
        part[rows] = np.exp(20 * test[rows]) / np.exp(20 * bank).sum(axis=0)
        parts.append(part)
    np.testing.assert_allclose(mode2, parts[0] + 0.4 * parts[1], rtol=1e-10)


@pytest.mark.parametrize("bad, message", [
    (dict(k=0), "positive integer"), (dict(beta=0.0), "beta"), (dict(mode="softmax"), "mode"),
])
def test_bad_parameters(bad: dict, message: str) -> None:
    bank, test = random_case(7)
    with pytest.raises(ValueError, match=message):
        qb_norm(bank, test, **bad)


def test_bad_shapes_and_values() -> None:
    bank, test = random_case(8)
    with pytest.raises(ValueError, match="same gallery"):
        qb_norm(bank[:, :-1], test)
    test[3, 4] = np.nan
    with pytest.raises(ValueError, match="test matrix: row 3 has a non-finite"):
        qb_norm(bank, test)


def test_load_sims_formats(tmp_path: Path) -> None:
    sims = np.random.default_rng(9).random((6, 5))
    np.save(tmp_path / "a.npy", sims)
    torch.save(torch.from_numpy(sims), tmp_path / "b.pt")
    torch.save({"sims": torch.from_numpy(sims)[:, None]}, tmp_path / "c.pt")  # (N, 1, M): music-video layout
    for protocol in (2, 4, 5):
        (tmp_path / f"d{protocol}.pkl").write_bytes(pickle.dumps(sims, protocol=protocol))
    for name in ("a.npy", "b.pt", "c.pt", "d2.pkl", "d4.pkl", "d5.pkl"):
        np.testing.assert_array_equal(load_sims(tmp_path / name), sims)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_with_foreign_global_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"sims": _Exploit(marker)}))
    with pytest.raises(ValueError, match=r"evil\.pkl: refused global '(posix|os)\.system'"):
        load_sims(path)
    assert not marker.exists()


def test_load_sims_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_sims(tmp_path / "missing.npy")
    np.save(tmp_path / "v.npy", np.zeros(4))
    with pytest.raises(ValueError, match="v.npy: expected a 2-D float"):
        load_sims(tmp_path / "v.npy")
    torch.save({"a": torch.zeros(2, 2), "b": torch.zeros(2, 2)}, tmp_path / "two.pt")
    with pytest.raises(ValueError, match="two.pt: expected one similarity tensor"):
        load_sims(tmp_path / "two.pt")


def test_cli_prints_table_and_json(tmp_path: Path) -> None:
    bank, test = random_case(10, bank_rows=80, queries=40, gallery=20)
    test[np.arange(40), np.arange(40) // 2] += 0.4  # two captions per video, each near its own video
    np.save(tmp_path / "bank.npy", bank)
    np.save(tmp_path / "test.npy", test)
    (tmp_path / "ids.json").write_text(json.dumps({"rows": list(range(40)), "cols": list(range(20)),
                                                   "text_to_video": (np.arange(40) // 2).tolist()}))
    out = tmp_path / "out" / "normalised.npy"
    result = subprocess.run([sys.executable, "test_qb_norm.py", "--sims_test", str(tmp_path / "test.npy"),
                             "--sims_querybank", str(tmp_path / "bank.npy"), "--qbnorm_k", "1",
                             "--qbnorm_beta", "20", "--text_to_video", str(tmp_path / "ids.json"),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    expected = retrieval_metrics(qb_norm(bank, test), queries_per_video=2)
    assert summary["after"]["R1"] == pytest.approx(expected["R1"])
    assert set(summary["before"]) == {"R1", "R5", "R10", "R50", "MdR", "MnR", "GM"}
    np.testing.assert_array_equal(np.load(out), qb_norm(bank, test))
    assert out.with_suffix(".md").read_text().startswith("| | R1")


def test_cli_v2t_and_shape_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import test_qb_norm

    bank, test = random_case(11, bank_rows=50, queries=20, gallery=20)
    np.save(tmp_path / "bank.npy", bank)  # (querybank videos, test texts)
    np.save(tmp_path / "test.npy", test)
    test_qb_norm.main(["--sims_test", str(tmp_path / "test.npy"), "--sims_querybank", str(tmp_path / "bank.npy"),
                       "--metric", "v2t"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["metric"] == "v2t" and summary["querybank_shape"] == [50, 20]
    np.save(tmp_path / "bank.npy", bank[:, :7])
    with pytest.raises(SystemExit):
        test_qb_norm.main(["--sims_test", str(tmp_path / "test.npy"), "--sims_querybank",
                           str(tmp_path / "bank.npy")])
    assert "bank.npy: has 7 columns, expected 20" in capsys.readouterr().err


def test_copy_on_write_memmap_keeps_edits(tmp_path: Path) -> None:
    bank, test = random_case(12)
    np.save(tmp_path / "test.npy", test)
    mapped = np.load(tmp_path / "test.npy", mmap_mode="c")
    mapped[0] += 0.25  # an in-memory edit that only this process sees
    out = qb_norm(bank, mapped, mode="inverted", chunk_rows=4)
    np.testing.assert_array_equal(mapped[0], test[0] + 0.25)
    np.testing.assert_allclose(out[0], reference_log_scores(bank, test + 0.25, 20.0)[0], rtol=1e-12)


@pytest.mark.parametrize("mode", ["mode1", "mode2"])
def test_cli_weighted_terms(tmp_path: Path, capsys: pytest.CaptureFixture, mode: str) -> None:
    import test_qb_norm

    bank_a, test_a = random_case(21, queries=25, gallery=25)
    bank_b, test_b = random_case(22, queries=25, gallery=25)
    for name, array in (("ba", bank_a), ("ta", test_a), ("bb", bank_b), ("tb", test_b)):
        np.save(tmp_path / f"{name}.npy", array)
    test_qb_norm.main(["--sims_test", str(tmp_path / "ta.npy"), str(tmp_path / "tb.npy"),
                       "--sims_querybank", str(tmp_path / "ba.npy"), str(tmp_path / "bb.npy"),
                       "--term_weights", "1", "0.5", "--qbnorm_mode", mode, "--out", str(tmp_path / "out.npy")])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = qb_norm_weighted([bank_a, bank_b], [test_a, test_b], [1.0, 0.5], mode=mode)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    assert summary["terms"] == 2 and summary["qbnorm_mode"] == mode
    assert summary["before"]["R1"] == pytest.approx(retrieval_metrics(test_a + 0.5 * test_b)["R1"])
    with pytest.raises(SystemExit):
        test_qb_norm.main(["--sims_test", str(tmp_path / "ta.npy"), str(tmp_path / "tb.npy"),
                           "--sims_querybank", str(tmp_path / "ba.npy")])
    assert "one of each per term" in capsys.readouterr().err


def test_k_larger_than_the_gallery_is_refused() -> None:
    bank, test = random_case(13, gallery=6)
    with pytest.raises(ValueError, match="k=7 is larger than the 6 gallery items"):
        qb_norm(bank, test, k=7)
    qb_norm(bank, test, k=6)


def test_check_finite_counts_and_names_the_file(tmp_path: Path) -> None:
    sims = np.zeros((10, 3))
    sims[2, 1], sims[7, 0], sims[9, 2] = np.inf, np.nan, -np.inf
    np.save(tmp_path / "bad.npy", sims)
    with pytest.raises(ValueError, match=r"bad\.npy: 3 non-finite entries \(inf or NaN\) in the 10 x 3 similarity "
                                         r"matrix, the first at row 2, column 1"):
        check_finite(load_sims(tmp_path / "bad.npy"), tmp_path / "bad.npy", chunk_rows=4)
    check_finite(np.zeros((10, 3)), "fine.npy")


def test_cli_refuses_k_larger_than_the_gallery_and_non_finite_input(tmp_path: Path, capsys) -> None:
    import test_qb_norm

    bank, test = random_case(14, bank_rows=12, queries=8, gallery=8)
    np.save(tmp_path / "bank.npy", bank)
    np.save(tmp_path / "test.npy", test)
    args = ["--sims_test", str(tmp_path / "test.npy"), "--sims_querybank", str(tmp_path / "bank.npy")]
    with pytest.raises(SystemExit):
        test_qb_norm.main(args + ["--qbnorm_k", "9"])
    err = capsys.readouterr().err.strip()
    assert err == (f"test_qb_norm.py: error: --qbnorm_k 9 is larger than the 8 columns (test videos) of "
                   f"{tmp_path / 'bank.npy'} that each querybank row's top-k is taken from")
    bank[3, 5] = np.inf
    np.save(tmp_path / "bank.npy", bank)
    with pytest.raises(SystemExit):
        test_qb_norm.main(args)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"test_qb_norm.py: error: {tmp_path / 'bank.npy'}: 1 non-finite entry (inf or NaN)")
    assert "\n" not in err


def test_cli_out_writes_a_json_with_the_inputs_hashes(tmp_path: Path, capsys) -> None:
    import hashlib

    import test_qb_norm

    bank, test = random_case(15, bank_rows=12, queries=8, gallery=8)
    np.save(tmp_path / "bank.npy", bank)
    np.save(tmp_path / "test.npy", test)
    out = tmp_path / "out" / "normalised.npy"
    test_qb_norm.main(["--sims_test", str(tmp_path / "test.npy"), "--sims_querybank", str(tmp_path / "bank.npy"),
                       "--out", str(out)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = json.loads(out.with_suffix(".json").read_text())

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    assert written["after"] == summary["after"] and written["sims_sha256"] == sha(out)
    record = written["provenance"]
    assert record["inputs"]["sims_test"] == [{"path": str(tmp_path / "test.npy"), "sha256": sha(tmp_path / "test.npy")}]
    assert record["inputs"]["sims_querybank"][0]["sha256"] == sha(tmp_path / "bank.npy")
    assert {"command", "time", "cwd"} <= set(record)


def test_cli_out_does_not_replace_an_earlier_run_unless_asked(tmp_path: Path, capsys) -> None:
    import test_qb_norm

    bank, test = random_case(16, bank_rows=12, queries=8, gallery=8)
    np.save(tmp_path / "bank.npy", bank)
    np.save(tmp_path / "test.npy", test)
    out = tmp_path / "normalised.npy"
    out.with_suffix(".json").write_text("{}")  # an earlier run's summary
    args = ["--sims_test", str(tmp_path / "test.npy"), "--sims_querybank", str(tmp_path / "bank.npy"), "--out", str(out)]
    with pytest.raises(SystemExit):
        test_qb_norm.main(args)
    assert "normalised.json exists (an earlier run's output); pass --overwrite 1" in capsys.readouterr().err
    assert not out.exists()
    test_qb_norm.main(args + ["--overwrite", "1"])
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["after"]
