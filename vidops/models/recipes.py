"""The thesis's training recipe as optimizer parameter groups, and partial BatchNorm.

    opt = torch.optim.SGD(vidops.models.param_groups(model, lr=0.01, weight_decay=1e-4), momentum=0.9)
    vidops.models.freeze_bn(model)        # fine-tuning: every BatchNorm but the first frozen

Groups (thesis 3.6.1 and 5.5.1, TSN's recipe): the classification layer trains at 5x the learning
rate and 5x the weight decay of the rest; L2 regularisation applies only to the weights of the
convolutions and of the linear layers (every parameter of two or more dimensions: nn.Conv*,
nn.Linear, the depthwise and region convolutions of vidops.nn); BatchNorm (and other
normalisation) parameters, biases (one-dimensional parameters) and the band-pass filters (the LoG
and temporal taps of the motion band-pass stems and laterals) train without it. Frozen parameters (requires_grad=False, e.g. RNL's 0/1 mask) are left out.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _band_pass_types() -> tuple:
    from ..nn.busy_quiet import BusyQuietSplit
    from ..nn.motion_band_pass import MotionBandPass

    return (MotionBandPass, BusyQuietSplit)


def classifier_modules(model: nn.Module) -> list:
    """The model's classification layers: `model.classifier_modules()` when the model defines it,
    else the last nn.Linear registered (TSN's `new_fc`, BQN's shared `base_model.fc`, the
    X3D head's projection), as [(name, module)]."""
    if hasattr(model, "classifier_modules") and callable(model.classifier_modules):
        return list(model.classifier_modules())
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"vidops.models.param_groups: {type(model).__name__} has no nn.Linear classifier; "
                         f"pass classifier=[names]")
    return [linears[-1]]


def param_groups(model: nn.Module, lr: float, weight_decay: float, classifier_lr_mult: float = 5.0,
                 classifier: Optional[Union[str, Sequence[str]]] = None, band_pass_lr_mult: float = 1.0) -> list:
    """Optimizer parameter groups of the thesis's recipe (see the module docstring):

        "weights"            conv / linear weights (>= 2-D)  lr,                       weight_decay
        "no_decay"           norms, biases (1-D)             lr,                       0
        "band_pass"          band-pass filter taps           lr * band_pass_lr_mult,   0
        "classifier_weight"  the classifier's weight         lr * classifier_lr_mult,  weight_decay * classifier_lr_mult
        "classifier_bias"    the classifier's bias           lr * classifier_lr_mult,  0

    classifier: the classification layers' module names (default: `classifier_modules(model)`).
    band_pass_lr_mult: the authors' BQN code trains the band-pass stem at 5x; the thesis text
    does not say, so 1 by default. Every trainable parameter lands in exactly one group; empty
    groups are left out. Each group has a "name" key (optimizers keep extra keys).
    """
    for arg, v in (("lr", lr), ("weight_decay", weight_decay), ("classifier_lr_mult", classifier_lr_mult),
                   ("band_pass_lr_mult", band_pass_lr_mult)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"vidops.models.param_groups: {arg} must be a non-negative number, got {v!r}")
    if classifier is None:
        heads = {n for n, _ in classifier_modules(model)}
    else:
        heads = {classifier} if isinstance(classifier, str) else set(classifier)
        missing = heads - {n for n, _ in model.named_modules()}
        if missing:
            raise ValueError(f"vidops.models.param_groups: no module named {sorted(missing)} in {type(model).__name__}")
    band_pass = _band_pass_types()
    groups = {k: [] for k in ("weights", "no_decay", "band_pass", "classifier_weight", "classifier_bias")}
    seen = set()
    for mname, module in model.named_modules():
        in_head = any(mname == h or mname.startswith(h + ".") for h in heads)
        in_band_pass = isinstance(module, band_pass)
        for pname, p in module.named_parameters(recurse=in_band_pass):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if in_band_pass:
                groups["band_pass"].append(p)
            elif in_head:
                groups["classifier_weight" if p.dim() >= 2 else "classifier_bias"].append(p)
            elif p.dim() >= 2 and not isinstance(module, _NORMS):
                groups["weights"].append(p)
            else:
                groups["no_decay"].append(p)
    settings = {
        "weights": (lr, weight_decay),
        "no_decay": (lr, 0.0),
        "band_pass": (lr * band_pass_lr_mult, 0.0),
        "classifier_weight": (lr * classifier_lr_mult, weight_decay * classifier_lr_mult),
        "classifier_bias": (lr * classifier_lr_mult, 0.0),
    }
    return [{"params": ps, "lr": settings[k][0], "weight_decay": settings[k][1], "name": k}
            for k, ps in groups.items() if ps]


def _batchnorms(module: nn.Module) -> list:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _first_backbone_bn(model: nn.Module) -> Optional[str]:
    """The name of the first BatchNorm of the backbone: of the first ResNet trunk (TSN's
    `base_model`, DAN's and TeSNet's `classifier.base_model`) when the model has one, else the
    model's first BatchNorm."""
    for tname, t in model.named_modules():
        if all(hasattr(t, a) for a in ("conv1", "bn1", "layer1", "layer4")):
            bns = _batchnorms(t)
            if bns:
                return f"{tname}.{bns[0][0]}" if tname else bns[0][0]
    bns = _batchnorms(model)
    return bns[0][0] if bns else None


def _keep_eval(module: nn.Module, args) -> None:
    module.training = False  # model.train() sets it back; the hook undoes that before each forward


def freeze_bn(model: nn.Module, partial: bool = True) -> list:
    """Freeze BatchNorm for fine-tuning: running statistics instead of batch statistics (also
    after model.train(): a forward pre-hook keeps the layer in eval mode) and the affine weight
    and bias out of training (requires_grad=False, so param_groups leaves them out). With
    partial=True (the authors' "partial BN", TSN's recipe) the first BatchNorm of the backbone
    keeps training (see `_first_backbone_bn`: the stem's bn1; in BQN the Quiet stem's, the Busy
    stem's d_bn1 is frozen as in the authors' code). Returns the names of the frozen layers.
    Call it before building the optimizer."""
    keep = _first_backbone_bn(model) if partial else None
    frozen = []
    for name, m in _batchnorms(model):
        if name == keep:
            continue
        m.eval()
        for p in (m.weight, m.bias):
            if p is not None:
                p.requires_grad_(False)
        if not getattr(m, "_vidops_frozen_bn", False):
            m.register_forward_pre_hook(_keep_eval)
            m._vidops_frozen_bn = True
        frozen.append(name)
    return frozen


def trainable(params: Iterable[torch.nn.Parameter]) -> int:
    """The number of trainable values among `params`."""
    return sum(p.numel() for p in params if p.requires_grad)
