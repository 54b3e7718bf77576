"""The Laplacian-of-Gaussian initialisation of the motion band-pass spatial filter (operators.md §1.2)."""
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

    Where -1/(pi s^4) or its products overflow or underflow dtype (float32: sigma below ~1e-7 or
    above ~1e9), K is computed without the constant, which cancels in L / sum(L), in float64: it
    tends to the unit impulse (1 at the centre) as sigma -> 0 (already exact in float32 from
    sigma ~0.05 down) and to the box filter 1/k^2 as sigma -> inf. Never NaN for an accepted sigma.
    """
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"vidops.log_kernel: dtype must be float32 or float64, got {dtype} "
                        f"(sum(L) cancels catastrophically in half precision)")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"vidops.log_kernel: k must be a positive odd int, got {k!r}")
    if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"vidops.log_kernel: sigma must be a positive finite number, got {sigma!r}")
    m = (k - 1) / 2
    raw = _raw_log(sigma, k, m, dtype)
    total = None if raw is None else raw.sum()
    if raw is None or not bool(torch.isfinite(raw).all()) or total == 0:
        # the constant -1/(pi s^4) (or the products with it) left dtype's range: the scale-free form
        return _scale_free_log(sigma, k, m).to(dtype)
    return raw / total


def _raw_log(sigma: float, k: int, m: float, dtype: torch.dtype):
    """L itself, built step by step in dtype as the authors' initialisation does (so float32
    matches their checkpoints); None when its constant 1/(pi s^4) is not a normal dtype number."""
    try:
        c = 1.0 / (math.pi * sigma ** 4)
        two_s2 = 2 * sigma ** 2
    except (OverflowError, ZeroDivisionError):  # sigma ** 4 beyond the float range, or 0
        return None
    info = torch.finfo(dtype)
    if not info.tiny <= c <= info.max or two_s2 == 0:
        return None
    ax = torch.arange(k, dtype=dtype)
    xx, yy = torch.meshgrid(ax, ax, indexing="ij")
    r2 = (xx - m) ** 2 + (yy - m) ** 2
    return -c * (1 - r2 / two_s2) * torch.exp(-r2 / two_s2)


def _scale_free_log(sigma: float, k: int, m: float) -> torch.Tensor:
    """K without the constant factor (K = L / sum(L) does not depend on it), in float64 with
    u = (r / s)^2 / 2 (no s^2 or s^4 formed, so no overflow or underflow of sigma's powers):
    L' = (1 - u) exp(-u), taken as 0 where exp(-u) is 0 (u = inf there)."""
    ax = (torch.arange(k, dtype=torch.float64) - m) / sigma
    xx, yy = torch.meshgrid(ax, ax, indexing="ij")
    u = (xx * xx + yy * yy) / 2
    e = torch.exp(-u)
    lp = torch.where(e > 0, (1 - u) * e, torch.zeros_like(u))
    total = lp.sum()
    if total == 0:
        raise ValueError(f"vidops.log_kernel: sum of the raw LoG is 0 for sigma={sigma}, k={k}; "
                         f"the normalisation K = L / sum(L) is undefined")
    return lp / total


def temporal_band_pass_init(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The temporal filter's initial taps [-1, 2, -1] / 3 (a second difference, zero DC gain)."""
    return torch.tensor([-1.0, 2.0, -1.0], dtype=dtype) / 3
