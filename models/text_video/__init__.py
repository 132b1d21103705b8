"""Text-video retrieval models: CLIP features, temporal aggregation, an interaction head; HBI on top.

`MODELS` is the registry behind `--model`: a `RetrievalModel` with that interaction head, or HBI.
"""
from __future__ import annotations

from pathlib import Path

from models.clip.adapter import ClipConfig
from models.clip.loading import load_weights
from models.text_video.hbi import HBIModel
from models.text_video.interaction import INTERACTIONS
from models.text_video.retrieval import RetrievalModel

MODELS = (*INTERACTIONS, "hbi")


def build_retrieval_model(clip_config: ClipConfig, model: str = "wti", agg_module: str = "seqTransf",
                          num_hidden_layers: int = 4, *, train_patch_embedding: bool = False,
                          **hbi_options) -> RetrievalModel:
    """A randomly initialised model of the given sizes (the demo trains one from scratch).

    `train_patch_embedding` (every model): train CLIP's `visual.conv1`, frozen by default as in the reference.
    `hbi_options` (model "hbi" only): `t_rate0 t_rate1 v_rate0 v_rate1 kl skl rate jitter` of `HBIModel`."""
    if model not in MODELS:
        raise ValueError(f"--model {model!r}: expected one of {', '.join(MODELS)}")
    if model == "hbi":
        return HBIModel(clip_config, agg_module, num_hidden_layers, train_patch_embedding=train_patch_embedding,
                        **hbi_options)
    if hbi_options:
        raise ValueError(f"options {', '.join(hbi_options)} apply to --model hbi only")
    return RetrievalModel(clip_config, model, agg_module, num_hidden_layers, train_patch_embedding)


def load_retrieval_model(path: str | Path, model: str = "wti", num_hidden_layers: int = 4,
                         agg_module: str = "seqTransf", *, train_patch_embedding: bool = False,
                         **hbi_options) -> RetrievalModel:
    """Builds a model from a weight file, its sizes read off the tensors (see `load_weights`); options as
    `build_retrieval_model`. The new layers of an OpenAI CLIP file start as the reference's (seqTransf from
    CLIP's first text blocks)."""
    def build(config: ClipConfig) -> RetrievalModel:
        return build_retrieval_model(config, model, agg_module, num_hidden_layers,
                                     train_patch_embedding=train_patch_embedding, **hbi_options)
    return load_weights(path, build, f"model {model!r}")


__all__ = ["MODELS", "HBIModel", "RetrievalModel", "build_retrieval_model", "load_retrieval_model"]
