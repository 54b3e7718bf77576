"""The Laplacian-of-Gaussian initialisation of the motion band-pass spatial filter (spec 1.2)."""
from __future__ import annotations

import math

import torch


def log_kernel(sigma: float, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """K = L / sum(L) with L(x, y) = -1/(pi s^4) (1 - r^2/(2 s^2)) exp(-r^2/(2 s^2)), r from the
    grid centre (k-1)/2.

    sum(L) of the truncated LoG is a tiny negative number, so K has a positive centre (+278.4 for
    sigma=1.1, k=9), a negative surround and DC gain +1. With the default float32 the kernel is
    built in float32 step by step as busy-quiet-net's LoG does, so the values match the authors'
    initial checkpoint weights; dtype=torch.float64 builds it in float64 (more accurate: the two
    differ by ~5e-5 relative through the cancellation in sum(L)). Half precision is refused: the
    cancellation would make the whole kernel ~17% wrong.
    """
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"vidops.log_kernel: dtype must be float32 or float64, got {dtype} "
                        f"(sum(L) cancels catastrophically in half precision)")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"vidops.log_kernel: k must be a positive odd int, got {k!r}")
    if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"vidops.log_kernel: sigma must be a positive finite number, got {sigma!r}")
    ax = torch.arange(k, dtype=dtype)
    xx, yy = torch.meshgrid(ax, ax, indexing="ij")
    m = (k - 1) / 2
    r2 = (xx - m) ** 2 + (yy - m) ** 2
    raw = -1.0 / (math.pi * sigma ** 4) * (1 - r2 / (2 * sigma ** 2)) * torch.exp(-r2 / (2 * sigma ** 2))
    total = raw.sum()
    if total == 0:
        raise ValueError(f"vidops.log_kernel: sum of the raw LoG is 0 for sigma={sigma}, k={k}; "
                         f"the normalisation K = L / sum(L) is undefined")
    return raw / total


def temporal_band_pass_init(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The temporal filter's initial taps [-1, 2, -1] / 3 (a second difference, zero DC gain)."""
    return torch.tensor([-1.0, 2.0, -1.0], dtype=dtype) / 3
