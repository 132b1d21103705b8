"""HAP-VR evaluation from an HDF5 feature file: the queries indexed once, the database streamed in chunks.

The reference reads one database video at a time and scores it against each query in turn. Here the database is
read by background workers, gathered into chunks of about `chunk_frames` frames, indexed (region attention) in one
call per chunk and scored against every query at once (`models.video_video.similarity_matrix`: padded blocks of
bounded size, the padding masked so a score equals the pair scored alone). Memory is bounded by the chunk and the
block, not by the database: what grows with it is the (queries, database) float32 score matrix, 90 MB for
FIVR-200K. Under torchrun each rank scores every `world_size`-th database video; the scores are gathered once.

Faithful to the reference: videos shorter than 4 frames are repeated (doubled) first, and a target longer than
`split_frames` (its `--batch_sz_sim`, 2048) is scored in pieces of that many frames whose scores are averaged.
Unlike it, a feature that is missing or unreadable is never dropped silently (see `missing_features`).
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from dataloaders.errors import DataError
from dataloaders.video_video.features import FeatureFile, read_videos
from models.video_video import HapvrNetwork, PackedVideos, index_videos, repeat_short_video, similarity_matrix
from models.video_video.scoring import DEFAULT_MAX_ELEMENTS
from modules.engine.distributed import DistInfo, gather_objects


@dataclass(frozen=True)
class ScoringOptions:
    """`workers` reading processes; `chunk_frames` database frames scored together; `split_frames` the reference's
    --batch_sz_sim; `allow_missing`: score without unusable features (listed) instead of stopping."""

    workers: int = 4
    chunk_frames: int = 8192
    split_frames: int = 2048
    max_elements: int = DEFAULT_MAX_ELEMENTS
    allow_missing: bool = False


class ScoreMatrix(Mapping):
    """{query: {video: score}} over a (queries, videos) float32 matrix, without a Python float per pair."""

    def __init__(self, queries: Sequence[str], videos: Sequence[str], scores: np.ndarray):
        self.queries, self.videos, self.scores = list(queries), list(videos), scores
        self._rows = {q: i for i, q in enumerate(self.queries)}
        self._columns = {v: j for j, v in enumerate(self.videos)}

    def __getitem__(self, query: str) -> "ScoreRow":
        return ScoreRow(self._columns, self.scores[self._rows[query]])

    def __iter__(self) -> Iterator[str]:
        return iter(self.queries)

    def __len__(self) -> int:
        return len(self.queries)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {q: {v: float(s) for v, s in zip(self.videos, self.scores[i])} for i, q in enumerate(self.queries)}


class ScoreRow(Mapping):
    def __init__(self, columns: dict[str, int], row: np.ndarray):
        self._columns, self._row = columns, row

    def __getitem__(self, video: str) -> float:
        return float(self._row[self._columns[video]])

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


@dataclass
class Scored:
    """The result of scoring a feature file: the scores, every video left out with its reason, timings."""

    similarities: ScoreMatrix
    left_out: dict[str, str] = field(default_factory=dict)
    database_videos: int = 0
    seconds: float = 0.0


def missing_features(file: FeatureFile, ids: Sequence[str], allow_missing: bool) -> dict[str, str]:
    """Ids absent from the file, found before any scoring; stops (DataError) unless `allow_missing`."""
    present = file.ids()
    missing = [i for i in dict.fromkeys(ids) if i not in present]
    if missing and not allow_missing:
        shown = ", ".join(repr(i) for i in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{file.path}: {len(missing)} of the benchmark's videos have no features: {shown}; pass "
                        "--allow_missing 1 to score without them (they are listed in the results)")
    return {i: "missing from the file" for i in missing}


def _usable(file: FeatureFile, video_id: str, reason: str | None, allow_missing: bool) -> bool:
    if reason is None:
        return True
    if not allow_missing:
        raise DataError(f"{file.path}: video {video_id!r}: {reason}; pass --allow_missing 1 to score without it "
                        "(it is listed in the results)")
    return False


def index_queries(network: HapvrNetwork, file: FeatureFile, ids: Sequence[str], options: ScoringOptions,
                  left_out: dict[str, str]) -> tuple[PackedVideos, list[str]]:
    """The usable queries, indexed once and kept on the network's device, with their ids."""
    videos, kept = [], []
    for video_id, features, reason in tqdm(read_videos(file, ids, options.workers), total=len(ids),
                                           desc="index queries", unit="video", leave=False):
        if _usable(file, video_id, reason, options.allow_missing):
            videos.append(features)
            kept.append(video_id)
        else:
            left_out[video_id] = reason
    if not kept:
        raise DataError(f"{file.path}: none of the {len(ids)} queries has usable features")
    return index_videos(network, videos), kept


def _pieces(video: torch.Tensor, split_frames: int) -> list[torch.Tensor]:
    """The reference scores a long target in pieces of `split_frames` frames (each repeated to 4 frames if short)."""
    return [repeat_short_video(video[start:start + split_frames]) for start in range(0, len(video), split_frames)]


@torch.no_grad()
def score_chunk(network: HapvrNetwork, queries: PackedVideos, videos: list[torch.Tensor],
                options: ScoringOptions) -> np.ndarray:
    """(Q, len(videos)) scores of raw target features (T_i, R, D) against indexed queries."""
    device = queries.frames.device
    raw = [repeat_short_video(v.to(device)) for v in videos]
    lengths = [len(v) for v in raw]
    indexed = network.index_video(torch.cat(raw))  # attention is per frame: one call for the chunk
    if max(lengths) <= options.split_frames:  # no piece to cut: the chunk is already packed
        return similarity_matrix(network, queries, PackedVideos.packed(indexed, lengths),
                                 options.max_elements).cpu().numpy()
    pieces, owner = [], []
    for i, video in enumerate(indexed.split(lengths)):
        parts = _pieces(video, options.split_frames)
        pieces += parts
        owner += [i] * len(parts)
    sims = similarity_matrix(network, queries, PackedVideos.from_videos(pieces), options.max_elements)
    owner_t = torch.tensor(owner, device=sims.device)
    total = torch.zeros(sims.shape[0], len(videos), device=sims.device).index_add_(1, owner_t, sims)
    counts = torch.bincount(owner_t, minlength=len(videos)).to(sims.dtype)
    return (total / counts).cpu().numpy()


def _chunks(file: FeatureFile, ids: Sequence[str], options: ScoringOptions, left_out: dict[str, str],
            bar: tqdm) -> Iterator[tuple[list[str], list[torch.Tensor]]]:
    """Usable database videos in chunks of about `chunk_frames` frames."""
    chunk_ids, chunk, frames = [], [], 0
    for video_id, features, reason in read_videos(file, ids, options.workers):
        bar.update(1)
        if not _usable(file, video_id, reason, options.allow_missing):
            left_out[video_id] = reason
            continue
        chunk_ids.append(video_id)
        chunk.append(features)
        frames += len(features)
        if frames >= options.chunk_frames:
            yield chunk_ids, chunk
            chunk_ids, chunk, frames = [], [], 0
    if chunk:
        yield chunk_ids, chunk


def score_feature_file(network: HapvrNetwork, file: FeatureFile, queries: Sequence[str], database: Sequence[str],
                       options: ScoringOptions, dist: DistInfo) -> Scored:
    """Every usable query against every usable database video; identical on every rank once gathered."""
    start = time.perf_counter()
    network.eval()
    left_out = missing_features(file, list(queries) + list(database), options.allow_missing)
    queries = [q for q in queries if q not in left_out]
    packed, query_ids = index_queries(network, file, queries, options, left_out)
    shard = [v for v in database if v not in left_out][dist.rank::dist.world_size]
    scored_ids, columns = [], []
    with tqdm(total=len(shard), desc="score database", unit="video", disable=not dist.is_main) as bar:
        for chunk_ids, chunk in _chunks(file, shard, options, left_out, bar):
            columns.append(score_chunk(network, packed, chunk, options))
            scored_ids += chunk_ids
    local = (scored_ids, np.concatenate(columns, 1) if columns else np.zeros((len(query_ids), 0), np.float32),
             left_out)
    parts = gather_objects(local)
    videos = [v for ids, _, _ in parts for v in ids]
    scores = np.concatenate([s for _, s, _ in parts], 1)
    for _, _, failures in parts:
        left_out.update(failures)
    return Scored(ScoreMatrix(query_ids, videos, scores), left_out, len(videos), time.perf_counter() - start)
