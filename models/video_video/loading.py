"""Reading HAP-VR checkpoints: `{"args": argparse.Namespace, "model": state dict, ...}` as the reference's train.py
saves them, or a plain state dict. The pickle is read with torch's weights-only unpickler, which rebuilds tensors
and plain containers; argparse.Namespace is the one class admitted beside them, and nothing else runs."""
from __future__ import annotations

import argparse
import contextlib
import pickle
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Union

import torch

from models.video_video.config import HapvrConfig
from models.video_video.network import HapvrNetwork
from models.weights import CheckpointError, check_strict

Source = Union[str, Path, dict]
# The reference ViSiL constructor's defaults, for train.py arguments a checkpoint lacks.
_VISIL_DEFAULTS = {"dims": 512, "f_topk_rate": 0.1, "v_topk_rate": 0.1}
# Reference options this network does not implement, with the value it does.
_UNSUPPORTED = {"binarization": False, "attention_norm": False, "symmetric": False, "batch_norm": False,
                "mlp": False, "similarity_network": "ViSiL"}
_CHAMFER_RATES = {"TopKChamfer": None, "Chamfer": 0.0}  # plain Chamfer: the single best match (k = 1)


def _admit_namespace():
    """Admits argparse.Namespace to the weights-only unpickler for one load (torch >= 2.5), else for the process."""
    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals([argparse.Namespace])
    torch.serialization.add_safe_globals([argparse.Namespace])
    return contextlib.nullcontext()


def read_checkpoint(path: Union[str, Path]) -> Any:
    """The unpickled content of a checkpoint file: tensors, plain containers and argparse.Namespace only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with _admit_namespace():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        what = f"it holds {found.group(1)}" if found else "it holds other Python objects or is corrupt"
        raise CheckpointError(f"{path}: refused to unpickle ({what}; only tensors, plain containers and "
                              "argparse.Namespace are read)") from None
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:200] if str(error) else ''})") from None


def split_checkpoint(content: Any, name: str) -> tuple[Optional[dict], dict[str, torch.Tensor]]:
    """(train.py arguments as a dict or None, the network's state dict) of a checkpoint or a plain state dict."""
    if not isinstance(content, dict):
        raise CheckpointError(f"{name}: expected a checkpoint dict or a state dict, got {type(content).__name__}")
    args = None
    if isinstance(content.get("model"), dict):
        args = content.get("args")
        if isinstance(args, argparse.Namespace):
            args = vars(args)
        elif args is not None and not isinstance(args, dict):
            raise CheckpointError(f"{name}: 'args' is a {type(args).__name__}, expected an argparse.Namespace")
        content = content["model"]
    bad = [key for key, value in content.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{name}: {bad[0]} is not a tensor (expected a state dict or a checkpoint with a "
                              "'model' entry)")
    if content and all(key.startswith("module.") for key in content):
        content = {key[len("module."):]: value for key, value in content.items()}
    return args, content


def config_from_args(args: Optional[dict], state: dict[str, torch.Tensor], name: str, **options) -> HapvrConfig:
    """Architecture options: `options` (HapvrConfig fields) win over the checkpoint's train.py `args`, which win
    over the published defaults; `attention` and `dims` must agree with the tensors."""
    allowed = {f.name for f in fields(HapvrConfig)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise CheckpointError(f"{name}: unknown option {unknown[0]} (expected one of {', '.join(sorted(allowed))})")
    has_attention = "attention.transform.weight" in state
    values: dict[str, Any] = {"attention": has_attention}
    if has_attention:
        values["dims"] = int(state["attention.transform.weight"].shape[1])
    if args is not None:
        for key, expected in _UNSUPPORTED.items():
            if key in args and args[key] != expected:
                raise CheckpointError(f"{name}: args.{key} = {args[key]!r} is not supported (expected {expected!r})")
        from_args = {key: args.get(key, default) for key, default in _VISIL_DEFAULTS.items()}
        for level, module_key in (("f_topk_rate", "f2f_sim_module"), ("v_topk_rate", "v2v_sim_module")):
            module = args.get(module_key, "TopKChamfer")
            if module not in _CHAMFER_RATES:
                raise CheckpointError(f"{name}: args.{module_key} = {module!r} is not supported (expected one of "
                                      f"{', '.join(_CHAMFER_RATES)})")
            if _CHAMFER_RATES[module] is not None:
                from_args[level] = _CHAMFER_RATES[module]
        if "attention" in args and bool(args["attention"]) != has_attention:
            raise CheckpointError(f"{name}: args.attention = {args['attention']} but the state dict "
                                  f"{'has' if has_attention else 'lacks'} attention.transform.weight")
        if has_attention and int(from_args["dims"]) != values["dims"]:
            raise CheckpointError(f"{name}: args.dims = {from_args['dims']} but attention.transform.weight is "
                                  f"{tuple(state['attention.transform.weight'].shape)}")
        values = {**from_args, **values}
    values.update(options)
    try:
        return HapvrConfig(**values)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: {error}") from None


def load_network_weights(network: HapvrNetwork, state: dict[str, torch.Tensor], name: str) -> None:
    """Strict load: every key of the network present with its shape, nothing else."""
    attention = " with attention" if network.attention is not None else ""
    check_strict(network.state_dict(), state, name, "the network", f"a HAP-VR similarity network{attention}")
    network.load_state_dict({key: value.float() for key, value in state.items()})


def load_hapvr_model(source: Source, **options) -> HapvrNetwork:
    """A `HapvrNetwork` with the weights of `source`: a checkpoint path, a checkpoint dict `{"args", "model"}` or
    a plain state dict, under the reference's key names. Options (`f_topk_rate`, `v_topk_rate`, ...) come from the
    checkpoint's `args` unless given here; a plain state dict takes the published values
    (f_topk_rate 0.1, v_topk_rate 0.03). Problems raise a one-line `CheckpointError` naming the source and key."""
    if isinstance(source, (str, Path)):
        name, content = str(source), read_checkpoint(source)
    elif isinstance(source, dict):
        name, content = "state dict", source
    else:
        raise CheckpointError(f"expected a path or a state dict, got {type(source).__name__}")
    args, state = split_checkpoint(content, name)
    network = HapvrNetwork(config_from_args(args, state, name, **options))
    load_network_weights(network, state, name)
    return network

