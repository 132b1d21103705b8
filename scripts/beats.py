"""Beat tracks from media, in the on-disk layout of the published music-video (BPVMR) features.

    python -m scripts.beats music INPUT --out DIR [--fps 30] [--strength] [--overwrite 1]
    python -m scripts.beats video INPUT --out DIR [--fps F] [--strength] [--overwrite 1]

INPUT is one file or a folder (its files with the `--ext` extensions, not searched recursively). Each input
<stem>.<ext> becomes DIR/music_beat/<stem>.pt = {"fps": float, "music_beat": (L,) float32 tensor} or
DIR/video_beat/<stem>.pt = {"fps": float, "video_beat": (L,) float32 tensor}, plain tensors and floats that
torch.load(weights_only=True) reads. Entry i covers the time [i / fps, (i + 1) / fps): 1 when a beat falls in it,
else 0; with `--strength` the entry is the onset strength (music) or motion energy (video) instead, the largest
value of the source frames in that interval. L = ceil(duration * fps).

Music: the audio is read at 22,050 Hz mono (librosa.load); beats are librosa's dynamic-programming beat tracker
(librosa.beat.beat_track) on the onset-strength envelope (hop 512 samples). Video: motion beats, the peaks of the
frame-difference energy (mean absolute difference of consecutive grayscale frames), see `pick_peaks`; the frames
are streamed with OpenCV, one at a time, so a long video never sits in memory. A video track is written at the
video's own frame rate unless `--fps` says otherwise (the beat times are kept, the grid changes).

Existing outputs are refused, all named before anything runs, unless `--overwrite 1`; a missing or unreadable
input stops with one line naming it. The last line sums up: files written and beats per file on average.
"""
from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
from tqdm import tqdm

from dataloaders.errors import DataError
from modules.engine.checkpoint import atomic_write
from modules.engine.errors import RunError, cli

AUDIO_SR = 22050
HOP_LENGTH = 512
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
KEYS = {"music": "music_beat", "video": "video_beat"}
_EPS = 1e-9  # a beat at exactly i / fps belongs to entry i despite rounding


# ---------------------------------------------------------------------------------------------------------------
# Time grids
# ---------------------------------------------------------------------------------------------------------------
def track_length(duration: float, fps: float) -> int:
    """L = ceil(duration * fps) entries of 1 / fps seconds cover `duration` seconds (at least 1)."""
    return max(1, math.ceil(duration * fps - _EPS))


def indicator(times: np.ndarray, fps: float, length: int) -> torch.Tensor:
    """(L,) float32: entry i is 1 when one of `times` (B,) seconds lies in [i / fps, (i + 1) / fps), else 0."""
    track = torch.zeros(length, dtype=torch.float32)
    index = np.floor(np.asarray(times, dtype=np.float64) * fps + _EPS).astype(np.int64)
    index = index[(index >= 0) & (index < length)]
    track[torch.from_numpy(index)] = 1.0
    return track


def resample_max(values: np.ndarray, src_fps: float, fps: float, length: int) -> torch.Tensor:
    """(L,) float32 from `values` (T,) sampled at src_fps (sample t at t / src_fps seconds): entry i is the largest
    sample in [i / fps, (i + 1) / fps), or, where no sample falls in it (fps > src_fps), the linear interpolation
    at the interval's start. The maximum keeps a peak's height whatever the grid."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return torch.zeros(length, dtype=torch.float32)
    times = np.arange(len(values)) / src_fps
    out = np.interp(np.arange(length) / fps, times, values)
    index = np.floor(times * fps + _EPS).astype(np.int64)
    keep = index < length
    filled = np.full(length, -np.inf)
    np.maximum.at(filled, index[keep], values[keep])
    has = np.isfinite(filled)
    out[has] = filled[has]
    return torch.from_numpy(out.astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# Music
# ---------------------------------------------------------------------------------------------------------------
def music_beat_times(samples: np.ndarray, sr: int, hop_length: int = HOP_LENGTH,
                     trim: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Beat times (B,) in seconds and the onset-strength envelope (F,) at sr / hop_length frames per second
    (frame f at f * hop_length / sr s) of mono `samples` (N,). `trim=True` drops weak beats at both ends, as
    librosa's default does; off by default, so that a track's first and last beats are kept."""
    import librosa  # imported here so --help and the video command work without it

    samples = np.asarray(samples, dtype=np.float32)
    envelope = librosa.onset.onset_strength(y=samples, sr=sr, hop_length=hop_length)
    _, times = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=hop_length, units="time",
                                       trim=trim)
    return np.asarray(times, dtype=np.float64), np.asarray(envelope, dtype=np.float64)


def music_beats(samples: np.ndarray, sr: int, fps: float, strength: bool = False,
                hop_length: int = HOP_LENGTH) -> torch.Tensor:
    """(L,) float32 music beat track of mono `samples` (N,) at `sr` Hz, L = ceil(N / sr * fps): the 0/1 beat
    indicator, or with `strength` the onset strength (largest envelope value in each 1 / fps interval)."""
    return _music_track(samples, sr, fps, strength, hop_length)[0]


def _music_track(samples: np.ndarray, sr: int, fps: float, strength: bool,
                 hop_length: int = HOP_LENGTH) -> tuple[torch.Tensor, int]:
    length = track_length(len(samples) / sr, fps)
    times, envelope = music_beat_times(samples, sr, hop_length)
    if strength:
        return resample_max(envelope, sr / hop_length, fps, length), len(times)
    return indicator(times, fps, length), len(times)


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 samples (N,) of an audio file at AUDIO_SR Hz; DataError naming the file if it cannot be read."""
    import librosa

    try:
        with warnings.catch_warnings():  # librosa warns when soundfile fails and audioread is tried
            warnings.simplefilter("ignore")
            samples, _ = librosa.load(str(path), sr=AUDIO_SR, mono=True)
    except Exception as exc:  # soundfile and audioread raise their own types
        raise DataError(f"{path}: cannot read audio (neither soundfile nor audioread decodes it: "
                        f"{_one_line(exc)})") from exc
    if len(samples) == 0:
        raise DataError(f"{path}: no audio samples")
    return samples


# ---------------------------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------------------------
def _gray(frame: np.ndarray) -> np.ndarray:
    """(H, W) float32 luminance of a (H, W) gray or (H, W, 3) RGB frame."""
    frame = np.asarray(frame)
    if frame.ndim == 3:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return frame.astype(np.float32)


def motion_energy(frames: Iterable[np.ndarray]) -> np.ndarray:
    """(T,) float64 frame-difference energy of T frames, each (H, W) gray or (H, W, 3) RGB (an array (T, H, W[, 3])
    or any iterable of frames, consumed once): entry t is the mean absolute difference between the grayscale
    frames t and t - 1, in pixel units; entry 0 is 0 (no previous frame)."""
    energy, previous = [], None
    for frame in frames:
        gray = _gray(frame)
        energy.append(0.0 if previous is None else float(np.abs(gray - previous).mean()))
        previous = gray
    return np.asarray(energy, dtype=np.float64)


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """(T,) moving average of `values` (T,) over `width` frames (made odd), centred, edges padded by repetition."""
    width = max(1, int(width)) | 1
    if width == 1 or len(values) == 0:
        return np.asarray(values, dtype=np.float64)
    padded = np.pad(np.asarray(values, dtype=np.float64), width // 2, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _window_mean(values: np.ndarray, half: int) -> np.ndarray:
    """(T,) mean of values[t - half : t + half + 1], clipped at the ends."""
    total = np.concatenate([[0.0], np.cumsum(values)])
    t = np.arange(len(values))
    lo, hi = np.maximum(t - half, 0), np.minimum(t + half + 1, len(values))
    return (total[hi] - total[lo]) / (hi - lo)


def pick_peaks(energy: np.ndarray, fps: float, smooth_s: float = 0.1, window_s: float = 2.0,
               k: float = 0.5, spacing_s: float = 0.25) -> np.ndarray:
    """Frame indices (P,) int64, increasing, of the motion beats in `energy` (T,) at `fps` frames per second.

    The energy is smoothed by a moving average of round(smooth_s * fps) frames (made odd). A frame t is a beat when
    (1) it is a local maximum: s[t] > s[t - 1] and s[t] >= s[t + 1] (the first frame of a flat top), (2) it exceeds
    an adaptive threshold: s[t] > mean + k * std of s over the window_s seconds centred on t, and (3) no stronger
    beat lies within spacing_s seconds (greedy, strongest first, earlier first among equals). A constant or silent
    stretch has no beats.
    """
    s = smooth(energy, round(smooth_s * fps))
    if len(s) < 2:
        return np.zeros(0, dtype=np.int64)
    left = np.concatenate([[-np.inf], s[:-1]])
    right = np.concatenate([s[1:], [-np.inf]])
    half = max(1, round(window_s * fps / 2))
    mean = _window_mean(s, half)
    std = np.sqrt(np.maximum(_window_mean(s * s, half) - mean * mean, 0.0))
    candidates = np.flatnonzero((s > left) & (s >= right) & (s > mean + k * std + 1e-12))
    gap = spacing_s * fps
    kept: list[int] = []
    for t in candidates[np.argsort(-s[candidates], kind="stable")].tolist():  # peaks, not frames: few
        if all(abs(t - u) >= gap for u in kept):
            kept.append(t)
    return np.asarray(sorted(kept), dtype=np.int64)


def video_beats(frames_or_energy: np.ndarray | Iterable[np.ndarray], fps: float, out_fps: float | None = None,
                strength: bool = False, **peaks: float) -> torch.Tensor:
    """(L,) float32 video beat track at out_fps (default: fps) from frames (T, H, W[, 3]) or an iterable of
    frames, or from a motion energy (T,) already computed; L = ceil(T / fps * out_fps). The 0/1 beat indicator,
    or with `strength` the motion energy (largest in each interval). `peaks` go to `pick_peaks`."""
    return _video_track(frames_or_energy, fps, out_fps, strength, **peaks)[0]


def _video_track(frames_or_energy, fps: float, out_fps: float | None, strength: bool,
                 **peaks: float) -> tuple[torch.Tensor, int]:
    data = frames_or_energy
    energy = data if isinstance(data, np.ndarray) and data.ndim == 1 else motion_energy(data)
    out_fps = fps if out_fps is None else out_fps
    length = track_length(len(energy) / fps, out_fps)
    beats = pick_peaks(energy, fps, **peaks)
    if strength:
        return resample_max(energy, fps, out_fps, length), len(beats)
    return indicator(beats / fps, out_fps, length), len(beats)


def iter_video(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    """The frame rate of the video at `path` and an iterator over its frames, (H, W) gray, one decoded at a time.
    DataError naming the file when it cannot be opened, has no frame rate or no frames."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{path}: cannot open video with OpenCV (unsupported, truncated or corrupt file?)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not (fps > 0 and math.isfinite(fps)):
        cap.release()
        raise DataError(f"{path}: invalid frame rate {fps} (expected a positive number of frames per second)")

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        finally:
            cap.release()

    return float(fps), frames()


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def find_inputs(path: Path, extensions: Iterable[str]) -> list[Path]:
    """[path] for a file, else the folder's files with one of `extensions` (any case), sorted; DataError when the
    path is missing, the folder holds none, or two inputs share a stem (they would write the same output)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in wanted)
    if not files:
        raise DataError(f"{path}: no files with the extensions {' '.join(sorted(wanted))}")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise DataError(f"{seen[f.stem]} and {f} would both write {f.stem}.pt")
        seen[f.stem] = f
    return files


def _flag01(text: str) -> int:
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.beats",
                                description="Beat tracks from audio (music) or video (motion) files.")
    sub = p.add_subparsers(dest="kind", required=True)
    for kind, help_, exts in (("music", "audio files -> music_beat/<stem>.pt", AUDIO_EXTENSIONS),
                              ("video", "video files -> video_beat/<stem>.pt", VIDEO_EXTENSIONS)):
        q = sub.add_parser(kind, help=help_)
        q.add_argument("input", type=Path, help="a file, or a folder of files with the --ext extensions")
        q.add_argument("--out", type=Path, required=True, help=f"output root: writes OUT/{KEYS[kind]}/<stem>.pt")
        if kind == "music":
            q.add_argument("--fps", type=float, default=30.0, help="entries per second (default 30)")
        else:
            q.add_argument("--fps", type=float, default=None,
                           help="entries per second (default: the video's frame rate)")
        q.add_argument("--strength", type=_flag01, nargs="?", const=1, default=0,
                       help="write onset strength / motion energy instead of the 0/1 beat indicator")
        q.add_argument("--ext", nargs="+", default=list(exts), help=f"extensions in a folder (default {' '.join(exts)})")
        q.add_argument("--overwrite", type=_flag01, nargs="?", const=1, default=0,
                       help="1: replace existing outputs (default 0: refuse)")
        if kind == "video":
            q.add_argument("--smooth", type=float, default=0.1, help="moving-average width in seconds (default 0.1)")
            q.add_argument("--window", type=float, default=2.0,
                           help="seconds of the adaptive threshold's window (default 2)")
            q.add_argument("--k", type=float, default=0.5, help="threshold: local mean + k * local std (default 0.5)")
            q.add_argument("--spacing", type=float, default=0.25,
                           help="minimum seconds between two beats (default 0.25)")
    return p


def _process(args: argparse.Namespace, path: Path) -> tuple[dict, int]:
    """The saved dict of one input and the number of beats found in it."""
    if args.kind == "music":
        track, n = _music_track(load_audio(path), AUDIO_SR, args.fps, bool(args.strength))
        return {"fps": float(args.fps), "music_beat": track}, n
    fps, frames = iter_video(path)
    energy = motion_energy(frames)
    if len(energy) == 0:
        raise DataError(f"{path}: no decodable frames")
    out_fps = fps if args.fps is None else args.fps
    track, n = _video_track(energy, fps, out_fps, bool(args.strength), smooth_s=args.smooth,
                            window_s=args.window, k=args.k, spacing_s=args.spacing)
    return {"fps": float(out_fps), "video_beat": track}, n


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.fps is not None and not (args.fps > 0 and math.isfinite(args.fps)):
        raise RunError(f"--fps must be a positive number, got {args.fps}")
    inputs = find_inputs(args.input, args.ext)
    out_dir = args.out / KEYS[args.kind]
    outputs = [out_dir / f"{p.stem}.pt" for p in inputs]
    existing = [o for o in outputs if o.exists()]
    if existing and not args.overwrite:
        which = str(existing[0]) if len(existing) == 1 else f"{len(existing)} outputs (first {existing[0]})"
        raise RunError(f"{which} already exist{'s' if len(existing) == 1 else ''}; pass --overwrite 1 to replace")
    beats = 0
    # leave=False: the bar clears itself, so an error ends in its one line and a success in the summary
    with tqdm(total=len(inputs), unit="file", desc=args.kind, leave=False) as bar:
        for path, target in zip(inputs, outputs):
            record, n = _process(args, path)
            atomic_write(target, lambda f, r=record: torch.save(r, f))
            beats += n
            bar.update()
    print(f"wrote {len(outputs)} {KEYS[args.kind]} files to {out_dir}, {beats / len(outputs):.1f} beats per file "
          f"on average")


if __name__ == "__main__":
    cli(main)
