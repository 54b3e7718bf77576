"""ImageNet initialisation of the ResNet-50 models from torchvision's state_dict.

    report = vidops.models.load_imagenet_backbone(model, "resnet50-0676ba61.pth")
    print(report)        # what was loaded, what was left at its own initialisation

The authors' code builds torchvision's ImageNet ResNet-50 and only then wraps it (TSM's temporal
shift around each bottleneck's conv1, RNL's wrapper around five bottlenecks, BQN's two pathways),
so every wrapped layer starts from the ImageNet weights and every layer the thesis adds starts
from its own initialisation. This function does the same on a built model: each ResNet-50 trunk
in the model (a module with conv1, bn1 and layer1..layer4: the TSN `base_model`, DAN's and
TeSNet's `classifier.base_model`, BQN's two-pathway `base_model`) takes torchvision's keys under
these renamings:

    layerL.i.conv1.*        -> layerL.i.conv1.net.*       (TSM shift wrapper)
    layerL.i.*              -> layerL.i.block.*           (RNL / NL wrapper)
    conv1.*, bn1.*          -> conv1.*, bn1.* and d_conv1.*, d_bn1.*   (BQN: Quiet and Busy stems)
    layerL.i.*              -> layerL.i.path_c.* and layerL.i.path_f.*  (BQN: both pathways)

torchvision's `fc` (the 1000 ImageNet classes) is never loaded: the classifiers (`new_fc`, BQN's
`base_model.fc`) keep their initialisation, as do the thesis's layers (band-pass stems and
laterals, attention blocks, PWTP, TSP). X3D models have no ResNet trunk: they take Kinetics
checkpoints through `load_checkpoint`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Union

import torch
from torch import nn

from .checkpoint import CheckpointMismatchError, _unwrap, strip_module_prefix

_STEM = ("conv1", "bn1")
_STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclass
class ImageNetLoadReport:
    """What `load_imagenet_backbone` did. loaded: {model key: ImageNet key}; left: the model's
    keys it did not write (their own initialisation); unused: ImageNet keys no model key took
    (torchvision's fc)."""
    model: str
    loaded: dict = field(default_factory=dict)
    left: list = field(default_factory=list)
    unused: list = field(default_factory=list)
    trunks: list = field(default_factory=list)
    values: int = 0   # the floating-point values loaded

    def left_groups(self) -> dict:
        """{pattern: number of tensors} of the keys left, the block indices replaced by '*'."""
        groups: dict = {}
        for k in self.left:
            module = k.rsplit(".", 1)[0] if "." in k else k
            pattern = re.sub(r"\.\d+(?=\.|$)", ".*", module)
            groups[pattern] = groups.get(pattern, 0) + 1
        return groups

    def __str__(self) -> str:
        sources = len(set(self.loaded.values()))
        lines = [f"load_imagenet_backbone({self.model}): loaded {len(self.loaded)} tensors "
                 f"({self.values:,} values) from {sources} ImageNet entries into {', '.join(self.trunks)}"]
        if self.unused:
            lines.append(f"  not used (ImageNet classifier): {', '.join(self.unused)}")
        groups = self.left_groups()
        lines.append(f"  left at their own initialisation: {len(self.left)} tensors"
                     + (" in" if groups else ""))
        for pattern, n in groups.items():
            lines.append(f"    {pattern} ({n})")
        return "\n".join(lines)


def _is_trunk(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in _STEM + _STAGES) and isinstance(getattr(m, "conv1"), nn.Conv2d)


def _sources(rest: str) -> str:
    """The torchvision key a trunk-relative model key takes, or '' (none: a layer of its own)."""
    parts = rest.split(".")
    if parts[0] in ("d_conv1", "d_bn1"):                       # BQN's Busy stem
        parts[0] = parts[0][2:]
    if parts[0] in _STAGES and len(parts) > 2:
        block = parts[:2]
        tail = parts[2:]
        if tail[0] in ("path_c", "path_f", "block"):           # BQN pathways, RNL / NL wrapper
            tail = tail[1:]
        if len(tail) > 2 and tail[0] == "conv1" and tail[1] == "net":   # TSM shift wrapper
            tail = [tail[0]] + tail[2:]
        parts = block + tail
    return ".".join(parts)


def _read(path_or_state_dict) -> dict:
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        obj = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
    else:
        obj = path_or_state_dict
    return strip_module_prefix(_unwrap(obj))


def load_imagenet_backbone(model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping],
                           verbose: bool = False) -> ImageNetLoadReport:
    """Initialise every ResNet-50 trunk of `model` from torchvision's ImageNet ResNet-50
    state_dict (a `resnet50-*.pth` path or the mapping; `module.` prefixes and {'state_dict': ...}
    wrappers are accepted), as the authors' code does (see the module docstring).

    Every ImageNet entry but `fc.*` must be taken by each trunk (else: CheckpointMismatchError,
    e.g. a ResNet-101 or ResNet-18 file), and shapes must match. `num_batches_tracked` is copied
    when the file has it. Returns the report (also printed with verbose=True).
    """
    name = type(model).__name__
    source = _read(path_or_state_dict)
    trunks = [(n, m) for n, m in model.named_modules() if _is_trunk(m)]
    if not trunks:
        raise CheckpointMismatchError(
            f"vidops.models.load_imagenet_backbone: {name} has no ResNet-50 trunk (conv1, bn1, layer1..layer4); "
            f"X3D models take Kinetics checkpoints through vidops.models.load_checkpoint")
    own = model.state_dict()
    report = ImageNetLoadReport(name, trunks=[n or "(the model)" for n, _ in trunks])
    updates, mismatched, used = {}, [], set()
    for trunk, _ in trunks:
        prefix = f"{trunk}." if trunk else ""
        taken = set()
        for key, value in own.items():
            if not key.startswith(prefix):
                continue
            src = _sources(key[len(prefix):])
            if src.startswith("fc.") or src not in source:
                continue
            if tuple(source[src].shape) != tuple(value.shape):
                mismatched.append(f"{key} {tuple(value.shape)} <- {src} {tuple(source[src].shape)}")
                continue
            updates[key] = source[src]
            report.loaded[key] = src
            taken.add(src)
        if mismatched:
            raise CheckpointMismatchError(
                f"vidops.models.load_imagenet_backbone: shapes differ: {'; '.join(mismatched[:10])}")
        missing = sorted(k for k in source if not k.startswith("fc.") and k not in taken)
        if missing:
            raise CheckpointMismatchError(
                f"vidops.models.load_imagenet_backbone: {len(missing)} ImageNet entries fit nowhere in {name}'s "
                f"trunk {trunk or '(the model)'} (not a torchvision ResNet-50 state_dict?): "
                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        used |= taken
    with torch.no_grad():
        for key, value in updates.items():
            own[key].copy_(value)   # state_dict() tensors share storage with the model's
    report.values = sum(v.numel() for v in updates.values() if v.is_floating_point())
    report.unused = sorted(k for k in source if k not in used)
    counter = "num_batches_tracked"  # absent from torchvision's files: not "left" for a loaded BN
    report.left = [k for k in own if k not in updates
                   and not (k.endswith(counter) and k[:-len(counter)] + "weight" in updates)]
    if verbose:
        print(report)
    return report
