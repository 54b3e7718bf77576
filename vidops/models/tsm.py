"""TSM ResNet-50 (Lin et al.; temporal-shift-module ops/models.py with shift_place="blockres"):
a ResNet-50 whose every bottleneck shifts its residual-branch input in time (the first conv is
wrapped by `vidops.nn.TemporalShift`), per-frame logits averaged over the segments.

The module layout is that of TSM's TSN wrapper, so its checkpoints load unchanged:
`base_model.*` is the ResNet-50 with `base_model.layerL.i.conv1.net.weight` for the wrapped
conv, and `base_model.fc` replaced by a Dropout (no keys); the classifier is `new_fc.*`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.temporal_shift import TemporalShift
from ._common import check_impl, clip_frames
from .resnet import ResNet, resnet50

STAGES = ("layer1", "layer2", "layer3", "layer4")


def make_temporal_shift(net: ResNet, num_segments: int, fold_div: int = 8, impl: str = "vidops") -> ResNet:
    """Wrap conv1 of every bottleneck of every stage in a TemporalShift (TSM's residual shift)."""
    for stage in STAGES:
        for block in getattr(net, stage):
            block.conv1 = TemporalShift(block.conv1, num_segments, fold_div, impl)
    return net


class FrameClassifier(nn.Module):
    """Per-frame logits of a TSN-style 2-D network: new_fc(base_model(frames)).

    base_model: ResNet-50 (TSM-shifted when shift=True) with its fc replaced by Dropout(dropout);
    new_fc: Linear(2048, num_classes), weight ~ N(0, 0.001^2) and bias 0 as TSN initialises it.
    Input (N*T, 3, H, W) with T = num_segments frames per clip, n-major; output (N*T, num_classes).
    """

    def __init__(self, num_classes: int, num_segments: int, dropout: float = 0.5, shift: bool = True,
                 fold_div: int = 8, impl: str = "vidops"):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"vidops.models.{name}: num_classes must be a positive int, got {num_classes!r}")
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"vidops.models.{name}: num_segments must be a positive int, got {num_segments!r}")
        check_impl(impl, name)
        self.num_classes, self.num_segments, self.shift = num_classes, num_segments, shift
        base = resnet50()
        if shift:
            make_temporal_shift(base, num_segments, fold_div, impl)
        feature_dim = base.fc.in_features
        base.fc = nn.Dropout(dropout)
        self.base_model = base
        self.new_fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.new_fc.weight, 0, 0.001)
        nn.init.constant_(self.new_fc.bias, 0)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4 or frames.shape[1] != 3 or (self.shift and frames.shape[0] % self.num_segments):
            raise ValueError(f"vidops.models.{type(self).__name__}: frames must be (N*{self.num_segments}, 3, H, W), "
                             f"got shape {tuple(frames.shape)}")
        return self.new_fc(self.base_model(frames))


class TSMResNet50(FrameClassifier):
    """TSM ResNet-50 on a clip of num_segments frames: (N, 3, T, H, W) or (N, T*3, H, W) ->
    (N, num_classes), the mean over the segments of the per-frame logits (average consensus)."""

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, num_classes) per-frame logits of a clip."""
        clip = clip_frames(x, self.num_segments, type(self).__name__)
        N, _, T, H, W = clip.shape
        logits = super().forward(clip.transpose(1, 2).reshape(N * T, 3, H, W))
        return logits.view(N, T, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(x).mean(1)


def tsm_resnet50(num_classes: int, num_segments: int = 8, impl: str = "vidops", dropout: float = 0.5,
                 fold_div: int = 8) -> TSMResNet50:
    """TSM ResNet-50 with TSM's TSN keys (320 state_dict entries; 24,327,632 parameters at 400
    classes). Input: a clip of num_segments frames."""
    return TSMResNet50(num_classes, num_segments, dropout, shift=True, fold_div=fold_div, impl=impl)
