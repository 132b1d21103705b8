"""scripts/beats.py: a click track's beats, a flashing video's motion beats, the published layout, refusals."""
from __future__ import annotations

import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from modules.engine.errors import cli
from scripts import beats

SR, BPM, SECONDS, CLICKS_FROM = 22050, 120, 8, 0.25
VIDEO_FPS, FLASH_EVERY, FLASH_FROM, N_FRAMES = 25, 12, 6, 100


def write_click_track(path: Path) -> int:
    """An 8 s, 120 BPM click track (10 ms 1 kHz clicks from 0.25 s) as 16-bit mono wav; returns the click count."""
    samples = np.zeros(SECONDS * SR)
    n = int(0.01 * SR)
    click = np.hanning(n) * np.sin(2 * np.pi * 1000 * np.arange(n) / SR)
    starts = np.arange(CLICKS_FROM, SECONDS, 60 / BPM)
    for start in starts:
        i = int(round(start * SR))
        samples[i:i + n] += click
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((samples * 0.8 * 32767).astype("<i2").tobytes())
    return len(starts)


def write_flash_video(path: Path, seed: int = 0) -> list[int]:
    """64x64 mp4v at 25 fps, dark noisy frames with a bright frame every 12 frames from frame 6; the flash frames."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (64, 64))
    assert writer.isOpened()
    flashes = list(range(FLASH_FROM, N_FRAMES, FLASH_EVERY))
    for t in range(N_FRAMES):
        level = 230 if t in flashes else 30
        writer.write(np.clip(level + rng.integers(-3, 4, (64, 64, 3)), 0, 255).astype(np.uint8))
    writer.release()
    return flashes


def messages(err: str) -> list[str]:
    """The lines of stderr without the progress bar's redrawn fragments (which end in a carriage return)."""
    return [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "file/s" not in line]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the command in this process as `python -m scripts.beats` would: (exit code, stdout, stderr)."""
    code = 0
    try:
        cli(beats.main, list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def click_run(tmp_path_factory):
    """The music command on a click track: (clicks written, output root, stdout)."""
    root = tmp_path_factory.mktemp("music")
    clicks = write_click_track(root / "clicks.wav")
    beats.main(["music", str(root / "clicks.wav"), "--out", str(root / "out"), "--fps", "30"])
    return clicks, root


def test_click_track_beats_are_half_a_second_apart(click_run):
    clicks, root = click_run
    record = torch.load(root / "out" / "music_beat" / "clicks.pt", weights_only=True)
    assert set(record) == {"fps", "music_beat"} and record["fps"] == 30.0 and isinstance(record["fps"], float)
    track = record["music_beat"]
    assert track.shape == (SECONDS * 30,) and track.dtype == torch.float32
    assert set(track.unique().tolist()) <= {0.0, 1.0}
    frames = track.nonzero().flatten()
    assert abs(len(frames) - clicks) <= 1, frames.tolist()
    assert ((frames.diff() - 15).abs() <= 1).all(), frames.tolist()  # 0.5 s at 30 fps, +- one frame
    # and they sit on the clicks (the onset envelope lags by about one hop), within a frame
    click_frames = (CLICKS_FROM + 0.5 * np.arange(clicks)) * 30
    assert all(np.abs(click_frames - f).min() <= 1.5 for f in frames.tolist())


def test_music_strength_is_the_onset_envelope_on_the_same_grid(click_run, capsys):
    clicks, root = click_run
    code, out, _ = run(capsys, "music", str(root / "clicks.wav"), "--out", str(root / "strength"), "--strength")
    assert code == 0 and "wrote 1 music_beat files" in out
    track = torch.load(root / "strength" / "music_beat" / "clicks.pt", weights_only=True)["music_beat"]
    assert track.shape == (SECONDS * 30,) and (track >= 0).all() and len(track.unique()) > 2
    peaks = track.topk(clicks).indices.sort().values
    assert ((peaks.diff() - 15).abs() <= 1).all(), peaks.tolist()


def test_flashing_video_beats_fall_on_the_flashes(tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    flashes = write_flash_video(folder / "a.mp4")
    write_flash_video(folder / "b.mp4", seed=1)
    (folder / "notes.txt").write_text("not a video")
    code, out, _ = run(capsys, "video", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0, out
    assert out.strip().splitlines()[-1] == (f"wrote 2 video_beat files to {tmp_path / 'out' / 'video_beat'}, "
                                            f"{len(flashes):.1f} beats per file on average")
    for stem in ("a", "b"):
        record = torch.load(tmp_path / "out" / "video_beat" / f"{stem}.pt", weights_only=True)
        assert set(record) == {"fps", "video_beat"} and record["fps"] == pytest.approx(VIDEO_FPS)
        track = record["video_beat"]
        assert track.shape == (N_FRAMES,) and track.dtype == torch.float32
        found = track.nonzero().flatten().tolist()
        assert len(found) == len(flashes) and all(abs(f - e) <= 1 for f, e in zip(found, flashes)), found

    code, _, _ = run(capsys, "video", str(folder / "a.mp4"), "--out", str(tmp_path / "at50"), "--fps", "50")
    record = torch.load(tmp_path / "at50" / "video_beat" / "a.pt", weights_only=True)
    found = record["video_beat"].nonzero().flatten().tolist()
    assert code == 0 and record["fps"] == 50.0 and record["video_beat"].shape == (2 * N_FRAMES,)
    assert len(found) == len(flashes) and all(abs(f - 2 * e) <= 2 for f, e in zip(found, flashes)), found


def test_motion_energy_and_video_beats_of_arrays():
    frames = np.zeros((40, 8, 8, 3), dtype=np.uint8)
    frames[10] = 100
    frames[30, :4] = 200  # half the frame changes by 200: mean difference 100
    energy = beats.motion_energy(frames)
    assert energy.shape == (40,) and energy[0] == 0
    assert np.allclose(energy[[10, 11, 30, 31]], 100) and energy.sum() == pytest.approx(400)
    assert np.allclose(beats.motion_energy(iter(frames[..., 0])), energy)  # gray frames, streamed
    track = beats.video_beats(frames, fps=10)
    assert track.shape == (40,) and track.nonzero().flatten().tolist() == [10, 30]
    assert torch.equal(beats.video_beats(energy, fps=10), track)
    assert torch.allclose(beats.video_beats(energy, fps=10, strength=True), torch.from_numpy(energy).float())


def test_peak_picking_threshold_and_spacing():
    assert len(beats.pick_peaks(np.full(50, 3.0), fps=10)) == 0  # no motion changes: no beats
    assert len(beats.pick_peaks(np.zeros(50), fps=10)) == 0
    energy = np.zeros(60)
    energy[[20, 22]] = [5.0, 8.0]  # 0.2 s apart at 10 fps: within the 0.25 s spacing, the stronger stays
    energy[40] = 1.0
    assert beats.pick_peaks(energy, fps=10, smooth_s=0).tolist() == [22, 40]
    assert beats.pick_peaks(energy, fps=10, smooth_s=0, spacing_s=0.1).tolist() == [20, 22, 40]


def test_time_grid_intervals_are_half_open():
    track = beats.indicator(np.array([0.0, 0.1, 0.2999, 0.3, 5.0]), fps=10, length=4)
    assert track.tolist() == [1.0, 1.0, 1.0, 1.0] and beats.indicator(np.array([0.35]), 10, 4).tolist() == [0, 0, 0, 1]
    assert beats.track_length(8.0, 30) == 240 and beats.track_length(8.01, 30) == 241
    up = beats.resample_max(np.array([0.0, 4.0, 2.0]), src_fps=1, fps=2, length=6)
    assert up.tolist() == [0.0, 2.0, 4.0, 3.0, 2.0, 2.0]
    down = beats.resample_max(np.array([1.0, 5.0, 2.0, 0.0]), src_fps=2, fps=1, length=2)
    assert down.tolist() == [5.0, 2.0]


def test_existing_outputs_are_refused_without_overwrite(tmp_path, capsys):
    write_flash_video(tmp_path / "a.mp4")
    target = tmp_path / "out" / "video_beat" / "a.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"earlier")
    code, _, err = run(capsys, "video", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"))
    assert code == 1 and len(messages(err)) == 1 and str(target) in err and "--overwrite 1" in err
    assert target.read_bytes() == b"earlier"
    code, _, _ = run(capsys, "video", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"), "--overwrite", "1")
    assert code == 0 and set(torch.load(target, weights_only=True)) == {"fps", "video_beat"}


@pytest.mark.parametrize("kind, name, content", [
    ("music", "missing.wav", None), ("video", "missing.mp4", None),
    ("music", "broken.wav", b"RIFF not really"), ("video", "broken.mp4", b"\x00" * 64)])
def test_a_missing_or_unreadable_input_is_one_line_naming_it(tmp_path, capsys, kind, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, kind, str(path), "--out", str(tmp_path / "out"))
    assert code == 1 and len(messages(err)) == 1 and str(path) in messages(err)[0], err
    assert not (tmp_path / "out" / beats.KEYS[kind] / f"{path.stem}.pt").exists()


def test_an_empty_folder_names_the_extensions(tmp_path, capsys):
    code, _, err = run(capsys, "music", str(tmp_path), "--out", str(tmp_path / "out"), "--ext", "wav")
    assert code == 1 and len(messages(err)) == 1 and str(tmp_path) in err and ".wav" in err
