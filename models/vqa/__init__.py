"""Video question answering: HBI with one answer classifier per level."""
from __future__ import annotations

from pathlib import Path

from models.clip.adapter import ClipConfig
from models.clip.loading import load_weights
from models.vqa.model import HBIQAModel


def load_qa_model(path: str | Path, num_answers: int, num_hidden_layers: int = 4, agg_module: str = "seqTransf",
                  **options) -> HBIQAModel:
    """`load_weights` for the VQA model; a checkpoint's classifiers must have `num_answers` outputs.
    `options`: those of `HBIQAModel` (`train_patch_embedding` among them)."""
    def build(config: ClipConfig) -> HBIQAModel:
        return HBIQAModel(config, num_answers, agg_module, num_hidden_layers, **options)
    return load_weights(path, build, "the VQA model")


__all__ = ["HBIQAModel", "load_qa_model"]
