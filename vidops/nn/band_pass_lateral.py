"""`BandPassLateral`: BQN's band-pass lateral connection (BPLC, operators.md §1.5).

    Q' = Q + BN_down(Conv1x1_down(B))
    B' = B + BN_up(Conv1x1_up(MBPM_lateral(Q)))

a simultaneous update (both read the pre-update Q and B). BN gamma = beta = 0 at init, so the
block is an exact identity then. Keys: `mbpf.conv_s.weight`, `mbpf.conv_t.weight`,
`d_up.0.weight`, `d_up.1.*`, `d_down.0.weight`, `d_down.1.*` as in busy-quiet-net's DuoPath.

impl="reference" runs a 5-D input as the authors' code does, on (N*T, C, H, W) frames with the
2-D Conv1x1 + BatchNorm2d modules (its band-pass filter has its own `impl`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._impl import uses_reference
from ._layout import to_frames, to_video
from .motion_band_pass import MotionBandPass


def _conv_bn(channels: int) -> torch.nn.Sequential:
    seq = torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 1, bias=False), torch.nn.BatchNorm2d(channels))
    torch.nn.init.kaiming_normal_(seq[0].weight, mode="fan_out", nonlinearity="relu")
    torch.nn.init.zeros_(seq[1].weight)
    torch.nn.init.zeros_(seq[1].bias)
    return seq


def _apply_conv_bn_5d(seq: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The 2-D Conv1x1 + BatchNorm2d of the reference applied to (N, C, T, H, W) without a copy to
    frames: the 1x1 conv is a conv3d with a (1,1,1) kernel, BN the same per-channel statistics."""
    conv, bn = seq[0], seq[1]
    y = F.conv3d(x, conv.weight.unsqueeze(2))
    use_batch = bn.training or bn.running_mean is None
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, use_batch, momentum, bn.eps)


class BandPassLateral(torch.nn.Module):
    impl = "vidops"

    def __init__(self, channels: int, sigma: float = 0.9, kernel_size: int = 7,
                 num_segments: Optional[int] = None, backend: Optional[str] = None):
        super().__init__()
        self.num_segments = num_segments
        self.mbpf = MotionBandPass(channels, sigma, kernel_size, temporal_stride=1,
                                   temporal_padding="replicate", backend=backend)
        self.d_up = _conv_bn(channels)
        self.d_down = _conv_bn(channels)

    def forward(self, q: torch.Tensor, b: torch.Tensor):
        """(Q, B) -> (Q', B'); both (N, C, T, H, W), or (N*T, C, H, W) with num_segments."""
        for name, t in (("q", q), ("b", b)):
            if not isinstance(t, torch.Tensor) or t.dim() not in (4, 5):
                got = f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"vidops.nn.BandPassLateral: {name} must be (N, C, T, H, W) or "
                                 f"(N*T, C, H, W), got {got}")
        if q.shape != b.shape:
            raise ValueError(f"vidops.nn.BandPassLateral: q and b must have one shape, got "
                             f"{tuple(q.shape)} and {tuple(b.shape)}")
        if q.dim() == 4:
            band = to_frames(self.mbpf(to_video(q, self.num_segments, "BandPassLateral")))
            return q + self.d_down(b), b + self.d_up(band)
        if uses_reference(self):
            N, C, T, H, W = q.shape
            q4, b4 = to_frames(q), to_frames(b)
            band = to_frames(self.mbpf(q))
            video = lambda y: y.reshape(N, T, C, H, W).transpose(1, 2)  # noqa: E731
            return video(q4 + self.d_down(b4)), video(b4 + self.d_up(band))
        band = self.mbpf(q)
        return q + _apply_conv_bn_5d(self.d_down, b), b + _apply_conv_bn_5d(self.d_up, band)
