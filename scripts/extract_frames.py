"""Extract the frames of every video under a folder at 1 fps as JPEGs, the training input of HAP-VR.

OUT/<relative video path without extension>/000000.jpg, 000001.jpg, ... (6-digit, from 0), as the reference's
tools/extract_frames.py does with ffmpeg's fps filter and `-q 0` (5 digits there; the training loader reads both).
`-q:v 2` is written here: ffmpeg's JPEG encoder clamps 0 to its best quality, 2, and both give identical files.
The ffmpeg binary is the one the `imageio-ffmpeg` package ships. With the shipped ffmpeg, second k is the last frame
before k + 0.5 s (dataloaders/video_video/training_videos.py decodes the same frames straight from a video).

The layout's names live in dataloaders/video_video/frame_folders.py.
Resumable: a video is done when its folder holds the marker file DONE_MARKER. Frames are written to
`<folder>.partial` and renamed when ffmpeg succeeds, so a killed run leaves no folder that looks finished; the
next run removes the partial folder (and any unmarked final folder) and extracts that video again.
Every failure is listed with ffmpeg's last error line, and the exit code is 1 if any video failed.
Usage: python -m scripts.extract_frames --videos videos/ --frames frames/ --fps 1 --workers 8
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from dataloaders.video_video.frame_folders import DONE_MARKER, FRAME_PATTERN, PARTIAL_SUFFIX, find_videos


def frame_folder(videos: Path, frames: Path, video: Path) -> Path:
    """Output folder of `video`: its path relative to `videos`, without the extension, under `frames`."""
    return frames / video.relative_to(videos).with_suffix("")


def plan(videos: Path, frames: Path) -> tuple[list[tuple[Path, Path]], int, list[tuple[Path, str]]]:
    """(video, folder) jobs still to do, how many are already done, and videos refused before any work:
    a second video whose folder would be the same as an earlier one's (a.mp4 and a.avi side by side)."""
    jobs, done, refused, owner = [], 0, [], {}
    for video in find_videos(videos):
        folder = frame_folder(videos, frames, video)
        if folder in owner:
            refused.append((video, f"its frame folder {folder} is already the output of {owner[folder]}"))
            continue
        owner[folder] = video
        if (folder / DONE_MARKER).is_file():
            done += 1
        else:
            jobs.append((video, folder))
    return jobs, done, refused


def _last_line(text: str, fallback: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else fallback


def extract_one(ffmpeg: str, video: Path, folder: Path, fps: float) -> str | None:
    """Frames of `video` -> `folder` via a temporary folder; None on success, else why it failed (one line)."""
    partial = folder.with_name(folder.name + PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)  # left by a killed run
    partial.mkdir(parents=True)
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video), "-map", "0:v:0",
           "-vf", f"fps={fps}", "-start_number", "0", "-q:v", "2", str(partial / FRAME_PATTERN)]
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        count = sum(1 for p in partial.iterdir() if p.suffix == ".jpg")
        if result.returncode != 0:
            return _last_line(result.stderr, f"ffmpeg exited with {result.returncode}")
        if count == 0:
            return _last_line(result.stderr, "ffmpeg wrote no frames (no video stream, or shorter than one frame?)")
        (partial / DONE_MARKER).write_text(json.dumps({"video": str(video), "frames": count, "fps": fps}) + "\n")
        if folder.exists():  # an unmarked folder: an older partial copy or someone else's output
            shutil.rmtree(folder)
        os.replace(partial, folder)
        return None
    except OSError as exc:  # a full disk or a permission problem names the video like an ffmpeg error
        return f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def run(videos: Path, frames: Path, fps: float = 1.0, workers: int = 1,
        progress: bool = True) -> list[tuple[Path, str]]:
    """Extract every video not done yet; returns the failures as (video, reason), sorted by video."""
    import imageio_ffmpeg  # imported here so --help works without it

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    jobs, done, failures = plan(videos, frames)
    print(f"{len(jobs)} videos to extract, {done} already done, {max(1, workers)} workers", flush=True)
    # Threads suffice: each one only waits on its own ffmpeg process, so `workers` bounds the processes.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(extract_one, ffmpeg, video, folder, fps): video for video, folder in jobs}
        for future in tqdm(as_completed(futures), total=len(futures), unit="video", disable=not progress):
            error = future.result()
            if error is not None:
                failures.append((futures[future], error))
    return sorted(failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract the frames of a folder of videos at 1 fps (ffmpeg).")
    parser.add_argument("--videos", required=True, type=Path, help="folder of videos (searched recursively)")
    parser.add_argument("--frames", required=True, type=Path, help="output folder: one frame folder per video")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second to keep (default 1, as HAP-VR)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel ffmpeg processes")
    args = parser.parse_args(argv)
    if not args.videos.is_dir():
        parser.error(f"--videos {args.videos} is not a folder")
    if not args.fps > 0:
        parser.error(f"--fps must be > 0, got {args.fps}")
    failures = run(args.videos, args.frames, args.fps, args.workers)
    for video, reason in failures:
        print(f"FAILED {video}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} video(s) failed; rerun to retry them (finished videos are skipped)", file=sys.stderr)
        return 1
    print(f"every video is extracted into {args.frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
