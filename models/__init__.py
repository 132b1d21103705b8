"""Models: CLIP adapter, temporal aggregation, interaction heads, the retrieval model and HBI."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from models.clip_adapter import ClipConfig, clip_config_from_state_dict, strip_clip_state_dict
from models.hbi import HBIModel
from models.retrieval import RetrievalModel, rename_keys
from models.vqa import HBIQAModel
from models.weights import CheckpointError, read_state_dict, split_clip, summarise_keys

log = logging.getLogger(__name__)

# --model values: a RetrievalModel with that interaction head, or HBI.
MODELS = ("wti", "meanp", "meanmax", "hbi")


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
    """Builds a model from a weight file, its sizes read off the tensors; options as `build_retrieval_model`.

    - OpenAI CLIP file (TorchScript archive or state dict): CLIP loaded, the new layers initialised as the
      reference does (seqTransf from CLIP's first text blocks).
    - Repository checkpoint (`clip.*` keys, reference or own names): every weight the model needs must be there;
      keys the model does not use (another model's heads) are reported in the log and in `model.unused_keys`.
    """
    def build(config: ClipConfig) -> RetrievalModel:
        return build_retrieval_model(config, model, agg_module, num_hidden_layers,
                                     train_patch_embedding=train_patch_embedding, **hbi_options)
    return load_weights(path, build, f"model {model!r}")


def load_qa_model(path: str | Path, num_answers: int, num_hidden_layers: int = 4, agg_module: str = "seqTransf",
                  **options) -> HBIQAModel:
    """`load_retrieval_model` for the VQA model; a checkpoint's classifiers must have `num_answers` outputs.
    `options`: those of `HBIQAModel` (`train_patch_embedding` among them)."""
    def build(config: ClipConfig) -> HBIQAModel:
        return HBIQAModel(config, num_answers, agg_module, num_hidden_layers, **options)
    return load_weights(path, build, "the VQA model")


def load_weights(path: str | Path, build: Callable[[ClipConfig], RetrievalModel], what: str) -> RetrievalModel:
    """Reads a CLIP file or a repository checkpoint and builds the model (`build(config)`) its tensors fit."""
    state = read_state_dict(path)
    clip_state, rest = split_clip(state)
    try:
        config = clip_config_from_state_dict(clip_state)
    except KeyError as error:
        raise CheckpointError(f"{path}: {error.args[0]}") from None
    net = build(config)
    net.init_from_clip(strip_clip_state_dict(clip_state))
    net.unused_keys = []
    if rest:
        _check_shapes(path, net, rest)
        missing, unexpected = net.load_reference_state_dict(rest)
        missing = [k for k in missing if not k.startswith("clip.")]
        if missing:
            raise CheckpointError(f"{path}: checkpoint lacks weights {what} needs: {', '.join(missing)}")
        net.unused_keys = unexpected
        if unexpected:
            log.warning("%s: %d keys not used by %s: %s", path, len(unexpected), what, summarise_keys(unexpected))
    return net


def _check_shapes(path: str | Path, net: RetrievalModel, state: dict) -> None:
    expected = net.reference_state_dict()
    for key, value in rename_keys(state, net.reference_prefixes).items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(expected[key].shape)}")


__all__ = ["ClipConfig", "RetrievalModel", "HBIModel", "HBIQAModel", "CheckpointError", "build_retrieval_model",
           "load_retrieval_model", "load_qa_model", "load_weights"]
