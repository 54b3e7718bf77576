"""`PixelWiseTemporalProjection`: the PWTP module (operators.md §3.3, thesis 3.5.2, config #7 of table 3.13)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .. import reference
from ..ops.pixelwise_temporal_projection import pixelwise_temporal_projection
from ..ops.temporal_relation import temporal_relation
from ._impl import uses_reference
from ._layout import to_video


def dct_basis(T: int, D: int, dtype=torch.float32) -> torch.Tensor:
    """(T, D) orthonormal DCT-II columns: column 0 is the constant 1/sqrt(T), then cos(pi (t + 1/2) d / T)."""
    t = torch.arange(T, dtype=torch.float64) + 0.5
    cols = [torch.full((T,), 1.0 / math.sqrt(T), dtype=torch.float64)]
    cols += [math.sqrt(2.0 / T) * torch.cos(math.pi * t * d / T) for d in range(1, D)]
    return torch.stack(cols, 1).to(dtype)


class Bottleneck(torch.nn.Module):
    """x + GELU(fc2(GELU(fc1(BN(x))))), per position (1x1 convolutions)."""

    def __init__(self, width: int, ratio: float):
        super().__init__()
        hidden = max(1, int(round(width * ratio)))
        self.norm = torch.nn.BatchNorm2d(width)
        self.fc1 = torch.nn.Conv2d(width, hidden, 1)
        self.fc2 = torch.nn.Conv2d(hidden, width, 1)

    def forward(self, x):
        return x + F.gelu(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class PixelWiseTemporalProjection(torch.nn.Module):
    """Pixel-wise temporal projection: (dynamic appearance (N, C, H, W), ENoPR (N,)) of a T-frame clip.

        x~ = F(x)                     spatial conv k x k, stride s, C' channels, on every frame (eq. 3.8)
        u  = temporal_relation(x~)    (N, T(T-1)/2, h, w)                                     (eq. 3.9)
        basis = MLP(u)                (N, T*D, h, w), per position                            (eq. 3.10)
        pbar, enopr = pixelwise_temporal_projection(x, basis)  (basis upsampled in the kernel) (3.11-3.13)

    MLP (thesis fig. 3.14, table 3.13): fc_in: Linear(T(T-1)/2 -> r T(T-1)/2) + GELU; `num_blocks`
    bottleneck blocks [BatchNorm, Linear(w -> beta w) + GELU, Linear(beta w -> w) + GELU, residual];
    fc_out: Linear(w -> T*D). Defaults are config #7 (k=9, s=8, C'=24, r=2, B=1, beta=1/4):
    9,686 parameters for in_channels=3, T=8, D=1 (the thesis's 9.7k).

    Initialisation: fc_out starts from the orthonormal DCT-II columns of length T (column 0
    constant) as its bias and a small random weight (default init x 0.1), so A has independent
    columns from the start, its span holds the constant vector (the static appearance is removed
    at once) and A still depends on the input.

    Input (N, C, T, H, W), or (N*T, C, H, W) with num_segments=T. For S segments of T frames
    (the Dynamic Appearance Net), fold the segments into the batch first.

    impl="reference" runs vidops.reference.temporal_relation and .pixelwise_temporal_projection
    (plain PyTorch: upsample the basis, solve the normal equations per pixel) instead of the ops.
    """

    impl = "vidops"

    def __init__(self, in_channels: int = 3, T: int = 8, D: int = 1, conv_channels: int = 24,
                 kernel_size: int = 9, stride: int = 8, padding: Optional[int] = None, expansion: float = 2,
                 num_blocks: int = 1, bottleneck_ratio: float = 0.25, eps: float = 1e-6,
                 num_segments: Optional[int] = None, backend: Optional[str] = None):
        super().__init__()
        if not (1 <= D < T):
            raise ValueError(f"vidops.nn.PixelWiseTemporalProjection: need 1 <= D < T, got D={D}, T={T}")
        self.in_channels, self.T, self.D, self.eps = in_channels, T, D, eps
        self.stride, self.padding = stride, (kernel_size - 1) // 2 if padding is None else padding
        self.num_segments, self.backend = num_segments, backend
        pairs = T * (T - 1) // 2
        width = max(1, int(round(expansion * pairs)))
        self.conv = torch.nn.Conv2d(in_channels, conv_channels, kernel_size, stride, self.padding, bias=True)
        self.fc_in = torch.nn.Conv2d(pairs, width, 1)
        self.blocks = torch.nn.Sequential(*[Bottleneck(width, bottleneck_ratio) for _ in range(num_blocks)])
        self.fc_out = torch.nn.Conv2d(width, T * D, 1)
        with torch.no_grad():
            self.fc_out.weight.mul_(0.1)
            self.fc_out.bias.copy_(dct_basis(T, D).reshape(T * D))

    def basis(self, video: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> the low-resolution basis (N, T*D, h, w)."""
        N, C, T, H, W = video.shape
        if T != self.T or C != self.in_channels:
            raise ValueError(f"vidops.nn.PixelWiseTemporalProjection: expected {self.in_channels} channels and "
                             f"T={self.T} frames, got shape {tuple(video.shape)}")
        w = self.conv.weight.unsqueeze(2)                              # (C', C, 1, k, k): F on every frame
        f = F.conv3d(video, w, self.conv.bias, stride=(1, self.stride, self.stride),
                     padding=(0, self.padding, self.padding))          # (N, C', T, h, w)
        u = reference.temporal_relation(f) if uses_reference(self) else temporal_relation(f, backend=self.backend)
        return self.fc_out(self.blocks(F.gelu(self.fc_in(u))))

    def forward(self, x: torch.Tensor):
        video = to_video(x, self.num_segments, type(self).__name__)
        if uses_reference(self):
            return reference.pixelwise_temporal_projection(video, self.basis(video), self.eps)
        return pixelwise_temporal_projection(video, self.basis(video), self.eps, backend=self.backend)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, T={self.T}, D={self.D}, eps={self.eps}"
