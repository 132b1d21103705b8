"""Re-encode a folder of videos to a low frame rate and a short side of `size` pixels, video stream only.

Same filter as the reference's preprocess/compress_video.py (defaults 3 fps, short side 224, even sizes),
using the ffmpeg binary of the `imageio-ffmpeg` package. Subfolders are mirrored; outputs that already exist
are skipped; each output is written under a temporary name and renamed when ffmpeg succeeds, so an
interrupted run never leaves a partial file that a rerun would skip.
Usage: python scripts/compress_videos.py --input_root raw/ --output_root compressed/ --workers 8
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".3gp", ".wmv", ".flv", ".mpg", ".mpeg"}


def scale_filter(size: int) -> str:
    """ffmpeg scale: the short side becomes `size`, the long side keeps the aspect ratio rounded to even."""
    return (f"scale='if(gt(a,1),trunc(oh*a/2)*2,{size})':'if(gt(a,1),{size},trunc(ow*a/2)*2)'")


def compress_one(ffmpeg: str, src: Path, dst: Path, fps: float, size: int) -> str | None:
    """Encode src -> dst; returns None on success, else ffmpeg's last error line."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.stem}.partial{dst.suffix}")  # keeps the suffix: ffmpeg picks the muxer from it
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-i", str(src), "-filter:v", scale_filter(size),
           "-map", "0:v", "-r", str(fps), str(tmp)]
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        lines = result.stderr.strip().splitlines()
        return lines[-1] if lines else f"ffmpeg exited with {result.returncode}"
    os.replace(tmp, dst)
    return None


def find_jobs(input_root: Path, output_root: Path) -> tuple[list[tuple[Path, Path]], int]:
    """(source, destination) pairs still to do, and how many outputs already exist."""
    jobs, done = [], 0
    for src in sorted(p for p in input_root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS):
        dst = output_root / src.relative_to(input_root)
        if dst.is_file() and dst.stat().st_size > 0:
            done += 1
        else:
            jobs.append((src, dst))
    return jobs, done


def main() -> int:
    parser = argparse.ArgumentParser(description="Compress videos to a low frame rate and short side (ffmpeg).")
    parser.add_argument("--input_root", required=True, type=Path, help="folder of source videos (searched recursively)")
    parser.add_argument("--output_root", required=True, type=Path, help="folder for the outputs (same relative paths)")
    parser.add_argument("--fps", type=float, default=3, help="output frame rate (default 3)")
    parser.add_argument("--size", type=int, default=224, help="output short side in pixels (default 224)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel ffmpeg processes")
    args = parser.parse_args()
    if args.input_root.resolve() == args.output_root.resolve():
        parser.error("--input_root and --output_root must differ")
    if not args.input_root.is_dir():
        parser.error(f"--input_root {args.input_root} is not a folder")
    import imageio_ffmpeg  # imported here so --help works without it

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    jobs, done = find_jobs(args.input_root, args.output_root)
    print(f"{len(jobs)} videos to compress, {done} already done, {args.workers} workers")
    failures = []
    # Threads suffice: each one waits on its own ffmpeg process.
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = {pool.submit(compress_one, ffmpeg, src, dst, args.fps, args.size): src for src, dst in jobs}
        for future in tqdm(as_completed(futures), total=len(futures), unit="video"):
            error = future.result()
            if error is not None:
                failures.append((futures[future], error))
    if failures:
        print(f"{len(failures)} of {len(jobs)} videos failed:", file=sys.stderr)
        for src, error in sorted(failures):
            print(f"  {src}: {error}", file=sys.stderr)
        return 1
    print(f"compressed {len(jobs)} videos into {args.output_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
