"""HAP-VR evaluation from an HDF5 feature file: every score equals the reference's way (one pair at a time), the
chunking changes nothing, long targets are scored in averaged pieces, and unusable features are never dropped
silently."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from dataloaders.errors import DataError
from dataloaders.synthetic.video_video import generate_synthetic_benchmark
from dataloaders.video_video.features import FeatureFile
from models.video_video import HapvrConfig, HapvrNetwork, repeat_short_video
from modules.engine.distributed import DistInfo
from modules.evaluation.video_video import ScoringOptions, score_feature_file

ONE = DistInfo(0, 1, 0, torch.device("cpu"), True)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("hapvr")
    generate_synthetic_benchmark(root, num_queries=3, num_distractors=4, per_label=1, min_frames=6, max_frames=30)
    with h5py.File(root / "fivr_5k.hdf5", "a") as f:  # a video shorter than 4 frames: repeated, as the reference does
        f.create_dataset("short", data=f[next(iter(f.keys()))][:3])
    return root


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    net = HapvrNetwork(HapvrConfig(dims=512)).eval()
    with torch.no_grad():  # spread the comparator's outputs so scores are not all clipped or equal
        for conv in (net.comparator_module.conv1, net.comparator_module.conv2, net.comparator_module.conv3):
            conv.weight.mul_(3)
    return net


def ids(root) -> tuple[list[str], list[str]]:
    with h5py.File(root / "fivr_5k.hdf5", "r") as f:
        keys = sorted(f.keys())
    return keys[:3], keys


def reference_way(network, file: FeatureFile, queries, database, split_frames: int = 2048) -> np.ndarray:
    """One database video at a time against each query in turn, long targets in averaged pieces."""
    out = np.zeros((len(queries), len(database)))
    with torch.no_grad():
        for j, target_id in enumerate(database):
            target = repeat_short_video(torch.from_numpy(file.read(target_id)))
            for i, query_id in enumerate(queries):
                query = repeat_short_video(torch.from_numpy(file.read(query_id)))
                pieces = [repeat_short_video(target[s:s + split_frames]) for s in range(0, len(target), split_frames)]
                out[i, j] = np.mean([float(network.video_similarity(query, p)) for p in pieces])
    return out


def as_matrix(scored, queries, database) -> np.ndarray:
    return np.array([[scored.similarities[q][v] for v in database] for q in queries])


@pytest.mark.parametrize("chunk_frames, split_frames", [(1, 2048), (100000, 2048), (64, 16)])
def test_every_score_equals_the_pair_scored_alone(bench, network, chunk_frames, split_frames):
    file = FeatureFile(bench / "fivr_5k.hdf5")
    queries, database = ids(bench)
    options = ScoringOptions(workers=0, chunk_frames=chunk_frames, split_frames=split_frames)
    scored = score_feature_file(network, file, queries, database, options, ONE)
    expected = reference_way(network, file, queries, database, split_frames)
    np.testing.assert_allclose(as_matrix(scored, queries, database), expected, atol=1e-5)
    assert scored.database_videos == len(database) and not scored.left_out
    assert np.ptp(expected) > 0.1  # the scores are spread, so equal matrices mean something


def test_background_workers_read_the_same_scores(bench, network):
    file = FeatureFile(bench / "fivr_5k.hdf5")
    queries, database = ids(bench)
    inline = score_feature_file(network, file, queries, database, ScoringOptions(workers=0), ONE)
    pooled = score_feature_file(network, file, queries, database, ScoringOptions(workers=2), ONE)
    np.testing.assert_array_equal(as_matrix(pooled, queries, database), as_matrix(inline, queries, database))


@pytest.fixture()
def damaged(bench, tmp_path):
    """A copy of the feature file with one video deleted and one of the wrong shape."""
    path = tmp_path / "damaged.hdf5"
    shutil.copy(bench / "fivr_5k.hdf5", path)
    queries, database = ids(bench)
    with h5py.File(path, "a") as f:
        del f[database[5]]
        data = f[database[6]][:]
        del f[database[6]]
        f.create_dataset(database[6], data=data[:, :4])
    return path, queries, database


def test_a_missing_feature_stops_the_run_naming_it(damaged, network):
    path, queries, database = damaged
    with pytest.raises(DataError, match=rf"{path}: 1 of the benchmark's videos have no features: '{database[5]}'"):
        score_feature_file(network, FeatureFile(path), queries, database, ScoringOptions(workers=0), ONE)


def test_a_malformed_feature_stops_the_run_naming_it(damaged, network):
    path, queries, database = damaged
    survivors = [v for v in database if v != database[5]]
    with pytest.raises(DataError, match=rf"video '{database[6]}': shape \(\d+, 4, 512\), expected \(T, 9, 512\)"):
        score_feature_file(network, FeatureFile(path), queries, survivors, ScoringOptions(workers=0), ONE)


def test_allow_missing_scores_without_them_and_lists_them(damaged, network):
    path, queries, database = damaged
    scored = score_feature_file(network, FeatureFile(path), queries, database,
                                ScoringOptions(workers=0, allow_missing=True), ONE)
    assert scored.left_out == {database[5]: "missing from the file",
                               database[6]: "shape " + str(h5py.File(path)[database[6]].shape) +
                               ", expected (T, 9, 512)"}
    assert set(scored.similarities[queries[0]]) == set(database) - {database[5], database[6]}
