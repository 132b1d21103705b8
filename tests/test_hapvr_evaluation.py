"""The HAP-VR evaluation command end to end: `test.py --dataset ... --dataset_hdf5 ... --model_path ...` with the
published flags on the synthetic benchmark, `--similarities` on the golden dictionary with the real annotations,
the run folder, 1 vs 2 processes, and a damaged feature file at the top level."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys

import h5py
import pytest
import torch

from dataloaders.synthetic.video_video import generate_synthetic_benchmark
from models.video_video import HapvrNetwork
from tests.helpers import ROOT, load_test_entry, run


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("hapvr")
    generate_synthetic_benchmark(root, num_queries=3, num_distractors=6, per_label=1, min_frames=8, max_frames=24)
    torch.manual_seed(0)
    network = HapvrNetwork()
    args = argparse.Namespace(dims=512, attention=True, f_topk_rate=0.1, v_topk_rate=0.03,
                              similarity_network="ViSiL", binarization=False, attention_norm=False)
    torch.save({"args": args, "model": network.state_dict()}, root / "model.pth")  # the published format
    return root


def command(root, *extra) -> list[str]:
    return ["--dataset", "FIVR-5K", "--dataset_hdf5", str(root / "fivr_5k.hdf5"), "--model_path",
            str(root / "model.pth"), "--annotations", str(root), "--workers", "0", "--device", "cpu", *extra]


def test_the_published_command_writes_the_run_folder(bench, tmp_path, capsys):
    out = tmp_path / "eval"
    metrics = load_test_entry().main(command(bench, "--store_similarities", "true", "--output_dir", str(out)))
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == metrics and set(metrics) >= {"DSVR", "CSVR", "ISVR", "DSVD", "ISVD_h"}
    saved = json.loads((out / "metrics_fivr5k.json").read_text())
    assert saved["DSVR"] == metrics["DSVR"] and saved["left_out"] == {}
    assert saved["provenance"]["checkpoint"]["path"].endswith("model.pth")
    per_query = json.loads((out / "metrics_fivr5k_per_query.json").read_text())
    assert len(per_query["DSVR"]) == 3
    sims = json.loads(gzip.decompress((out / "sims_fivr5k.json.gz").read_bytes()))
    assert len(sims) == 3 and all(len(row) == saved["database_videos_scored"] for row in sims.values())
    # The stored dictionary scores the same without a model; a second run into the folder is refused.
    again = load_test_entry().main(["--dataset", "FIVR-5K", "--similarities", str(out / "sims_fivr5k.json.gz"),
                                    "--annotations", str(bench), "--output_dir", str(tmp_path / "again")])
    assert again == metrics
    with pytest.raises(ValueError, match="pass --overwrite 1"):
        load_test_entry().main(command(bench, "--output_dir", str(out)))


def test_the_golden_similarities_score_as_the_reference_did(golden_dir, real_dir, tmp_path):
    metrics = load_test_entry().main(["--dataset", "FIVR-5K", "--similarities",
                                      str(golden_dir / "hapvr_fivr5k_similarities.json.gz"), "--annotations",
                                      str(real_dir / "hapvr"), "--output_dir", str(tmp_path)])
    expected = json.loads((golden_dir / "hapvr_benchmark_scores.json").read_text())["fivr5k"]
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.slow
def test_two_processes_give_the_scores_of_one(bench, tmp_path):
    for processes in (1, 2):
        run(command(bench, "--store_similarities", "true", "--output_dir", str(tmp_path / f"p{processes}")),
            processes, "test.py")
    one, two = (json.loads(gzip.decompress((tmp_path / p / "sims_fivr5k.json.gz").read_bytes())) for p in ("p1", "p2"))
    assert one.keys() == two.keys()
    for query in one:
        assert one[query].keys() == two[query].keys()
        for video, score in one[query].items():
            assert two[query][video] == pytest.approx(score, abs=1e-6)
    metrics = [json.loads((tmp_path / p / "metrics_fivr5k.json").read_text()) for p in ("p1", "p2")]
    assert {k: v for k, v in metrics[0].items() if k not in ("provenance", "seconds")} == \
        {k: v for k, v in metrics[1].items() if k not in ("provenance", "seconds")}


def test_a_corrupt_entry_is_one_line_naming_it_and_allow_missing_lists_it(bench, tmp_path):
    damaged = tmp_path / "damaged.hdf5"
    damaged.write_bytes((bench / "fivr_5k.hdf5").read_bytes())
    with h5py.File(damaged, "a") as f:
        victim = sorted(f.keys())[-1]
        f[victim][0, 0, 0] = float("nan")
    args = command(bench, "--output_dir", str(tmp_path / "out"))
    args[args.index("--dataset_hdf5") + 1] = str(damaged)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "test.py"), *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]  # the lines before it are progress bars
    assert last.startswith("test.py: error: ") and f"video {victim!r}: non-finite values; pass --allow_missing 1" in last
    assert "Traceback" not in result.stderr
    metrics = load_test_entry().main(args + ["--allow_missing", "true"])
    saved = json.loads((tmp_path / "out" / "metrics_fivr5k.json").read_text())
    assert saved["left_out"] == {victim: "non-finite values"} and "DSVR" in metrics


def test_a_given_dictionary_with_holes_stops_or_lists_them(bench, tmp_path):
    sims = tmp_path / "sims.json"
    out = tmp_path / "full"
    load_test_entry().main(command(bench, "--store_similarities", "true", "--output_dir", str(out)))
    full = json.loads(gzip.decompress((out / "sims_fivr5k.json.gz").read_bytes()))
    query = sorted(full)[0]
    dropped = sorted(full[query])[0]
    del full[query][dropped]
    sims.write_text(json.dumps(full))
    args = ["--dataset", "FIVR-5K", "--similarities", str(sims), "--annotations", str(bench)]
    with pytest.raises(ValueError, match=f"query {query!r}, video {dropped!r}"):
        load_test_entry().main(args + ["--output_dir", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()
    load_test_entry().main(args + ["--output_dir", str(tmp_path / "listed"), "--allow_missing", "true"])
    saved = json.loads((tmp_path / "listed" / "metrics_fivr5k.json").read_text())
    assert saved["missing_videos"] == 1 and saved["missing_video_ids"] == {query: [dropped]}
