"""Loading the authors' checkpoints into the vidops models."""
from __future__ import annotations

import os
from typing import Mapping, Union

import torch
from torch import nn

# {'state_dict': ...} as the authors' main.py and mmaction2 save, {'model_state': ...} as pytorchvideo's
# model zoo and SlowFast do, {'model': ...}
WRAPPER_KEYS = ("state_dict", "model_state", "model")


class CheckpointMismatchError(RuntimeError):
    """The state_dict's keys or shapes do not match the model's."""


def _unwrap(obj) -> Mapping:
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise TypeError(f"vidops.models.load_checkpoint: expected a state_dict (a mapping of names to tensors) "
                        f"or a {{'state_dict': ...}} / {{'model_state': ...}} wrapper, got {type(obj).__name__}")
    return obj


def strip_module_prefix(state_dict: Mapping) -> dict:
    """The state_dict with the leading `module.` of (Distributed)DataParallel removed from every key."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def _listing(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_checkpoint(model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping], strict: bool = True,
                    map_location="cpu", weights_only: bool = True):
    """Load a checkpoint of the authors' code (or a vidops state_dict) into `model`.

    Accepts a file path (read by torch.load with map_location and weights_only) or a state_dict;
    unwraps {'state_dict': ...}, {'model_state': ...} and {'model': ...} wrappers; strips the
    `module.` prefix of DataParallel checkpoints. A model may rename foreign keys first (the X3D
    models take pytorchvideo's, SlowFast's and mmaction2's names; what cannot be mapped is named
    in the error). The `base_model.` prefix is part of the models' own keys. With
    strict=True a mismatch raises CheckpointMismatchError listing the missing and unexpected keys
    (like torch's load_state_dict, the matching entries have been copied by then); a shape
    mismatch always raises. Returns torch's (missing_keys, unexpected_keys) result.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        obj = torch.load(path_or_state_dict, map_location=map_location, weights_only=weights_only)
    else:
        obj = path_or_state_dict
    state_dict = strip_module_prefix(_unwrap(obj))
    name = type(model).__name__
    notes = []
    convert = getattr(model, "_vidops_checkpoint_keys", None)
    if callable(convert):
        state_dict, notes = convert(state_dict)
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:
        raise CheckpointMismatchError(f"vidops.models.load_checkpoint: the checkpoint does not fit {name}: {e}") from e
    if strict and (result.missing_keys or result.unexpected_keys):
        lines = [f"vidops.models.load_checkpoint: the checkpoint's keys do not match {name}'s"]
        if result.missing_keys:
            lines.append(f"{len(result.missing_keys)} missing (in the model, not in the checkpoint): "
                         f"{_listing(result.missing_keys)}")
        if result.unexpected_keys:
            lines.append(f"{len(result.unexpected_keys)} unexpected (in the checkpoint, not in the model): "
                         f"{_listing(result.unexpected_keys)}")
        own = set(model.state_dict())
        if any(k.startswith("base_model.") for k in own) and not any(k.startswith("base_model.") for k in state_dict):
            lines.append("the checkpoint has no 'base_model.' keys: it may be a bare backbone; prefix its keys "
                         "with 'base_model.' (the authors' TSN wrapper) to load it")
        lines += notes
        raise CheckpointMismatchError("; ".join(lines))
    return result
