"""Decoding throughput: 12 frames at 1 fps from 10-second 320x240 30-fps mp4 clips.

Measured in one run on the same generated files:
  (a) decord through read_frames (file opened once, one get_batch call),
  (b) plain OpenCV seeking to every sampled frame (the reference's cv2 extractor pattern),
  (c) read_frames' OpenCV backend (grab() across short gaps, seek across long ones), for reference.
Usage: python -m scripts.bench.decode [--clips 16] [--repeat 3] [--codec h264|mp4v]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dataloaders.video.reader import decord, read_frames, sample_positions

SECONDS, FPS, WIDTH, HEIGHT = 10, 30, 320, 240
FRAMERATE, MAX_FRAMES = 1.0, 12


def clip_frames(index: int, rng: np.random.Generator):
    """Yield the BGR frames of one clip: drifting gradients with a little noise, so frames differ."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for t in range(SECONDS * FPS):
        base = ((xx + 3 * t + 17 * index) % 256).astype(np.uint8)
        frame = np.stack([base, (yy + t) % 256, 255 - base], axis=-1).astype(np.uint8)
        yield cv2.add(frame, rng.integers(0, 8, frame.shape, dtype=np.uint8))


def write_clips(folder: Path, count: int, codec: str) -> list[str]:
    """Write `count` clips: h264 through the imageio-ffmpeg binary (ffmpeg's default for mp4, and what
    scripts/compress_videos.py produces: sparse keyframes) or mp4v through OpenCV (a keyframe every 12 frames)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = str(folder / f"clip{i}.mp4")
        if codec == "mp4v":
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
            for frame in clip_frames(i, rng):
                writer.write(frame)
            writer.release()
        else:
            import imageio_ffmpeg

            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
                   "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
                   "-c:v", "libx264", "-pix_fmt", "yuv420p", path]
            data = b"".join(frame.tobytes() for frame in clip_frames(i, rng))
            subprocess.run(cmd, input=data, check=True)
        paths.append(path)
    return paths


def read_opencv_seek(path: str) -> np.ndarray:
    """Plain baseline: one seek per sampled frame, per-frame BGR -> RGB."""
    cap = cv2.VideoCapture(path)
    positions = sample_positions(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS),
                                 FRAMERATE, MAX_FRAMES)
    frames = []
    for pos in positions.tolist():
        cap.set(cv2.CAP_PROP_POS_FRAMES, pos)
        ok, frame = cap.read()
        if not ok:
            raise RuntimeError(f"{path}: frame {pos} unreadable")
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def clips_per_second(read, paths: list[str], repeat: int) -> float:
    read(paths[0])  # warm-up: library initialisation, page cache
    start = time.perf_counter()
    for _ in range(repeat):
        for path in paths:
            read(path)
    return repeat * len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16, help="number of generated clips")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the clips per method")
    parser.add_argument("--codec", choices=("h264", "mp4v"), default="h264", help="encoder of the generated clips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_clips(Path(tmp), args.clips, args.codec)
        shapes = {read_frames(paths[0], FRAMERATE, MAX_FRAMES, backend=b).shape for b in ("decord", "opencv")}
        shapes.add(read_opencv_seek(paths[0]).shape)
        assert len(shapes) == 1, f"decoders disagree on the sampled frames: {shapes}"
        methods = {
            "decord read_frames": lambda p: read_frames(p, FRAMERATE, MAX_FRAMES, backend="decord"),
            "opencv seek per frame": read_opencv_seek,
            "opencv read_frames": lambda p: read_frames(p, FRAMERATE, MAX_FRAMES, backend="opencv"),
        }
        print(f"{args.clips} {args.codec} clips x {args.repeat} passes, {SECONDS} s {WIDTH}x{HEIGHT} @ {FPS} fps, "
              f"{MAX_FRAMES} frames at {FRAMERATE:g} fps per clip; frames {shapes.pop()}"
              + ("" if decord is not None else " (decord missing: (a) falls back to OpenCV)"))
        rates = {name: clips_per_second(read, paths, args.repeat) for name, read in methods.items()}
    for name, rate in rates.items():
        print(f"  {name:24s} {rate:8.1f} clips/s")
    print(f"decord / opencv-seek ratio: {rates['decord read_frames'] / rates['opencv seek per frame']:.2f}x")


if __name__ == "__main__":
    main()
