"""Train and evaluate HBI video question answering on MSRVTT-QA-format data.

    torchrun --nproc_per_node=2 main_vqa.py --do_train --do_eval --train_csv data/msrvtt_qa/train.jsonl \
        --val_csv data/msrvtt_qa/test.jsonl --data_path data/msrvtt_qa/train_ans2label.json \
        --features_path data/msrvtt/videos --clip_path pretrained/ViT-B-16.pt --estimator E --kl 2 --skl 1 ...
    python main_vqa.py --config config/demo_vqa.yaml

`--do_train` evaluates --val_csv after every epoch and keeps the best epoch; `--do_eval` evaluates --test_csv
(default --val_csv) at the end, with the best epoch's weights after training. Accuracy is reported under two
protocols side by side: the standard one (an answer outside the vocabulary is wrong) and the reference's (such
questions dropped). The last line printed is a JSON object.
"""
from __future__ import annotations

from modules import vqa
from modules.engine.errors import cli
from modules.engine.run import run


def main(argv: list[str] | None = None) -> dict | None:
    return run(vqa, argv)


if __name__ == "__main__":
    cli(main)
