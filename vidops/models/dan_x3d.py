"""Dynamic Appearance Net on X3D (thesis 3.5, Tables 3.6, 3.7, 3.10, 3.11): pixel-wise temporal
projection (PWTP, config #7) on every segment, the S dynamic-appearance frames as the clip of an
X3D-XS or X3D-M.

    segments: clip (N, 3, S*T, H, W) -> S segments of T consecutive frames
    pbar, enopr = pwtp(segment)                 dynamic appearance (3, H, W) and ENoPR per segment
    logits = X3D(pbar of the S segments as an S-frame clip)

DAN-X3D-XS: S = 4 segments of T = 8 frames into X3D-XS (4 x 160^2); DAN-X3D-M: S = 16 segments of
T = 3 frames into X3D-M (16 x 224^2). forward returns (logits (N, num_classes), enopr (N,)) as
DynamicAppearanceNet does; `joint_training_step` runs vidops.joint_training_step (thesis
Algorithm 1). X3D is a clip-level classifier, so the classifier that step sees
(`X3DSegmentClassifier`) gives every segment the clip's logits and the step's average consensus
returns them unchanged.

Size against thesis Table 3.6 (400 classes; multiply-adds of one view by `count_flops`):
DAN-X3D-XS 3,803,960 parameters (X3D-XS 3,794,274 + PWTP 9,686) and 0.70 G at 32 x 160^2
(X3D-XS 0.605 G; PWTP 0.09 G, of which its 9x9 stride-8 conv on the 32 frames 0.08 G), 0.96 G at
the 182^2 test crop; the thesis lists 3.34M and 0.8 G. DAN-X3D-M 3,800,219 parameters (PWTP with
T = 3: 5,945) and 4.98 G at 48 x 224^2 (X3D-M 4.73 G, PWTP 0.25 G), 6.50 G at 256^2; the thesis
lists 7.0 G. The X3D part is pytorchvideo's published model (3.79M parameters, 1.79M of them its
2048-wide head), which the thesis's 3.34M total is below, so the thesis counted a different
network or head (not stated); its multiply-adds match neither crop exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.pixelwise_temporal_projection import PixelWiseTemporalProjection
from ._common import check_impl, set_impl
from .dan import DynamicAppearanceNet
from .x3d import CONFIGS, X3D


class X3DSegmentClassifier(nn.Module):
    """An X3D over the dynamic appearance of S segments: (N*S, 3, H, W) frames (n-major) ->
    (N*S, num_classes), each segment's row the logits of its clip (so averaging over the S
    segments gives the clip's logits). `x3d` is the X3D (keys classifier.x3d.blocks.*)."""

    def __init__(self, x3d: X3D, num_segments: int):
        super().__init__()
        self.x3d, self.num_segments = x3d, num_segments

    def clip_logits(self, frames: torch.Tensor) -> torch.Tensor:
        S = self.num_segments
        if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] % S:
            raise ValueError(f"vidops.models.{type(self).__name__}: frames must be (N*{S}, 3, H, W), "
                             f"got shape {tuple(frames.shape)}")
        NS, C, H, W = frames.shape
        return self.x3d(frames.view(NS // S, S, C, H, W).transpose(1, 2))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        logits = self.clip_logits(frames)
        N, K = logits.shape
        return logits.unsqueeze(1).expand(N, self.num_segments, K).reshape(N * self.num_segments, K)


class DynamicAppearanceX3D(DynamicAppearanceNet):
    """DAN on X3D. Input: S*T frames, segments back to back, (N, 3, S*T, H, W) or (N, S*T*3, H, W);
    forward -> (logits (N, num_classes), enopr (N,)). Submodules `pwtp` and `classifier`; `clip`,
    `forward` and `joint_training_step` are DynamicAppearanceNet's."""

    def __init__(self, num_classes: int, variant: str = "x3d_xs", num_segments: int = 4, frames_per_segment: int = 8,
                 D: int = 1, dropout: float = 0.5, impl: str = "vidops"):
        nn.Module.__init__(self)   # DynamicAppearanceNet's __init__ builds a TSM classifier
        name = type(self).__name__
        check_impl(impl, name)
        if variant not in CONFIGS:
            raise ValueError(f"vidops.models.{name}: variant must be one of {tuple(CONFIGS)}, got {variant!r}")
        for arg, v, least in (("num_segments", num_segments, 1), ("frames_per_segment", frames_per_segment, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"vidops.models.{name}: {arg} must be an int >= {least}, got {v!r}")
        self.num_segments, self.frames_per_segment, self.D = num_segments, frames_per_segment, D
        _, crop, depth = CONFIGS[variant]
        self.pwtp = PixelWiseTemporalProjection(3, T=frames_per_segment, D=D)
        self.classifier = X3DSegmentClassifier(X3D(num_classes, depth, num_segments, crop, dropout, impl=impl),
                                               num_segments)
        set_impl(self, impl)

    def segment_logits(self, pbar: torch.Tensor, N: int) -> torch.Tensor:
        """X3D classifies the N clips of S dynamic-appearance frames as a whole."""
        return self.classifier.clip_logits(pbar)


def dan_x3d_xs(num_classes: int, num_segments: int = 4, frames_per_segment: int = 8, D: int = 1,
               impl: str = "vidops", dropout: float = 0.5) -> DynamicAppearanceX3D:
    """DAN-X3D-XS: PWTP (config #7) on num_segments segments of frames_per_segment frames, X3D-XS
    on the dynamic appearance (4 frames for the defaults: 32 input frames)."""
    return DynamicAppearanceX3D(num_classes, "x3d_xs", num_segments, frames_per_segment, D, dropout, impl)


def dan_x3d_m(num_classes: int, num_segments: int = 16, frames_per_segment: int = 3, D: int = 1,
              impl: str = "vidops", dropout: float = 0.5) -> DynamicAppearanceX3D:
    """DAN-X3D-M: PWTP (config #7) on 16 segments of 3 frames (48 input frames), X3D-M on the 16
    dynamic-appearance frames."""
    return DynamicAppearanceX3D(num_classes, "x3d_m", num_segments, frames_per_segment, D, dropout, impl)
