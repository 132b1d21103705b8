"""scripts/fit_pca.py end to end on a few tiny JPEG frames with a random ResNet-50 file: the written PCA is the
fit of the sampled frames' region vectors, loads into the extractor, is reproducible; refusals are one line."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.models import resnet50

from models.video_video.feature_extractor import (RegionFeatureExtractor, build_region_extractor, imagenet_normalise,
                                                  load_resnet50)
from models.video_video.pca import PCA_KEYS, load_pca
from modules.engine.errors import cli
from scripts import fit_pca as script

DIMS, SIZE = 8, 64


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """The command in this process as `python -m scripts.fit_pca` runs it: (exit code, stdout, stderr)."""
    code = 0
    try:
        cli(script.main, list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(frames folder: 3 videos x 3 noisy 80x60 JPEGs, a random torchvision ResNet-50 state dict file)."""
    root = tmp_path_factory.mktemp("fit_pca")
    rng = np.random.default_rng(0)
    for video in ("a", "b", "c"):
        (root / "frames" / video).mkdir(parents=True)
        for index in range(3):
            image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
            assert cv2.imwrite(str(root / "frames" / video / f"{index:06d}.jpg"), image)
    torch.manual_seed(0)
    torch.save(resnet50(weights=None).state_dict(), root / "resnet50.pth")
    return root / "frames", root / "resnet50.pth"


def argv(frames: Path, resnet: Path, out: Path, *extra: str) -> list[str]:
    return ["--frames", str(frames), "--resnet_path", str(resnet), "--out", str(out), "--samples", "5",
            "--dims", str(DIMS), "--size", str(SIZE), "--batch_size", "2", "--workers", "0", "--device", "cpu",
            *extra]


@pytest.mark.slow
def test_the_file_is_the_fit_of_the_sampled_frames(data, tmp_path, capsys):
    frames, resnet = data
    code, out, err = run(capsys, *argv(frames, resnet, tmp_path / "pca.npz"))
    assert code == 0, err
    assert f"wrote {tmp_path / 'pca.npz'}: {DIMS} axes from 45 region vectors of 5 frames" in out
    with np.load(tmp_path / "pca.npz") as written:
        assert sorted(written.files) == sorted(PCA_KEYS)
        assert written["mean"].shape == (3840,) and written["d"].shape == (DIMS,)
        assert written["V"].shape == (3840, DIMS)
        params = {key: written[key] for key in PCA_KEYS}
    sampled = script.sample_frames(script.find_frames(frames), 5, seed=0)
    assert len(sampled) == 5 and len({p.parent.name for p in sampled}) > 1
    pixels = torch.stack([script.FrameFiles(sampled, SIZE)[i] for i in range(5)])
    assert pixels.shape == (5, 3, SIZE, SIZE) and pixels.dtype == torch.uint8
    with torch.no_grad():
        vectors = RegionFeatureExtractor(load_resnet50(resnet)).region_vectors(imagenet_normalise(pixels))
    # The top eigenpairs of these vectors' covariance; its non-zero spectrum is the (45, 45) Gram matrix's.
    centred = vectors.reshape(-1, 3840).double().numpy()
    np.testing.assert_allclose(params["mean"], centred.mean(0), atol=1e-6)
    centred = centred - centred.mean(0)
    top = np.sort(np.linalg.eigvalsh(centred @ centred.T / 45))[::-1][:DIMS]
    np.testing.assert_allclose(params["d"], top, rtol=1e-4)
    covariance_v = centred.T @ (centred @ params["V"]) / 45
    np.testing.assert_allclose(covariance_v, params["V"] * params["d"], atol=1e-6 * top[0])
    extractor = build_region_extractor(resnet, tmp_path / "pca.npz", dims=DIMS)
    with torch.no_grad():
        features = extractor(imagenet_normalise(pixels))
    assert features.shape == (5, 9, DIMS)
    white = load_pca(tmp_path / "pca.npz", DIMS).whiten(vectors.reshape(-1, 3840)).double()
    assert torch.allclose(white.T @ white / 45, torch.eye(DIMS, dtype=torch.float64), atol=2e-2)
    # A rerun over the same frames with the same seed writes the same file; only --overwrite 1 may replace it.
    code, _, err = run(capsys, *argv(frames, resnet, tmp_path / "pca.npz"))
    assert code == 1 and err.strip().endswith("pca.npz already exists; pass --overwrite 1 to replace it")
    assert run(capsys, *argv(frames, resnet, tmp_path / "pca.npz", "--overwrite", "1"))[0] == 0
    with np.load(tmp_path / "pca.npz") as again:
        assert all(np.array_equal(again[key], params[key]) for key in PCA_KEYS)


@pytest.mark.parametrize("case, message", [
    ("no_resnet", "--resnet_path {root}/none.pth: ResNet-50 weight file not found"),
    ("no_frames", "--frames {root}/empty: no frames found (expected {root}/empty/<video>/<frame>.jpg)"),
    ("bad_out", "--out {root}/pca.pt: expected an .npz file name"),
    ("too_few", "9 region vectors from 1 frames cannot fit 9 axes (raise --samples or add frames)"),
    ("bad_image", "{root}/broken/v/000000.jpg: not a readable image"),
])
def test_refusals_are_one_line(data, tmp_path, capsys, case, message):
    frames, resnet = data
    out = tmp_path / "pca.npz"
    if case == "no_resnet":
        resnet = tmp_path / "none.pth"
    elif case == "no_frames":
        (tmp_path / "empty").mkdir()
        frames = tmp_path / "empty"
    elif case == "bad_out":
        out = tmp_path / "pca.pt"
    elif case == "bad_image":
        (tmp_path / "broken" / "v").mkdir(parents=True)
        (tmp_path / "broken" / "v" / "000000.jpg").write_bytes(b"not a jpeg")
        frames = tmp_path / "broken"
    extra = ("--samples", "1", "--dims", "9") if case == "too_few" else ()
    code, _, err = run(capsys, *argv(frames, resnet, out), *extra)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "batch" not in line]
    assert code == 1 and len(lines) == 1 and lines[0].endswith(f": error: {message.format(root=tmp_path)}"), err
    assert not out.exists()
