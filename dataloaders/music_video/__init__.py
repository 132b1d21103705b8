"""Music-video retrieval (BPVMR) from pre-extracted features and beat tracks.

`segment_features` / `segment_beats` pool a clip's tracks into fixed segments ("even" by default, "chunk" for the
reference); `read_split`, `load_clip` and `MusicVideoDataset` read the published layout under `--videos_dir`.
"""
from __future__ import annotations

from dataloaders.music_video.dataset import (MUSIC_DIM, SPLITS, TRACKS, VIDEO_DIM, MusicVideoDataset, load_clip,
                                             read_split, read_track, track_path)
from dataloaders.music_video.segments import MODES, segment_beats, segment_features

__all__ = ["MODES", "MUSIC_DIM", "SPLITS", "TRACKS", "VIDEO_DIM", "MusicVideoDataset", "load_clip", "read_split",
           "read_track", "segment_beats", "segment_features", "track_path"]
