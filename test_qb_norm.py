"""QB-Norm on saved similarity matrices: metrics before and after the (dynamic) inverted softmax.

    python test_qb_norm.py --sims_test sims_test.npy --sims_querybank sims_train_test.npy \
        --qbnorm_k 1 --qbnorm_beta 20 --queries_per_video 1 [--metric t2v|v2t] \
        [--qbnorm_method dynamic|inverted] [--text_to_video sims_test_ids.json] [--out normalised.npy]

``--sims_test`` is (texts, videos). For t2v the querybank is (querybank texts, test videos); for v2t it is
(querybank videos, test texts), as in the official music-video code. Files: .npy, .pt/.pth or the official
.pkl pickles. Prints a table, then, as the last line, one JSON object {"before": ..., "after": ..., ...}.
With ``--out`` the normalised matrix is saved there, the table beside it (same name, ``.md``) and the summary
(same name, ``.json``) with the normalised matrix's sha256 and its provenance: the command, the time and every
input file's path and sha256 (modules/engine/provenance.py). Non-finite inputs and a ``--qbnorm_k`` larger than
the gallery stop with one line naming the file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from modules import music_video_commands
from modules.engine.checkpoint import atomic_write
from modules.engine.errors import cli
from modules.engine.provenance import file_digest, file_record, matrix_record, provenance, write_json
from modules.engine.tables import write_markdown
from modules.evaluation.metrics import DIRECTIONS, direction_metrics, ranking_table
from modules.evaluation.retrieval import load_text_to_video
from modules.qbnorm import MODES, WEIGHTED_MODES, check_finite, load_sims, qb_norm, qb_norm_weighted


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the second names are those of the official dynamic_inverted_softmax.py
    p.add_argument("--sims_test", "--sims_test_path", required=True, type=Path, nargs="+",
                   help="test similarities, (texts, videos); several files are the terms of a weighted sum")
    p.add_argument("--sims_querybank", "--sims_train_test_path", required=True, type=Path, nargs="+",
                   help="querybank similarities, one file per term: (querybank texts, test videos) for t2v, "
                        "(querybank videos, test texts) for v2t")
    p.add_argument("--term_weights", type=float, nargs="+", default=None,
                   help="weights of the terms (default 1 each)")
    p.add_argument("--qbnorm_mode", choices=WEIGHTED_MODES, default="mode1",
                   help="with several terms: mode1 normalises the weighted sum, mode2 each term, then sums")
    p.add_argument("--qbnorm_k", type=int, default=1, help="top-k of every querybank row forms the activation set")
    p.add_argument("--qbnorm_beta", type=float, default=20.0, help="inverse temperature")
    p.add_argument("--qbnorm_method", choices=MODES, default="dynamic")
    p.add_argument("--metric", choices=list(DIRECTIONS), default="t2v")
    p.add_argument("--queries_per_video", type=int, default=1,
                   help="text i belongs to video i // queries_per_video (ignored with --text_to_video)")
    p.add_argument("--text_to_video", type=Path, default=None,
                   help="sims_<split>_ids.json written by the evaluation (keys rows, cols, text_to_video)")
    p.add_argument("--chunk_rows", type=int, default=4096, help="rows per chunk (bounds memory)")
    p.add_argument("--out", type=Path, default=None, help="save the normalised matrix (.npy) and a .md table")
    p.add_argument("--overwrite", type=int, default=0, help="1: replace the files of an earlier --out")
    return p.parse_args(argv)


def check_out(args: argparse.Namespace) -> None:
    """An earlier run's --out files are replaced only when asked."""
    if args.out is None or args.overwrite:
        return
    earlier = [p for p in (args.out, args.out.with_suffix(".md"), args.out.with_suffix(".json")) if p.exists()]
    if earlier:
        raise ValueError(f"{earlier[0]} exists (an earlier run's output); pass --overwrite 1 to replace it or "
                         "choose another --out")


def check_shapes(args: argparse.Namespace, tests: List[np.ndarray], banks: List[np.ndarray]) -> None:
    """One querybank per term, each scoring the gallery of the chosen direction; terms of one shape."""
    if len(tests) != len(banks):
        raise ValueError(f"got {len(tests)} test matrices and {len(banks)} querybank matrices: one of each per term")
    for path, test in zip(args.sims_test, tests):
        if test.shape != tests[0].shape:
            raise ValueError(f"{path}: shape {tuple(test.shape)}, expected {tuple(tests[0].shape)} like the first term")
    test = tests[0]
    gallery, what = (test.shape[1], "test videos") if args.metric == "t2v" else (test.shape[0], "test texts")
    for path, bank in zip(args.sims_querybank, banks):
        if bank.shape[1] != gallery:
            raise ValueError(f"{path}: has {bank.shape[1]} columns, expected {gallery} ({what} of "
                             f"{args.sims_test[0]}, shape {tuple(test.shape)}) for --metric {args.metric}")
    if args.qbnorm_k > gallery:
        raise ValueError(f"--qbnorm_k {args.qbnorm_k} is larger than the {gallery} columns ({what}) of "
                         f"{args.sims_querybank[0]} that each querybank row's top-k is taken from")


def normalise(args: argparse.Namespace, tests: List[np.ndarray], banks: List[np.ndarray],
              weights: List[float]) -> np.ndarray:
    common = dict(k=args.qbnorm_k, beta=args.qbnorm_beta, chunk_rows=args.chunk_rows, transpose=args.metric == "v2t")
    if len(tests) == 1:
        return qb_norm(banks[0], tests[0], mode=args.qbnorm_method, **common)
    return qb_norm_weighted(banks, tests, weights, mode=args.qbnorm_mode, method=args.qbnorm_method, **common)


def run(args: argparse.Namespace) -> Dict:
    """Load, normalise, score and (optionally) save; returns the JSON summary."""
    tests = [load_sims(path) for path in args.sims_test]
    banks = [load_sims(path) for path in args.sims_querybank]
    for path, sims in zip([*args.sims_test, *args.sims_querybank], [*tests, *banks]):
        check_finite(sims, path)
    check_shapes(args, tests, banks)
    weights = args.term_weights or [1.0] * len(tests)
    if len(weights) != len(tests):
        raise ValueError(f"--term_weights has {len(weights)} values for {len(tests)} terms")
    test = tests[0] if len(tests) == 1 else sum(w * np.asarray(t, dtype=np.float64) for w, t in zip(weights, tests))
    bank = banks[0]
    text_to_video = None
    if args.text_to_video is not None:
        text_to_video = load_text_to_video(args.text_to_video, *test.shape)
    after = normalise(args, tests, banks, weights)
    before_metrics = direction_metrics(test, args.metric, args.queries_per_video, text_to_video)
    after_metrics = direction_metrics(after, args.metric, args.queries_per_video, text_to_video)
    table = ranking_table({"before": before_metrics, "after QB-Norm": after_metrics})
    print(f"{args.metric}, {args.qbnorm_method} inverted softmax, k={args.qbnorm_k}, beta={args.qbnorm_beta}, "
          f"querybank {bank.shape[0]} x {bank.shape[1]}, test {test.shape[0]} x {test.shape[1]}")
    print(table)
    summary = {"metric": args.metric, "method": args.qbnorm_method, "k": args.qbnorm_k, "beta": args.qbnorm_beta,
               "terms": len(tests), "term_weights": weights,
               "qbnorm_mode": args.qbnorm_mode if len(tests) > 1 else None,
               "querybank_shape": list(bank.shape), "test_shape": list(test.shape),
               "before": before_metrics, "after": after_metrics}
    if args.out is not None:
        atomic_write(args.out, lambda f: np.save(f, after))
        write_markdown(args.out.with_suffix(".md"), table)
        write_json(args.out.with_suffix(".json"), {**summary, "sims_sha256": file_digest(args.out),
                                                   "provenance": run_provenance(args)})
    return summary


def run_provenance(args: argparse.Namespace) -> Dict:
    """The command, the time and the input files (path, sha256; a matrix's own provenance where recorded)."""
    inputs = {"sims_test": [matrix_record(p) for p in args.sims_test],
              "sims_querybank": [matrix_record(p) for p in args.sims_querybank]}
    if args.text_to_video is not None:
        inputs["text_to_video"] = file_record(args.text_to_video)
    return provenance(inputs=inputs)


def main(argv: Optional[List[str]] = None) -> None:
    if music_video_commands.is_music_video_command(sys.argv[1:] if argv is None else argv):
        result = music_video_commands.evaluate(argv, qbnorm=True)
        if result is not None:
            print(json.dumps(result))
        return
    args = parse_args(argv)
    try:
        check_out(args)
        summary = run(args)
    except (ValueError, OSError) as err:
        print(f"test_qb_norm.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(summary))


if __name__ == "__main__":
    cli(main)
