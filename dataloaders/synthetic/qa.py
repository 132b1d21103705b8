"""Synthetic MSRVTT-QA-format questions over the demo clips (dataloaders/synthetic.py): what colour the shape is,
what shape the coloured object is, and which way it moves.

Writes root/qa/train.jsonl (two phrasings of each kind per training clip), root/qa/test.jsonl (one question of
each kind per test clip) and root/qa/train_ans2label.json (the training answers, sorted, -> 0..N-1), after making
sure the clips exist (`generate_demo_data` with the same parameters reuses a complete folder). The question files
are written only when one of them is absent or the clips were (re)written: otherwise they are left as they are.
Usage: python -m dataloaders.synthetic.qa --root data/demo
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from dataloaders.synthetic.clips import clip_parser, clip_plan, generate_demo_data

ANSWER_TYPES = ("colour", "shape", "motion")
FILES = ("train.jsonl", "test.jsonl", "train_ans2label.json")


def questions_for(colour: str, shape: str, motion: str) -> dict[str, list[tuple[str, str]]]:
    """answer type -> (question, answer) phrasings; the first of each is the test question."""
    return {
        "colour": [(f"what colour is the {shape}?", colour), (f"which colour does the moving {shape} have?", colour)],
        "shape": [(f"what shape is the {colour} object?", shape), (f"what {colour} thing moves {motion}?", shape)],
        "motion": [(f"which way does the {colour} {shape} move?", motion),
                   (f"where is the {shape} going?", motion)],
    }


def _rows(plan: list[tuple[str, ...]], split: str, phrasings: int) -> list[dict[str, str]]:
    """MSRVTT-QA rows of the clips of `split`: the first `phrasings` questions of each kind per clip."""
    rows = []
    for video_id, clip_split, colour, shape, motion in plan:
        if clip_split != split:
            continue
        for answer_type, pairs in questions_for(colour, shape, motion).items():
            rows += [{"answer": answer, "question": question, "video_id": video_id, "answer_type": answer_type}
                     for question, answer in pairs[:phrasings]]
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def generate_demo_qa(root: str | Path, num_train: int = 600, num_test: int = 60, frames: int = 24, fps: int = 8,
                     size: int = 64, seed: int = 0, report: Callable[[str], None] | None = None) -> dict:
    """Clips (reused when complete) and their questions under `root`; returns the question and answer counts and
    whether the clips were reused and the question files written. `report` (e.g. a run log's `info`) is told
    what was written, when anything was.

    Deterministic from the arguments. The question files are written when one is absent or the clips were just
    (re)written; a second call with the same arguments leaves every file untouched.
    """
    root = Path(root)
    clips = generate_demo_data(root, num_train, num_test, frames, fps, size, seed)
    plan = clip_plan(num_train, num_test, seed)
    train, test = _rows(plan, "train", phrasings=2), _rows(plan, "test", phrasings=1)
    vocab = {answer: i for i, answer in enumerate(sorted({row["answer"] for row in train}))}
    qa = root / "qa"
    write = not clips["reused"] or not all((qa / name).is_file() for name in FILES)
    if write:
        qa.mkdir(parents=True, exist_ok=True)
        _write_jsonl(qa / "train.jsonl", train)
        _write_jsonl(qa / "test.jsonl", test)
        (qa / "train_ans2label.json").write_text(json.dumps(vocab, indent=0))
    if report and write:
        clips_done = "reused the demo clips" if clips["reused"] else f"wrote {num_train + num_test} demo clips"
        report(f"demo data under {root}: {clips_done}; wrote {len(train)} training and {len(test)} test questions "
               f"to {qa} (absent or out of date)")
    return {"root": str(root), "num_train": len(train), "num_test": len(test), "num_answers": len(vocab),
            "clips_reused": clips["reused"], "questions_written": write}


def main() -> None:
    args = clip_parser("Write synthetic MSRVTT-QA-format questions over the demo clips.").parse_args()
    info = generate_demo_qa(args.root, args.num_train, args.num_test, args.frames, args.fps, args.size, args.seed)
    print(f"demo questions at {info['root']}/qa: {info['num_train']} train / {info['num_test']} test, "
          f"{info['num_answers']} answers")


if __name__ == "__main__":
    main()
