"""Temporal Squeeze Network, type (a) of thesis 3.2 / the TSP paper: temporal squeeze pooling at
the input squeezes K frames into D "squeezed images", a 2-D ResNet-50 classifies each, the logits
are averaged.

    y, l_proj = tsp(clip)          (N, 3, D, H, W) squeezed frames and the projection loss (N,)
    logits = mean over the D frames of classifier(y)

The training loss adds beta * l_proj.mean() to the classification loss (beta = 10 in the paper,
kept as the attribute `beta`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.temporal_squeeze import TemporalSqueezePooling
from ._common import check_impl, clip_frames, set_impl, video_to_frames
from .tsm import FrameClassifier


class TeSNet(nn.Module):
    """TeSNet ResNet-50. Input (N, 3, K, H, W) or (N, K*3, H, W); forward returns
    (logits (N, num_classes), l_proj (N,)). Submodules `tsp` (vidops.nn.TemporalSqueezePooling)
    and `classifier` (ResNet-50 per frame without temporal shift, TSN keys base_model.*, new_fc.*)."""

    beta = 10.0

    def __init__(self, num_classes: int, K: int = 10, D: int = 3, dropout: float = 0.5, impl: str = "vidops"):
        super().__init__()
        check_impl(impl, type(self).__name__)
        self.K, self.D = K, D
        self.tsp = TemporalSqueezePooling(K, D)
        self.classifier = FrameClassifier(num_classes, D, dropout, shift=False, impl=impl)
        set_impl(self, impl)

    def forward(self, x: torch.Tensor):
        clip = clip_frames(x, self.K, type(self).__name__)
        squeezed, l_proj = self.tsp(clip)
        logits = self.classifier(video_to_frames(squeezed)).view(clip.shape[0], self.D, -1).mean(1)
        return logits, l_proj


def tesnet_resnet50(num_classes: int, K: int = 10, D: int = 3, impl: str = "vidops", dropout: float = 0.5) -> TeSNet:
    """TeSNet: TSP (K frames -> D) before the first conv of a 2-D ResNet-50."""
    return TeSNet(num_classes, K, D, dropout, impl)
