"""The BPVMR music-video retrieval model: per-clip embeddings, the two-term similarity, the CLIP loss.

B clips, S segments (30), D = embed_dim. Music clip m and video clip v are scored as

    sims[m, v] = cos(music_data[m], video_data[v]) + beat_weight * cos(pool(music_beat[m] | video_beat_pool[v]),
                                                                          video_beat_pool[v])

where `pool` is the cross-attention beat pooling (`BeatPool`), which depends on the pair. The reference computes the
beat term as a video x music matrix and adds it to the music x video feature term untransposed
(`beat_orientation="reference"`); "fixed" transposes it first.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.losses import symmetric_infonce
from models.music_video.beat_pool import BeatPool
from models.music_video.encoders import (DEFAULT_ENCODER_DROPOUT, DEFAULT_FFN_WIDTH, SegmentEncoder,
                                         beat_projection, encode_branch)

BEAT_ORIENTATIONS = ("fixed", "reference")
# The reference's CLIP temperature: exp(4.6052) ~ 100, fixed (not learned).
LOGIT_SCALE = math.exp(4.6052)
DEFAULT_BEAT_WEIGHT = 0.8
# Scoring memory bound: elements of the per-pair intermediates of one chunk of music rows.
CHUNK_ELEMENTS = 1 << 25

Embeddings = dict[str, torch.Tensor]


class MusicVideoModel(nn.Module):
    """Music (B, S, 768) and video (B, S, 512) features with their beat tracks (B, S, 25) -> embeddings, scores.

    `attention`: "time" (each clip attends over its own segments) or "batch" (the reference: segments attend
    across the clips of a batch). `beat_orientation`: the orientation of the beat term in the training loss.
    """

    # The model contract (modules/engine/trainer.py). No pretrained backbone: every parameter trains at --lr.
    input_keys = ("music", "music_beat", "video", "video_beat")
    backbone_prefix = None

    def __init__(self, embed_dim: int = 256, num_heads: int = 4, num_layers: int = 6, num_segments: int = 30,
                 attention: str = "time", *, music_dim: int = 768, video_dim: int = 512, beat_dim: int = 25,
                 beat_hidden: int = 84, ffn_width: int = DEFAULT_FFN_WIDTH,
                 encoder_dropout: float = DEFAULT_ENCODER_DROPOUT, pool_dropout: float = 0.3,
                 beat_weight: float = DEFAULT_BEAT_WEIGHT, beat_orientation: str = "fixed"):
        super().__init__()
        _check_orientation(beat_orientation)
        self.num_segments = num_segments
        self.attention = attention
        self.beat_weight = beat_weight
        self.beat_orientation = beat_orientation

        def encoder(width: int, layers: int) -> SegmentEncoder:
            return SegmentEncoder(width, layers, num_heads, ffn_width, encoder_dropout, attention)
        # Defined in the reference's order, so that state dicts list their keys as its checkpoints do.
        self.music_transformer = encoder(2 * embed_dim, num_layers)
        self.video_transformer = encoder(2 * embed_dim, num_layers)
        self.music_linear = nn.Linear(music_dim, embed_dim)
        self.video_linear = nn.Linear(video_dim, embed_dim)
        self.music_beat_transformer = encoder(embed_dim, num_layers)
        self.video_beat_transformer = encoder(embed_dim, num_layers + 2)
        self.music_beat_linear = beat_projection(beat_dim, beat_hidden, embed_dim)
        self.video_beat_linear = beat_projection(beat_dim, beat_hidden, embed_dim)
        self.beat_pool = BeatPool(embed_dim, num_heads, pool_dropout)

    @property
    def input_spec(self) -> dict:
        """Nothing for the data pipeline to adapt to: the inputs are pre-extracted features."""
        return {}

    def _check_inputs(self, name: str, features: torch.Tensor, beats: torch.Tensor, feature_dim: int) -> None:
        expected = (self.num_segments, feature_dim)
        beat_dim = self.music_beat_linear[0].in_features
        if features.ndim != 3 or tuple(features.shape[1:]) != expected:
            raise ValueError(f"{name}: expected (B, {expected[0]}, {expected[1]}) features, got {tuple(features.shape)}")
        if tuple(beats.shape) != (features.shape[0], self.num_segments, beat_dim):
            raise ValueError(f"{name}_beat: expected ({features.shape[0]}, {self.num_segments}, {beat_dim}) "
                             f"beat vectors, got {tuple(beats.shape)}")

    def encode_music(self, music: torch.Tensor, music_beat: torch.Tensor) -> Embeddings:
        """(B, S, 768) features, (B, S, 25) beats -> {"music_data": (B, S*2D), "music_beat": (B, S, D)}."""
        self._check_inputs("music", music, music_beat, self.music_linear.in_features)
        data, beat = encode_branch(music.float(), music_beat.float(), self.music_linear, self.music_beat_linear,
                                   self.music_transformer, self.music_beat_transformer)
        return {"music_data": data, "music_beat": beat}

    def encode_video(self, video: torch.Tensor, video_beat: torch.Tensor) -> Embeddings:
        """(B, S, 512) features, (B, S, 25) beats -> {"video_data": (B, S*2D), "video_beat_pool": (B, D)},
        the beat pool being the mean of the encoded beats over the segments."""
        self._check_inputs("video", video, video_beat, self.video_linear.in_features)
        data, beat = encode_branch(video.float(), video_beat.float(), self.video_linear, self.video_beat_linear,
                                   self.video_transformer, self.video_beat_transformer)
        return {"video_data": data, "video_beat_pool": beat.mean(dim=1)}

    def pooled_music_beats(self, music: Embeddings, video: Embeddings) -> torch.Tensor:
        """(Nm, Nv, D): music clip m's beats pooled with video v's beat pool as the query (every pair at once)."""
        return self.beat_pool(music["music_beat"], video["video_beat_pool"])

    def similarity_terms(self, music: Embeddings, video: Embeddings,
                         chunk_size: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature, beat) terms, both (Nm, Nv), music rows, the beat term in the fixed orientation.

        Per-clip work (normalisation, key/value and query projections) is done once per clip; the pairwise beat
        pooling runs over chunks of `chunk_size` music rows (default: sized to bound memory)."""
        feature = F.normalize(music["music_data"], dim=-1) @ F.normalize(video["video_data"], dim=-1).T
        video_pool = video["video_beat_pool"]
        queries = self.beat_pool.prepare_queries(video_pool)
        video_unit = F.normalize(video_pool, dim=-1)
        music_beat = music["music_beat"]
        rows = chunk_size or _default_chunk(video_pool.shape[0], music_beat.shape[1], video_pool.shape[1],
                                            queries.shape[1])
        beat = []
        for start in range(0, music_beat.shape[0], rows):
            keys, values = self.beat_pool.prepare_keys(music_beat[start:start + rows])
            pooled = F.normalize(self.beat_pool.pool(queries, keys, values), dim=-1)   # (c, Nv, D)
            beat.append(torch.einsum("mvd,vd->mv", pooled, video_unit))
        beat = torch.cat(beat) if beat else feature.new_zeros(feature.shape)
        return feature, beat

    def similarity(self, music: Embeddings, video: Embeddings, beat_orientation: str = "fixed",
                   beat_weight: Optional[float] = None, chunk_size: Optional[int] = None) -> torch.Tensor:
        """(Nm, Nv) music-row similarities: feature term + beat_weight (0.8) x beat term.

        `beat_orientation="reference"` adds the beat term transposed, as the published code does (row m then
        scores every video with the beat pool of video m, m's ground-truth partner); it needs Nm == Nv."""
        _check_orientation(beat_orientation)
        feature, beat = self.similarity_terms(music, video, chunk_size)
        if beat_orientation == "reference":
            if feature.shape[0] != feature.shape[1]:
                raise ValueError(f"beat_orientation 'reference' adds a video x music matrix to a music x video one: "
                                 f"it needs as many music as video clips, got {tuple(feature.shape)}")
            beat = beat.T
        return feature + (self.beat_weight if beat_weight is None else beat_weight) * beat

    def loss(self, music: Embeddings, video: Embeddings, beat_orientation: Optional[str] = None) -> torch.Tensor:
        """The reference's CLIP loss: with logits = exp(4.6052) x similarity (B, B) whose diagonal holds the true
        pairs, the mean of the music->video (row) and video->music (column) cross-entropies."""
        sims = self.similarity(music, video, beat_orientation or self.beat_orientation)
        return symmetric_infonce(sims, LOGIT_SCALE)

    def training_losses(self, music: torch.Tensor, music_beat: torch.Tensor, video: torch.Tensor,
                        video_beat: torch.Tensor, gather: Optional[Callable] = None) -> dict[str, torch.Tensor]:
        """CLIP loss over the global batch: clips are embedded locally, their embeddings (the encoded music beats
        included: beat pooling is per pair) gathered with `gather` (gradient-correct; None in one process), then
        every music clip is scored against every video. Returns {"total": loss}."""
        gather = gather or _identity
        music_emb = {key: gather(value) for key, value in self.encode_music(music, music_beat).items()}
        video_emb = {key: gather(value) for key, value in self.encode_video(video, video_beat).items()}
        return {"total": self.loss(music_emb, video_emb)}

    forward = training_losses

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under the reference's key names (the module names are the reference's)."""
        return self.state_dict()

    def log_values(self) -> dict[str, float]:
        return {"logit_scale": LOGIT_SCALE}


def _check_orientation(beat_orientation: str) -> None:
    if beat_orientation not in BEAT_ORIENTATIONS:
        raise ValueError(f"beat_orientation {beat_orientation!r}: expected one of {', '.join(BEAT_ORIENTATIONS)}")


def _default_chunk(num_videos: int, num_segments: int, embed_dim: int, num_heads: int) -> int:
    """Music rows per chunk so that the attention weights and the pooled pairs stay under CHUNK_ELEMENTS."""
    per_row = max(1, num_videos * (num_heads * num_segments + 4 * embed_dim))
    return max(1, CHUNK_ELEMENTS // per_row)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
