"""Busy X3D-M: the motion band-pass stem in front of one X3D-M, as busy-quiet-net's
src/busy_x3d.py builds it (the Busy pathway of BQN alone, thesis Table 5.2's "MBPM + X3D-M").

    busy = mbpf1(clip)       9x9 LoG (sigma 1.1) on every frame, [-1, 2, -1]/3 over each triplet
                             (stride 3): 3S frames -> S frames at full size
    logits = X3D-M(busy)     pytorchvideo's X3D-M, head pool built for 16 x 224^2

Keys as the authors' TSN-wrapped model (565 entries: `base_model.blocks.*` = pytorchvideo's X3D-M,
`base_model.mbpf1.*`); 3,794,526 parameters at 400 classes. The head pool follows X3D's rule
(vidops.models.x3d): kernel (16, 7, 7) clipped to the feature map, so inputs below 224 also run
(the authors' fixed AvgPool3d needs at least 224).
"""
from __future__ import annotations

import torch

from ..nn.motion_band_pass import MotionBandPass
from ._common import check_impl, clip_frames, set_impl
from .x3d import CONFIGS, X3D, _positive_int


class BusyX3DNet(X3D):
    """The authors' `base_model`: X3D-M's `blocks` and the stem filter `mbpf1`; a clip
    (N, 3, 3S, H, W) -> logits."""

    def __init__(self, num_classes: int, dropout: float = 0.5, impl: str = "vidops"):
        frames, crop, depth = CONFIGS["x3d_m"]
        super().__init__(num_classes, depth, frames, crop, dropout, "pytorchvideo", impl)
        self.mbpf1 = MotionBandPass(3, sigma=1.1, kernel_size=9, temporal_stride=3)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        busy = self.mbpf1(clip)
        if not clip.is_contiguous() and clip.is_contiguous(memory_format=torch.channels_last_3d):
            busy = busy.contiguous(memory_format=torch.channels_last_3d)
        return super().forward(busy)

    _vidops_checkpoint_keys = None      # the authors' keys only (no SlowFast / mmaction2 renaming)


class BusyX3D(torch.nn.Module):
    """Busy X3D-M on 3 * num_segments frames: (N, 3, 3S, H, W) or the TSN layout (N, 9S, H, W)
    -> logits (N, num_classes). The authors' input: [0, 1] pixels normalised by mean 0.45, std
    0.225, 224^2 crops."""

    crop_size = 224
    input_mean, input_std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)

    def __init__(self, num_classes: int, num_segments: int = 16, dropout: float = 0.5, impl: str = "vidops"):
        super().__init__()
        name = type(self).__name__
        _positive_int("num_classes", name, num_classes)
        _positive_int("num_segments", name, num_segments)
        check_impl(impl, name)
        self.num_classes, self.num_segments = num_classes, num_segments
        self.base_model = BusyX3DNet(num_classes, dropout, impl)
        set_impl(self, impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_model(clip_frames(x, 3 * self.num_segments, type(self).__name__))


def busy_x3d_m(num_classes: int, num_segments: int = 16, impl: str = "vidops", dropout: float = 0.5) -> BusyX3D:
    """Busy X3D-M (MBPM stem + X3D-M) with the authors' keys (565 entries). Input: 3 * num_segments
    frames (48 for 16 segments), the authors' 224^2 crops or any other size."""
    return BusyX3D(num_classes, num_segments, dropout, impl)
