"""Reference temporal relation descriptor (operators.md §3.1, thesis eq. 3.9).

    u[n, pair(t1, t2), i] = (1/C') sum_c f[n, c, t1, i] * f[n, c, t2, i],   t1 < t2,

pairs in ascending (t1, t2) order (torch.triu_indices(T, T, 1)), P = T (T - 1) / 2 of them.
Backward: grad_f[n, c, t] = (1/C') sum_{s != t} grad_u[n, pair(t, s)] * f[n, c, s].
"""
from __future__ import annotations

import torch

from .pixelwise_temporal_projection import compute_dtype


def pairs(T: int, device=None):
    """(t1, t2) index tensors of the P = T(T-1)/2 pairs, t1 < t2, ascending."""
    return torch.triu_indices(T, T, 1, device=device)


def temporal_relation(f):
    """f (N, C', T, h, w) -> u (N, T(T-1)/2, h, w); plain PyTorch, differentiable."""
    T = f.shape[2]
    dt = compute_dtype(f.dtype)
    t1, t2 = pairs(T, f.device)
    g = f.to(dt)
    return (g[:, :, t1] * g[:, :, t2]).mean(1).to(f.dtype)


def temporal_relation_backward(grad_u, f):
    N, C, T, h, w = f.shape
    dt = compute_dtype(f.dtype)
    t1, t2 = pairs(T, f.device)
    S = torch.zeros(N, T, T, h, w, dtype=dt, device=f.device)
    gu = grad_u.to(dt)
    S[:, t1, t2] = gu
    S[:, t2, t1] = gu
    gf = torch.einsum("ntshw,ncshw->ncthw", S, f.to(dt)) / C
    return gf.to(f.dtype).contiguous()
