"""Benchmark: answering questions when each video is encoded and merged once vs once per question.

Plain path (how the reference evaluates): every batch of questions runs the whole model on its own copy of each
question's video, so a video with 24 questions is encoded 24 times. Fast path (`modules/evaluation/qa.py`):
videos encoded and merged once, their tokens indexed for their questions. Frames are decoded beforehand for both,
so decoding, which the plain path also repeats per question, is not counted. Prints both times, the ratio and the
largest logit difference.

    python -m scripts.bench.vqa_eval [--videos 8 --questions_per_video 24 --frames 12 --width 256 --layers 4]
    python -m scripts.bench.vqa_eval --videos 2 --width 512 --vision_width 768 --layers 12 --image_size 224  # B/16
"""
from __future__ import annotations

import argparse

import torch

from models.clip.adapter import ClipConfig
from models.vqa.model import HBIQAModel
from scripts.bench.eval_sims import timed


def plain(model: HBIQAModel, ids, mask, frames, video_mask, owner, batch: int) -> torch.Tensor:
    out = []
    for i in range(0, len(ids), batch):
        rows = owner[i:i + batch]
        text = model.encode_text(ids[i:i + batch], mask[i:i + batch])
        video = model.encode_video(frames[rows], video_mask[rows])
        out.append(model.answer_logits(model.merge_levels(text, mask[i:i + batch], "text"), mask[i:i + batch],
                                       model.merge_levels(video, video_mask[rows], "video"), video_mask[rows]))
    return torch.cat(out)


def once_per_video(model: HBIQAModel, ids, mask, frames, video_mask, owner, batch: int) -> torch.Tensor:
    video = torch.cat([model.encode_video(frames[i:i + batch], video_mask[i:i + batch])
                       for i in range(0, len(frames), batch)])
    levels = model.merge_levels(video, video_mask, "video")
    out = []
    for i in range(0, len(ids), batch):
        rows = owner[i:i + batch]
        text = model.encode_text(ids[i:i + batch], mask[i:i + batch])
        out.append(model.answer_logits(model.merge_levels(text, mask[i:i + batch], "text"), mask[i:i + batch],
                                       tuple(level[rows] for level in levels), video_mask[rows]))
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--questions_per_video", type=int, default=24, help="MSRVTT-QA test: 72,821 / 2,990 = 24.4")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--width", type=int, default=256, help="text width = embedding size")
    p.add_argument("--vision_width", type=int, default=None, help="default: --width (ViT-B/16: 768, width 512)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--image_size", type=int, default=112)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    torch.manual_seed(0)
    config = ClipConfig(embed_dim=args.width, image_size=args.image_size, patch_size=16, vision_width=args.vision_width or args.width,
                        vision_layers=args.layers, context_length=32, vocab_size=49408, text_width=args.width,
                        text_layers=args.layers)
    model = HBIQAModel(config, num_answers=1500, num_hidden_layers=2).eval()
    n = args.videos * args.questions_per_video
    owner = torch.arange(args.videos).repeat_interleave(args.questions_per_video)
    lengths = torch.randint(6, 17, (n,))
    mask = (torch.arange(32)[None] < lengths[:, None]).long()
    ids = torch.randint(1, 49000, (n, 32)) * mask
    frames = torch.randn(args.videos, args.frames, 3, args.image_size, args.image_size)
    video_mask = torch.ones(args.videos, args.frames, dtype=torch.long)
    with torch.no_grad():
        fast, t_fast = timed(lambda: once_per_video(model, ids, mask, frames, video_mask, owner, args.batch))
        slow, t_slow = timed(lambda: plain(model, ids, mask, frames, video_mask, owner, args.batch))
    print(f"{n} questions over {args.videos} videos, {args.frames} frames, width {args.width}, "
          f"{args.layers} layers, {torch.get_num_threads()} threads")
    print(f"per question (reference): {t_slow:.2f} s   once per video: {t_fast:.2f} s   "
          f"ratio {t_slow / t_fast:.1f}x   max |logit diff| {(fast - slow).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
