"""Train HAP-VR (self-supervised video-to-video retrieval) with the published train.py flags, under torchrun:

    torchrun --nproc_per_node=2 main_hapvr.py --dataset_path FRAMES --experiment_path EXP --augmentations GT,FT,TT,ViV \
        --iter_epochs 30000 --warmup_iters 1000 --batch_sz 64 ... --use_fp16 true --resnet_path R --pca_path P \
        --pretrained_DINO_path D [--eval_dataset FIVR-5K --eval_hdf5 fivr_5k.hdf5 --eval_annotations data/hapvr]
"""
from modules import video_video
from modules.engine.errors import cli
from modules.engine.run import run


def main(argv: list[str] | None = None) -> dict | None:
    return run(video_video, argv)


if __name__ == "__main__":
    cli(main)
