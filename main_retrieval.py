"""Train and evaluate text-video retrieval (HBI, WTI, meanP).

    torchrun --nproc_per_node=4 main_retrieval.py --do_train 1 --do_eval 1 --datatype msrvtt \
        --anno_path data/msrvtt --video_path data/msrvtt/videos --clip_path pretrained/ViT-B-32.pt ...
    python main_retrieval.py --config config/demo.yaml

The last line printed is a JSON object with the test metrics.
"""
from __future__ import annotations

from modules import text_video
from modules.engine.errors import cli
from modules.engine.run import run


def main(argv: list[str] | None = None) -> dict | None:
    return run(text_video, argv)


if __name__ == "__main__":
    cli(main)
