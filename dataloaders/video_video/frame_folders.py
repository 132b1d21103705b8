"""The on-disk layout of HAP-VR's training set: a folder of videos, or of frame folders made by
scripts/extract_frames.py (one folder per video, JPEGs at 1 fps named by index, a marker file when complete).

Shared by the extractor (which writes it) and the training loader (which reads it), so both agree on names.
Nothing here decodes anything.
"""
from __future__ import annotations

import os
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".3gp", ".wmv", ".flv", ".mpg",
                              ".mpeg", ".ts", ".vob", ".ogv"})
FRAME_EXTENSIONS = frozenset({".jpg", ".jpeg"})
DONE_MARKER = ".extracted"  # written last into a frame folder: its extraction finished
PARTIAL_SUFFIX = ".partial"  # a frame folder still being written (or left by a killed run)
FRAME_PATTERN = "%06d.jpg"  # ffmpeg's output pattern; the reference wrote %05d, and both sort by index


def find_videos(root: Path) -> list[Path]:
    """Every file under `root` (recursively) with a usual video extension, sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def frame_files(folder: Path) -> list[Path]:
    """The JPEG frames of one frame folder in index order (names are zero-padded indices, so this is name order)."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file() and os.path.splitext(e.name)[1].lower() in FRAME_EXTENSIONS]
    return [Path(folder) / name for name in sorted(names, key=lambda n: (len(n), n))]


def find_frame_folders(root: Path) -> list[Path]:
    """Every folder under `root` that directly holds JPEG frames, sorted; folders still being written are left out."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.endswith(PARTIAL_SUFFIX)]
        if any(os.path.splitext(f)[1].lower() in FRAME_EXTENSIONS for f in files):
            found.append(Path(folder))
    return sorted(found)
