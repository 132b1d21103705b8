"""Train and evaluate text-video retrieval (HBI, WTI, meanP) and music-video retrieval (`--datatype music_dance`).

    torchrun --nproc_per_node=4 main_retrieval.py --do_train 1 --do_eval 1 --datatype msrvtt \
        --anno_path data/msrvtt --video_path data/msrvtt/videos --clip_path pretrained/ViT-B-32.pt ...
    python main_retrieval.py --config config/demo.yaml
    torchrun --nproc_per_node=2 main_retrieval.py --do_train 1 --do_eval 1 --datatype music_dance \
        --videos_dir data/Music-Dance --exp_name Data2

The last line printed is a JSON object with the test metrics.
"""
from __future__ import annotations

from modules.engine.errors import cli
from modules.engine.run import run
from modules.systems import retrieval_system


def main(argv: list[str] | None = None) -> dict | None:
    return run(retrieval_system(argv), argv)


if __name__ == "__main__":
    cli(main)
