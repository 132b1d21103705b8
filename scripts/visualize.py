"""Look inside HBI: frames, words, and per level the token similarity map and the estimated Banzhaf interaction.

    python -m scripts.visualize --init_model outputs/demo_hbi/pytorch_model.bin.best --num_hidden_layers 1 \
        --video data/demo/videos/video600.mp4 --caption "a green circle moves upward" --out figure.png

Action- and event-level tokens are clusters of words or frames; their axes are labelled by cluster number.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from dataloaders.tokenizer import ClipTokenizer
from dataloaders.video.transforms import frames_to_tensor, pad_frames
from dataloaders.video.reader import read_frames
from models.text_video import load_retrieval_model

LEVELS = ("entity", "action", "event")


@torch.no_grad()
def level_maps(model, text_ids, text_mask, video, video_mask) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level: (similarity map (T_l, V_l), estimated Banzhaf interaction (T_l, V_l)) of one caption-video pair."""
    # Every level is drawn, whatever the model's evaluation rate: prepare all three.
    every_level = (1.0, 1.0, 1.0)
    text = model.prepare_text(model.encode_text(text_ids, text_mask), text_mask, every_level)
    frames = model.prepare_video(model.encode_video(video, video_mask), video_mask, every_level)
    out = []
    for t, v in zip(text.levels, frames.levels):
        rows, cols = int(t.mask[0].sum()), int(v.mask[0].sum())
        sims = (t.feats[0, :rows] @ v.feats[0, :cols].T)
        banzhaf = model.estimator(sims[None])[0]
        out.append((sims.numpy(), banzhaf.numpy()))
    return out


def draw(frames: np.ndarray, words: list[str], maps: list, out: Path) -> None:
    """frames uint8 (F, H, W, 3); maps from `level_maps`."""
    fig = plt.figure(figsize=(4 * len(maps), 8.5), constrained_layout=True)
    grid = fig.add_gridspec(3, 2 * len(maps))
    strip = fig.add_subplot(grid[0, :])
    strip.imshow(np.concatenate(list(frames), axis=1))
    strip.set_title(" ".join(words))
    strip.axis("off")
    for level, (name, (sims, banzhaf)) in enumerate(zip(LEVELS, maps)):
        for row, (values, title) in enumerate(((sims, "similarity"), (banzhaf, "Banzhaf interaction")), start=1):
            ax = fig.add_subplot(grid[row, 2 * level:2 * level + 2])
            image = ax.imshow(values, cmap="viridis", aspect="auto")
            ax.set_title(f"{name}: {title}")
            ax.set_xlabel("frames" if level == 0 else "frame clusters")
            labels = words if level == 0 else [f"c{i}" for i in range(values.shape[0])]
            ax.set_yticks(range(values.shape[0]), labels[:values.shape[0]], fontsize=7)
            fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init_model", required=True, help="an HBI checkpoint (this repository's or a released one)")
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--estimator", default=None, help="estimator weights, if the checkpoint's teacher is not the one")
    p.add_argument("--video", required=True)
    p.add_argument("--caption", required=True)
    p.add_argument("--max_words", type=int, default=32)
    p.add_argument("--max_frames", type=int, default=12)
    p.add_argument("--video_framerate", type=float, default=1.0)
    p.add_argument("--out", default="hbi_visualization.png")
    args = p.parse_args(argv)
    model = load_retrieval_model(args.init_model, model="hbi", num_hidden_layers=args.num_hidden_layers).eval()
    if args.estimator:
        model.load_estimator(args.estimator)
    tokenizer = ClipTokenizer()
    ids, mask = tokenizer(args.caption, args.max_words)
    words = ["<start>", *[tokenizer.decode_one(i) for i in ids[1:int(mask.sum()) - 1]], "<end>"]
    frames = read_frames(args.video, args.video_framerate, args.max_frames)
    video, video_mask = pad_frames(frames_to_tensor(frames, model.input_spec["image_size"], train=False),
                                   args.max_frames)
    maps = level_maps(model, torch.from_numpy(ids)[None], torch.from_numpy(mask)[None], video[None], video_mask[None])
    out = Path(args.out)
    draw(frames, words, maps, out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
