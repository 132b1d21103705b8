"""Music-video retrieval (BPVMR): pre-extracted music and video features with beat tracks, fused and encoded per
clip, scored with a feature term plus a cross-attention-pooled beat term, trained with the CLIP loss."""
from __future__ import annotations

from models.music_video.loading import infer_sizes, load_music_video_model, read_music_video_state
from models.music_video.model import BEAT_ORIENTATIONS, LOGIT_SCALE, MusicVideoModel
from models.music_video.encoders import ATTENTIONS


def build_music_video_model(embed_dim: int = 256, num_heads: int = 4, num_layers: int = 6, num_segments: int = 30,
                            attention: str = "time", **options) -> MusicVideoModel:
    """A randomly initialised model at the published sizes by default; `options` as `MusicVideoModel`."""
    return MusicVideoModel(embed_dim, num_heads, num_layers, num_segments, attention, **options)


__all__ = ["ATTENTIONS", "BEAT_ORIENTATIONS", "LOGIT_SCALE", "MusicVideoModel", "build_music_video_model",
           "infer_sizes", "load_music_video_model", "read_music_video_state"]
