"""`BusyQuietSplit`: the BQN input split (operators.md §1.3) as a module; keys `conv_s.weight`, `conv_t.weight`
(the reference stem's `mbpf1.*` when registered as `mbpf1`)."""
from __future__ import annotations

from typing import Optional

import torch

from .. import reference
from ..ops.busy_quiet import busy_quiet
from ._impl import uses_reference
from ..ops.log_kernel import log_kernel, temporal_band_pass_init
from ._args import band_pass_init
from ._layout import WeightHolder, to_frames


class BusyQuietSplit(torch.nn.Module):
    """(busy, quiet) of a clip of S segments x 3 frames.

    Input (N, C, 3S, H, W) -> two (N, C, S, ., .) tensors; or the TSN layout (N*S, 3*C, H, W)
    (3 frames stacked frame-major on channels, as busy-quiet-net feeds its stem) with
    num_segments=S -> two (N*S, C, ., .) tensors.

    impl="reference" runs vidops.reference.busy_quiet (the authors' stem: conv2d, permute, conv1d
    with stride 3, and a slice of the clip) instead of the fused op.
    """

    impl = "vidops"

    def __init__(self, channels: int = 3, sigma: float = 1.1, kernel_size: int = 9, quiet: str = "first",
                 quiet_scale: Optional[float] = None, num_segments: Optional[int] = None,
                 backend: Optional[str] = None):
        super().__init__()
        band_pass_init(type(self).__name__, channels, sigma, kernel_size)
        self.channels, self.quiet, self.quiet_scale = channels, quiet, quiet_scale
        self.num_segments, self.backend = num_segments, backend
        k = log_kernel(sigma, kernel_size)
        self.conv_s = WeightHolder(k.expand(channels, 1, kernel_size, kernel_size).clone())
        self.conv_t = WeightHolder(temporal_band_pass_init().expand(channels, 1, 3).clone())

    def forward(self, x: torch.Tensor):
        if x.dim() == 4:
            if self.num_segments is None:
                raise ValueError("vidops.nn.BusyQuietSplit: a 4-D (N*S, 3*C, H, W) input needs num_segments")
            NS, C3, H, W = x.shape
            C, S = self.channels, self.num_segments
            if C3 != 3 * C or NS % S:
                raise ValueError(f"vidops.nn.BusyQuietSplit: expected (N*{S}, {3 * C}, H, W), got {tuple(x.shape)}")
            clip = x.view(NS // S, S, 3, C, H, W).permute(0, 3, 1, 2, 4, 5).reshape(NS // S, C, 3 * S, H, W)
        else:
            clip = x
        if uses_reference(self):
            busy, quiet = reference.busy_quiet(clip, self.conv_s.weight, self.conv_t.weight, self.quiet,
                                               self.quiet_scale)
        else:
            busy, quiet = busy_quiet(clip, self.conv_s.weight, self.conv_t.weight, self.quiet, self.quiet_scale,
                                     backend=self.backend)
        if x.dim() == 4:
            return to_frames(busy), to_frames(quiet)
        return busy, quiet
