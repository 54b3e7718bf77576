"""`MotionBandPass`: the MBPM layer (operators.md §1.5), keys `conv_s.weight (C,1,k,k)`, `conv_t.weight (C,1,3)`."""
from __future__ import annotations

from typing import Optional

import torch

from ..ops.log_kernel import log_kernel, temporal_band_pass_init
from .. import reference
from ..ops.motion_band_pass import motion_band_pass
from ._args import band_pass_init
from ._impl import uses_reference
from ._layout import WeightHolder, to_frames, to_video


class MotionBandPass(torch.nn.Module):
    """out[n,c,t] = sum_j tw[c,j] * (K_c (x) pad(x[n,c, s*t + j - p_t])), K_c initialised to the
    normalised LoG(sigma, kernel_size) and tw to [-1, 2, -1]/3, both trainable per channel.

    temporal_stride=3 gives the BQN stem (temporal_padding "valid", T_out = T // 3); stride 1 the
    lateral filter (temporal_padding "replicate"). Input (N, C, T, H, W), or (N*T, C, H, W) with
    num_segments=T, in which case the output is (N*T_out, C, H, W).
    impl="reference" runs vidops.reference.motion_band_pass (conv2d, permute, conv1d as the
    authors' bpf.py) instead of the fused op.
    """

    impl = "vidops"

    def __init__(self, channels: int, sigma: float = 1.1, kernel_size: int = 9, temporal_stride: int = 1,
                 spatial_padding: str = "reflect", temporal_padding: Optional[str] = None,
                 num_segments: Optional[int] = None, backend: Optional[str] = None):
        super().__init__()
        band_pass_init(type(self).__name__, channels, sigma, kernel_size)
        self.channels, self.kernel_size, self.sigma = channels, kernel_size, sigma
        self.temporal_stride = temporal_stride
        self.spatial_padding = spatial_padding
        self.temporal_padding = temporal_padding or ("valid" if temporal_stride == 3 else "replicate")
        self.num_segments, self.backend = num_segments, backend
        k = log_kernel(sigma, kernel_size)
        self.conv_s = WeightHolder(k.expand(channels, 1, kernel_size, kernel_size).clone())
        self.conv_t = WeightHolder(temporal_band_pass_init().expand(channels, 1, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = to_video(x, self.num_segments, type(self).__name__)
        if uses_reference(self):
            out = reference.motion_band_pass(video, self.conv_s.weight, self.conv_t.weight, self.temporal_stride,
                                             self.spatial_padding, self.temporal_padding)
        else:
            out = motion_band_pass(video, self.conv_s.weight, self.conv_t.weight, self.temporal_stride,
                                   self.spatial_padding, self.temporal_padding, backend=self.backend)
        return out if x.dim() == 5 else to_frames(out)

    def extra_repr(self) -> str:
        return (f"{self.channels}, sigma={self.sigma}, kernel_size={self.kernel_size}, "
                f"temporal_stride={self.temporal_stride}, spatial_padding={self.spatial_padding!r}, "
                f"temporal_padding={self.temporal_padding!r}")
