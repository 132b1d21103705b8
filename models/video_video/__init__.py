"""HAP-VR video-to-video retrieval: the ViSiL-style similarity network over region features, its checkpoint
loading, evaluation scoring of many videos, the DINO frame pseudo-labels and the training losses."""
from __future__ import annotations

from models.video_video.config import MIN_FRAMES, HapvrConfig, topk_count
from models.video_video.loading import load_hapvr_model, read_checkpoint
from models.video_video.losses import (HapvrLoss, frame_ap_loss, infonce_loss, quad_linear, similarity_regularization,
                                       sshn_loss, video_ap_loss)
from models.video_video.network import HapvrNetwork
from models.video_video.pseudo_labels import pseudo_labels
from models.video_video.scoring import PackedVideos, index_videos, repeat_short_video, similarity_matrix

__all__ = ["HapvrConfig", "HapvrLoss", "HapvrNetwork", "MIN_FRAMES", "PackedVideos", "frame_ap_loss",
           "index_videos", "infonce_loss", "load_hapvr_model", "pseudo_labels", "quad_linear", "read_checkpoint",
           "repeat_short_video", "similarity_matrix", "similarity_regularization", "sshn_loss", "topk_count",
           "video_ap_loss"]
