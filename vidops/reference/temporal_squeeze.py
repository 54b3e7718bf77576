"""Reference temporal squeeze pooling (thesis eqs. 3.4-3.5, TSP paper eqs. 4-5), with the PWTP
solve (see vidops.reference.pixelwise_temporal_projection: the floored regulariser, LDL^T with
pivots >= lam, substitution solves, the residual formed explicitly).

    A = basis[n] (K, D), shared by every (c, h, w) position j of sample n
    e = max(eps, 8 u),  lam = e * trace(A^T A) / D  (e for A = 0),  G = A^T A + lam I
    Q = G^{-1} A^T (D, K), by substitution with G's LDL^T factor, once per sample
    y_j = Q x_j                     -> squeezed frames (N, C, D, H, W)
    p_j = x_j - A y_j
    l_proj[n] = 1/(C H W) sum_j ||p_j||_2                       (L2 norm, not squared)

computed with A' = s A, s = pow2_scale(max |A|) per sample (see the PWTP reference): y = s y',
grad_A = s grad_A', so that nothing depends on the scale of the basis but y's 1/s.

Backward, written out. With q_j = dL/dp_j = grad_l / (C H W) * p_j / ||p_j|| (0 where p_j = 0
exactly) and z_j = G^{-1} (A^T q_j - grad_y_j):

    grad_x_j = q_j - A z_j
    grad_A   = sum_j [-q_j y_j^T + A z_j y_j^T - p_j z_j^T] + (2 e / D) (sum_j z_j . y_j) A
"""
from __future__ import annotations

import torch

from .pixelwise_temporal_projection import compute_dtype, effective_eps, factor, scaled_basis


def _flat(x, dt):
    N, C, K, H, W = x.shape
    return x.to(dt).transpose(1, 2).reshape(N, K, C * H * W)    # (N, K, L)


def _project(x, basis, eps):
    dt = compute_dtype(x.dtype)
    e = effective_eps(eps, dt)
    A, sc = scaled_basis(basis.to(dt))                          # max |A| in [0.5, 1) per sample
    xs = _flat(x, dt)
    f, _ = factor(A, e)
    Q = f.solve(A.transpose(-1, -2))                            # (N, D, K)
    y = Q @ xs                                                  # (N, D, L): y' of A' (y = s y')
    p = xs - A @ y
    return dt, e, A, sc, xs, f, y, p


def temporal_squeeze(x, basis, eps=1e-6):
    """(y (N, C, D, H, W), l_proj (N,)); plain PyTorch, differentiable by autograd."""
    N, C, K, H, W = x.shape
    D = basis.shape[-1]
    _, _, _, sc, _, _, y, p = _project(x, basis, eps)
    l_proj = torch.linalg.vector_norm(p, dim=1).mean(1)
    y = y * sc.view(N, 1, 1)
    return y.reshape(N, D, C, H, W).transpose(1, 2).to(x.dtype).contiguous(), l_proj


def temporal_squeeze_backward(grad_y, grad_l, x, basis, eps=1e-6):
    """(grad_x, grad_basis) of temporal_squeeze, written out (see the module doc)."""
    N, C, K, H, W = x.shape
    D = basis.shape[-1]
    L = C * H * W
    dt, e, A, sc, xs, f, y, p = _project(x, basis, eps)
    nrm = torch.linalg.vector_norm(p, dim=1, keepdim=True)
    scale = (grad_l.to(dt) / L).view(N, 1, 1)
    q = torch.where(nrm > 0, p / torch.where(nrm > 0, nrm, torch.ones_like(nrm)), torch.zeros_like(p)) * scale
    gy = grad_y.to(dt).transpose(1, 2).reshape(N, D, L) * sc.view(N, 1, 1)   # dL/dy' = s dL/dy
    z = f.solve(A.transpose(-1, -2) @ q - gy)
    gx = q - A @ z
    zyT = z @ y.transpose(-1, -2)                                # (N, D, D)
    gA = -(q @ y.transpose(-1, -2)) + A @ zyT - p @ z.transpose(-1, -2)
    gA = gA + (2.0 * e / D) * zyT.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None] * A
    gA = gA * sc.view(N, 1, 1)                                  # back from A' = s A to A
    gx = gx.reshape(N, K, C, H, W).transpose(1, 2)
    return gx.to(x.dtype).contiguous(), gA.to(basis.dtype).contiguous()
