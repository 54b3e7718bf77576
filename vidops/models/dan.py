"""Dynamic Appearance Net (thesis 3.5): pixel-wise temporal projection (PWTP, config #7) on every
segment, its dynamic appearance frames into a TSM ResNet-50, average consensus.

    segments: clip (N, 3, S*T, H, W) -> S segments of T consecutive frames
    pbar, enopr = pwtp(segment)          dynamic appearance (3, H, W) and ENoPR of each segment
    logits = mean over the S segments of classifier(pbar)     TSM ResNet-50 over the S frames

Training is joint (thesis Algorithm 1): alpha * ENoPR + (1 - alpha) * cross-entropy on the PWTP
parameters, cross-entropy on the classifier, alpha by MGDA; `DynamicAppearanceNet.joint_training_step`
runs one step with vidops.joint_training_step.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

from ..nn.pixelwise_temporal_projection import PixelWiseTemporalProjection
from ..training import joint_training_step
from ._common import check_impl, clip_frames, set_impl
from .tsm import FrameClassifier


class DynamicAppearanceNet(nn.Module):
    """DAN TSM ResNet-50. Input: S*T frames, the segments back to back, as (N, 3, S*T, H, W) or
    (N, S*T*3, H, W). forward returns (logits (N, num_classes), enopr (N,)), the ENoPR averaged
    over each clip's segments (its mean over the batch is the L1 of joint training).

    Submodules: `pwtp` (vidops.nn.PixelWiseTemporalProjection, in_channels 3, T, D) and
    `classifier` (TSM ResNet-50 per frame, TSN keys base_model.* and new_fc.*, so a TSM
    checkpoint loads into it)."""

    def __init__(self, num_classes: int, num_segments: int = 8, frames_per_segment: int = 4, D: int = 1,
                 dropout: float = 0.5, impl: str = "vidops"):
        super().__init__()
        check_impl(impl, type(self).__name__)
        if isinstance(frames_per_segment, bool) or not isinstance(frames_per_segment, int) or frames_per_segment < 2:
            raise ValueError(f"vidops.models.DynamicAppearanceNet: frames_per_segment must be an int >= 2, "
                             f"got {frames_per_segment!r}")
        self.num_segments, self.frames_per_segment, self.D = num_segments, frames_per_segment, D
        self.pwtp = PixelWiseTemporalProjection(3, T=frames_per_segment, D=D)
        self.classifier = FrameClassifier(num_classes, num_segments, dropout, shift=True, impl=impl)
        set_impl(self, impl)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """The input as a clip (N, 3, S*T, H, W)."""
        return clip_frames(x, self.num_segments * self.frames_per_segment, type(self).__name__)

    def forward(self, x: torch.Tensor):
        clip = self.clip(x)
        N, C, _, H, W = clip.shape
        S, T = self.num_segments, self.frames_per_segment
        segments = clip.reshape(N, C, S, T, H, W).transpose(1, 2).reshape(N * S, C, T, H, W)
        pbar, enopr = self.pwtp(segments)
        return self.segment_logits(pbar, N), enopr.view(N, S).mean(1)

    def segment_logits(self, pbar: torch.Tensor, N: int) -> torch.Tensor:
        """Clip logits (N, num_classes) from the dynamic appearance of the N*S segments: the
        frame classifier on each, averaged over the segments."""
        return self.classifier(pbar).view(N, self.num_segments, -1).mean(1)

    def joint_training_step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor, *,
                            alpha: Union[str, float, torch.Tensor] = "mgda",
                            criterion: Optional[Callable] = None) -> dict:
        """One joint training step (vidops.joint_training_step with this model's pwtp and
        classifier); the optimizer must hold all the model's parameters. Returns
        {"alpha", "l1", "l2"}."""
        return joint_training_step(self.pwtp, self.classifier, optimizer, self.clip(x), target, alpha=alpha,
                                   num_segments=self.num_segments, criterion=criterion)


def dan_tsm_resnet50(num_classes: int, num_segments: int = 8, frames_per_segment: int = 4, D: int = 1,
                     impl: str = "vidops", dropout: float = 0.5) -> DynamicAppearanceNet:
    """DAN: PWTP (config #7: 9x9/8 conv with 24 channels, MLP with one bottleneck block) on each of
    num_segments segments of frames_per_segment frames, TSM ResNet-50 on the dynamic appearance."""
    return DynamicAppearanceNet(num_classes, num_segments, frames_per_segment, D, dropout, impl)
