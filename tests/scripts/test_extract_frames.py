"""scripts/extract_frames.py: 1 fps JPEGs per video in mirrored folders, resumable, failures named with a reason."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataloaders.video_video.frame_folders import DONE_MARKER, PARTIAL_SUFFIX, frame_files
from scripts import extract_frames

FPS, SIZE, BITS = 10, (64, 32), 8  # SIZE is (width, height)


def frame_code(index: int) -> np.ndarray:
    """A 32x64 BGR frame whose 8 vertical bands spell `index` in binary (survives mp4v and JPEG)."""
    frame = np.zeros((SIZE[1], SIZE[0], 3), dtype=np.uint8)
    for bit in range(BITS):
        if (index >> bit) & 1:
            frame[:, bit * 8:(bit + 1) * 8] = 255
    return frame


def read_code(image: np.ndarray) -> int:
    """The index `frame_code` wrote into `image` (H, W, 3), from the middle of each band."""
    return sum(int(image[:, bit * 8 + 2:bit * 8 + 6].mean() > 127) << bit for bit in range(BITS))


def write_video(path: Path, frames: int, fps: float = FPS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(frame_code(i))
    writer.release()


@pytest.fixture()
def videos(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    write_video(root / "a.mp4", 37)  # 3.7 s -> 4 frames
    write_video(root / "sub" / "deeper" / "b.avi", 25)  # 2.5 s -> 3 frames (the duration rounded half up)
    (root / "sub" / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(2000))
    (root / "notes.txt").write_text("not a video")
    return root


def run(videos: Path, frames: Path, capsys, *extra: str) -> tuple[int, str]:
    code = extract_frames.main(["--videos", str(videos), "--frames", str(frames), "--workers", "2", *extra])
    return code, capsys.readouterr().err


def test_frames_at_one_fps_mirrored_and_failures_reported(videos, tmp_path, capsys):
    frames = tmp_path / "frames"
    code, err = run(videos, frames, capsys)
    assert code == 1
    a, b = frames / "a", frames / "sub" / "deeper" / "b"
    assert [p.name for p in frame_files(a)] == ["000000.jpg", "000001.jpg", "000002.jpg", "000003.jpg"]
    # second k is the last frame before k + 0.5 s (10 fps: frames 4, 14, 24, 34)
    assert [read_code(cv2.imread(str(p))) for p in frame_files(a)] == [4, 14, 24, 34]
    assert [read_code(cv2.imread(str(p))) for p in frame_files(b)] == [4, 14, 24]
    assert json.loads((a / DONE_MARKER).read_text())["frames"] == 4
    assert "broken.mp4" in err and "1 video(s) failed" in err
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].split(": ", 1)[1].strip()  # the reason: ffmpeg's last error line
    assert not (frames / "sub" / "broken").exists()
    assert not list(frames.rglob(f"*{PARTIAL_SUFFIX}"))


def test_rerun_skips_finished_redoes_partial_and_unmarked(videos, tmp_path, capsys, monkeypatch):
    frames = tmp_path / "frames"
    (videos / "sub" / "broken.mp4").unlink()
    assert run(videos, frames, capsys)[0] == 0
    a, b = frames / "a", frames / "sub" / "deeper" / "b"
    stamp = (a / "000000.jpg").stat().st_mtime_ns
    # a killed run: b's folder lost its marker and holds junk, a partial folder of a new video lies around
    (b / DONE_MARKER).unlink()
    (b / "999999.jpg").write_bytes(b"junk")
    write_video(videos / "c.mp4", 12)
    (frames / f"c{PARTIAL_SUFFIX}").mkdir()
    (frames / f"c{PARTIAL_SUFFIX}" / "000000.jpg").write_bytes(b"half")
    jobs, done, refused = extract_frames.plan(videos, frames)
    assert sorted(v.name for v, _ in jobs) == ["b.avi", "c.mp4"] and done == 1 and not refused
    assert run(videos, frames, capsys)[0] == 0
    assert (a / "000000.jpg").stat().st_mtime_ns == stamp  # finished video untouched
    assert (b / DONE_MARKER).is_file() and not (b / "999999.jpg").exists()
    assert [read_code(cv2.imread(str(p))) for p in frame_files(frames / "c")] == [4]
    assert not list(frames.rglob(f"*{PARTIAL_SUFFIX}"))


def test_same_folder_for_two_videos_is_refused(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "x.mp4", 10)
    write_video(videos / "x.avi", 10)
    code, err = run(videos, tmp_path / "frames", capsys)
    assert code == 1 and "x.mp4" in err and "already the output of" in err
    assert len(frame_files(tmp_path / "frames" / "x")) == 1
