"""Music-video retrieval data in the published BPVMR layout (pre-extracted features and beat tracks).

Under `videos_dir`:
  train.txt, val.txt, test.txt        one clip id per line (CRLF, blank lines and a missing last newline are fine)
  video_feature/<id>.pt               {"fps": ..., "video_clip_feature": (T, 512)}
  music_feature/<id>.pt               {"fps": ..., "music_bert_feature": (T, 768)}
  video_beat/<id>.pt                  {"fps": ..., "video_beat": (L,)}
  music_beat/<id>.pt                  {"fps": ..., "music_beat": (L,)}
Files load with torch.load(weights_only=True). "fps" is not read: both segment rules place a frame by its
fraction of its own track, so tracks of different lengths and frame rates line up by time without it.

A sample is {"music" (n, 768), "music_beat" (n, bins), "video" (n, 512), "video_beat" (n, bins)} float32 and
"index" () int64, with n = num_segments (30) and bins = beat_bins (25); the segment rule is
dataloaders.music_video.segments ("even" by default, "chunk" for the reference).

Empty tracks (0 frames) are a DataError in both modes: the reference turns an empty feature into NaN rows (the
"chunk" rule of segment_features still does, to match the golden), but a NaN input makes every similarity of
that clip NaN, and a NaN similarity ranks arbitrarily, so the metrics of the whole split would change silently.
Non-finite values are refused for the same reason.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dataloaders.errors import DataError
from dataloaders.music_video.segments import MODES, segment_beats, segment_features

SPLITS = ("train", "val", "test")
# sample key -> (folder, key inside the file, dimensions)
TRACKS: dict[str, tuple[str, str, int]] = {
    "music": ("music_feature", "music_bert_feature", 2),
    "music_beat": ("music_beat", "music_beat", 1),
    "video": ("video_feature", "video_clip_feature", 2),
    "video_beat": ("video_beat", "video_beat", 1),
}
VIDEO_DIM, MUSIC_DIM = 512, 768
_SHOWN_MISSING = 3  # missing files named in the construction error


def split_path(videos_dir: str | Path, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(videos_dir) / f"{split}.txt"


def read_split(videos_dir: str | Path, split: str) -> list[str]:
    """Clip ids of `split` in file order; a missing or empty file, or an id listed twice, is a DataError."""
    path = split_path(videos_dir, split)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        clip_id = line.strip()
        if not clip_id:
            continue
        if clip_id in first_line:
            raise DataError(f"{path}: line {line_no} repeats clip id {clip_id!r} (first at line "
                            f"{first_line[clip_id]})")
        first_line[clip_id] = line_no
        ids.append(clip_id)
    if not ids:
        raise DataError(f"{path}: no clip ids (the file is empty or has only blank lines)")
    return ids


def track_path(videos_dir: str | Path, track: str, clip_id: str) -> Path:
    """Path of the file of one track ("music", "music_beat", "video", "video_beat") of a clip."""
    return Path(videos_dir) / TRACKS[track][0] / f"{clip_id}.pt"


def read_track(path: str | Path, key: str, ndim: int, width: int | None = None) -> torch.Tensor:
    """The float32 tensor stored under `key` of the .pt dict at `path`, checked: `ndim` dimensions, `width`
    columns (2-D, None: any), at least one frame, finite values."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found (expected a dict with key {key!r})")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run whatever the file holds.
        raise DataError(f"{path}: not a torch file of tensors (torch.load with weights_only=True refused it; it is "
                        f"corrupt or holds Python objects)") from None
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise DataError(f"{path}: unreadable .pt file ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:200] if str(error) else ''})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict with key {key!r}, got {type(data).__name__}")
    if key not in data:
        raise DataError(f"{path}: missing key {key!r} (keys: {', '.join(map(str, data)) or 'none'})")
    value = data[key]
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{path}: {key!r} is a {type(value).__name__}, expected a tensor")
    expected = "1-D (frames,)" if ndim == 1 else f"2-D (frames, {width if width is not None else 'width'})"
    if value.dim() != ndim or (ndim == 2 and width is not None and value.shape[1] != width):
        raise DataError(f"{path}: {key!r} has shape {tuple(value.shape)}, expected {expected}")
    if value.shape[0] == 0:
        raise DataError(f"{path}: {key!r} is empty (0 frames), expected {expected} with at least one frame")
    if value.is_complex():
        raise DataError(f"{path}: {key!r} is complex ({value.dtype}), expected real values")
    value = value.float()
    if not torch.isfinite(value).all():
        raise DataError(f"{path}: {key!r} holds NaN or infinite values")
    return value


def load_clip(videos_dir: str | Path, clip_id: str, segments: str = "even", num_segments: int = 30,
              beat_bins: int = 25, video_dim: int | None = VIDEO_DIM, music_dim: int | None = MUSIC_DIM
              ) -> dict[str, torch.Tensor]:
    """The four tracks of one clip, read and segmented: music (n, music_dim), music_beat (n, bins),
    video (n, video_dim), video_beat (n, bins), all float32. A dim of None accepts any feature width."""
    widths = {"music": music_dim, "video": video_dim}
    out = {}
    for track, (_, key, ndim) in TRACKS.items():
        path = track_path(videos_dir, track, clip_id)
        value = read_track(path, key, ndim, widths.get(track))
        name = f"{path}: {key!r}"
        if ndim == 2:
            out[track] = segment_features(value, num_segments, segments, name)
        else:
            out[track] = segment_beats(value, num_segments, beat_bins, segments, name)
    return out


class MusicVideoDataset(Dataset):
    """One sample per clip of `split` (see the module docstring); `ids` lists the clips in split order.

    Construction reads the split file and checks that every file of every clip exists; the content of a file
    is checked when its clip is loaded.
    """

    def __init__(self, videos_dir: str | Path, split: str, segments: str = "even", num_segments: int = 30,
                 beat_bins: int = 25, video_dim: int | None = VIDEO_DIM, music_dim: int | None = MUSIC_DIM):
        if segments not in MODES:
            raise ValueError(f"segments must be one of {MODES}, got {segments!r}")
        if num_segments < 1 or beat_bins < 1:
            raise ValueError(f"num_segments and beat_bins must be >= 1, got {num_segments} and {beat_bins}")
        self.videos_dir = Path(videos_dir)
        self.split = split
        self.segments = segments
        self.num_segments = num_segments
        self.beat_bins = beat_bins
        self.video_dim = video_dim
        self.music_dim = music_dim
        self.ids = read_split(videos_dir, split)
        self._check_files()

    def _check_files(self) -> None:
        missing = [path for clip_id in self.ids for track in TRACKS
                   if not (path := track_path(self.videos_dir, track, clip_id)).is_file()]
        if missing:
            shown = ", ".join(str(p.relative_to(self.videos_dir)) for p in missing[:_SHOWN_MISSING])
            more = f" and {len(missing) - _SHOWN_MISSING} more" if len(missing) > _SHOWN_MISSING else ""
            raise DataError(f"{self.videos_dir}: {len(missing)} file(s) of the {len(self.ids)} clips of "
                            f"{split_path(self.videos_dir, self.split).name} not found: {shown}{more}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = load_clip(self.videos_dir, self.ids[index], self.segments, self.num_segments, self.beat_bins,
                           self.video_dim, self.music_dim)
        sample["index"] = torch.tensor(index, dtype=torch.int64)
        return sample
