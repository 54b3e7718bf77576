"""Reference Busy/Quiet split of a BQN input clip (operators.md §1.3), as busy-quiet-net runs it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .motion_band_pass import motion_band_pass


def quiet_output_size(H: int, W: int, quiet_scale):
    if quiet_scale is None:
        return H, W
    return int(H * quiet_scale), int(W * quiet_scale)


def bilinear_matrix(out_size: int, in_size: int, scale: float, dtype, device) -> torch.Tensor:
    """(out_size, in_size) matrix of 1-D bilinear interpolation as F.interpolate(scale_factor=scale,
    align_corners=False) computes it: src = max((dst + 0.5) / scale - 0.5, 0), neighbours
    floor(src) and floor(src) + 1 (clamped to in_size - 1) with weights 1 - frac and frac.
    The 2-D resize is R_h @ img @ R_w^T, so its adjoint is R_h^T @ grad @ R_w."""
    dst = torch.arange(out_size, dtype=torch.float64, device=device)
    src = ((dst + 0.5) / scale - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    frac = src - i0.double()
    m = torch.zeros(out_size, in_size, dtype=torch.float64, device=device)
    m.scatter_add_(1, i0[:, None], (1 - frac)[:, None])
    m.scatter_add_(1, i1[:, None], frac[:, None])
    return m.to(dtype)


def busy_quiet(clip, spatial_weight, temporal_weight, quiet="first", quiet_scale=None):
    """busy = motion_band_pass(clip, stride 3, "valid" in time, "reflect" in space);
    quiet = clip[:, :, 3s] ("first") or mean(clip[:, :, 3s:3s+3]) - busy ("mean_minus_busy"),
    then bilinear resize by quiet_scale (align_corners=False, no antialias, floor(H * scale),
    source coordinates from the scale factor as nn.Upsample(scale_factor=...) does)."""
    N, C, T, H, W = clip.shape
    S = T // 3
    busy = motion_band_pass(clip, spatial_weight, temporal_weight, 3, "reflect", "valid")
    if quiet == "first":
        q = clip[:, :, 0: 3 * S: 3]
    else:
        q = clip[:, :, : 3 * S].reshape(N, C, S, 3, H, W).mean(3) - busy
    if quiet_scale is not None:
        q4 = q.transpose(1, 2).reshape(N * S, C, H, W)
        q4 = F.interpolate(q4, scale_factor=quiet_scale, mode="bilinear", align_corners=False)
        q = q4.reshape(N, S, C, q4.shape[-2], q4.shape[-1]).transpose(1, 2)
    return busy, q.contiguous()
