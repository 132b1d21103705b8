"""Generate Banzhaf-interaction labels from a retrieval model and train the estimator that HBI distils from.

    torchrun --nproc_per_node=4 banzhaf_estimator.py --do_train 1 --epochs 10 --lr 1e-2 --batch_size 128 \
        --datatype msrvtt --anno_path data/msrvtt --video_path data/msrvtt/videos --max_words 24 --max_frames 12 \
        --clip_path pretrained/ViT-B-32.pt --output_dir outputs/estimator

Writes `pytorch_model.bin.<epoch>` (the estimator's weights, the format `--estimator` and released estimator files
use) and measures a held-out split every epoch (MSE and rank correlation with the labels). The last line printed
is a JSON object with the held-out metrics of the best epoch (lowest MSE).
"""
from __future__ import annotations

from modules import estimator
from modules.engine.errors import cli
from modules.engine.run import run


def main(argv: list[str] | None = None) -> dict | None:
    return run(estimator, argv)


if __name__ == "__main__":
    cli(main)
