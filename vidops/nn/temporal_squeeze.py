"""`TemporalSqueezePooling`: the TSP layer (operators.md §4, thesis 3.2.1, TSP paper)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import reference
from ..ops.temporal_squeeze import temporal_squeeze
from ._impl import uses_reference
from ._layout import to_frames, to_video


def tent_basis(K: int, D: int, dtype=torch.float32) -> torch.Tensor:
    """(K, D) linear-interpolation ("tent") columns centred on D evenly spaced frames: positive,
    independent, summing to 1 in every row (so the constant vector is in their span)."""
    t = torch.arange(K, dtype=torch.float64)
    if D == 1:
        return torch.ones(K, 1, dtype=dtype)
    centres = torch.linspace(0, K - 1, D, dtype=torch.float64)
    step = (K - 1) / (D - 1)
    return (1 - (t[:, None] - centres[None, :]).abs() / step).clamp(min=0).to(dtype)


class TemporalSqueezePooling(torch.nn.Module):
    """Squeeze K frames into D: (squeezed frames (N, C, D, H, W), l_proj (N,)).

        z_k = mean of frame k over (C, H, W)                  (squeeze, eq. 3.1)
        A   = LeakyReLU(W2 sigmoid(W1 z)) reshaped (K, D)     (excitation, eq. 3.2, Phi = I)
        y, l_proj = temporal_squeeze(x, A)                    (eqs. 3.4-3.5)

    W1 (K x K), W2 (KD x K) without biases, as in eq. 3.2 (bias=True adds them). The training loss
    adds beta * l_proj.mean() (beta = 10 in the paper). W2 starts from tent columns (see
    tent_basis: A is independent at initialisation) plus a small random part.

    Input (N, C, K, H, W), or (N*K, C, H, W) with num_segments=K, in which case y is (N*D, C, H, W).

    impl="reference" runs vidops.reference.temporal_squeeze (plain PyTorch) instead of the op.
    """

    impl = "vidops"

    def __init__(self, K: int = 10, D: int = 3, negative_slope: float = 0.01, bias: bool = False,
                 eps: float = 1e-6, num_segments: Optional[int] = None, backend: Optional[str] = None):
        super().__init__()
        if not (1 <= D < K):
            raise ValueError(f"vidops.nn.TemporalSqueezePooling: need 1 <= D < K, got D={D}, K={K}")
        self.K, self.D, self.negative_slope, self.eps = K, D, negative_slope, eps
        self.num_segments, self.backend = num_segments, backend
        self.fc1 = torch.nn.Linear(K, K, bias=bias)
        self.fc2 = torch.nn.Linear(K, K * D, bias=bias)
        with torch.no_grad():
            # sigmoid(W1 z) is about 1/2 per entry, so W2 = (2/K) tent 1^T gives A ~ tent.
            self.fc2.weight.mul_(0.1).add_(tent_basis(K, D).reshape(K * D, 1) * (2.0 / K))

    def basis(self, video: torch.Tensor) -> torch.Tensor:
        N, C, K, H, W = video.shape
        if K != self.K:
            raise ValueError(f"vidops.nn.TemporalSqueezePooling: expected K={self.K} frames, got shape "
                             f"{tuple(video.shape)}")
        z = video.mean((1, 3, 4)).to(self.fc1.weight.dtype)
        a = F.leaky_relu(self.fc2(torch.sigmoid(self.fc1(z))), self.negative_slope)
        return a.view(N, K, self.D).to(video.dtype if video.dtype in (torch.float32, torch.float64) else a.dtype)

    def forward(self, x: torch.Tensor):
        video = to_video(x, self.num_segments, type(self).__name__)
        if uses_reference(self):
            y, l_proj = reference.temporal_squeeze(video, self.basis(video), self.eps)
        else:
            y, l_proj = temporal_squeeze(video, self.basis(video), self.eps, backend=self.backend)
        return (y if x.dim() == 5 else to_frames(y)), l_proj

    def extra_repr(self) -> str:
        return f"K={self.K}, D={self.D}, negative_slope={self.negative_slope}"
