"""Reference pixel-wise temporal projection (spec 3.2; thesis eqs. 3.7, 3.10-3.13), written as a
user would from the thesis: upsample the basis, then solve the D x D normal equations per pixel.

    A_i = reshape(Upsample_bilinear(basis)[:, :, i], (T, D))          index t*D + d
    G   = A^T A + lam I,  lam = eps * (trace(A^T A) / D + TINY)        (regularised Gram matrix)
    y   = G^{-1} A^T x_c,  x_hat = A y,  p = x_c - x_hat                (per pixel i, channel c)
    pbar[n,c,i] = mean_t p[t]                                           (dynamic appearance)
    enopr[n]    = 1/(H W C) sum_{i,c} ||p||^2                           (ENoPR, eq. 3.13)

The regularisation keeps every result finite for any finite input: A = 0 gives y = 0, p = x;
repeated columns give the minimum-norm-like ridge solution. For bases with independent columns
it changes y by a relative O(eps * cond(A^T A)).

The backward is written out (custom-op backends cannot use autograd). With M = G^{-1},
q_c = dL/dp_c = grad_pbar_c / T * 1 + 2 grad_enopr / (H W C) * p_c and z_c = M A^T q_c:

    grad_x_c = q_c - A z_c
    grad_A   = -sum_c [(q_c - A z_c) y_c^T + p_c z_c^T] + (2 eps / D) (sum_c z_c . y_c) A

(the last term is the derivative of lam through trace(A^T A)), then the adjoint of the bilinear
upsampling takes grad_A back to the basis resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TINY = 1e-30  # keeps G positive definite for A = 0 (lam = eps * TINY); see regularised_gram


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def upsample_basis(basis: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Bilinear, align_corners=False, size-based source coordinates (F.interpolate(size=...))."""
    if tuple(basis.shape[-2:]) == (H, W):
        return basis
    return F.interpolate(basis, size=(H, W), mode="bilinear", align_corners=False)


def upsample_basis_backward(grad: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Adjoint of upsample_basis: (N, K, H, W) -> (N, K, h, w)."""
    N, K, H, W = grad.shape
    if (h, w) == (H, W):
        return grad
    return torch.ops.aten.upsample_bilinear2d_backward(grad, [H, W], [N, K, h, w], False, None, None)


def per_pixel_basis(basis: torch.Tensor, T: int, H: int, W: int) -> torch.Tensor:
    """(N, T*D, h, w) -> A (N, H, W, T, D), upsampled to (H, W)."""
    N, TD = basis.shape[:2]
    A = upsample_basis(basis, H, W)
    return A.reshape(N, T, TD // T, H, W).permute(0, 3, 4, 1, 2)


def regularised_gram(A: torch.Tensor, eps: float):
    """A (..., T, D) -> (G, lam) with G = A^T A + lam I, lam = eps * (trace(A^T A)/D + TINY)."""
    D = A.shape[-1]
    G0 = A.transpose(-1, -2) @ A
    lam = eps * (G0.diagonal(dim1=-2, dim2=-1).sum(-1) / D + TINY)
    eye = torch.eye(D, dtype=A.dtype, device=A.device)
    return G0 + lam[..., None, None] * eye, lam


def _solve(A, xs, eps):
    G, lam = regularised_gram(A, eps)
    y = torch.linalg.solve(G, A.transpose(-1, -2) @ xs)
    return G, lam, y


def pixelwise_temporal_projection(x, basis, eps=1e-6, return_full=False):
    """(pbar (N, C, H, W), enopr (N,)) [+ (x_hat, p), each (N, C, T, H, W), when return_full].

    Plain PyTorch (differentiable by autograd), computed in float32 for half inputs."""
    N, C, T, H, W = x.shape
    dt = compute_dtype(x.dtype)
    A = per_pixel_basis(basis.to(dt), T, H, W)                  # (N, H, W, T, D)
    xs = x.to(dt).permute(0, 3, 4, 2, 1)                        # (N, H, W, T, C)
    _, _, y = _solve(A, xs, eps)                                # (N, H, W, D, C)
    x_hat = A @ y
    p = xs - x_hat
    pbar = p.mean(3).permute(0, 3, 1, 2).to(x.dtype).contiguous()
    enopr = p.square().sum((1, 2, 3, 4)) / (H * W * C)
    if not return_full:
        return pbar, enopr
    back = (0, 4, 3, 1, 2)
    return pbar, enopr, x_hat.permute(*back).to(x.dtype).contiguous(), p.permute(*back).to(x.dtype).contiguous()


def pixelwise_temporal_projection_backward(grad_pbar, grad_enopr, x, basis, eps=1e-6):
    """(grad_x, grad_basis) of pixelwise_temporal_projection, written out (see the module doc)."""
    N, C, T, H, W = x.shape
    h, w = basis.shape[-2:]
    D = basis.shape[1] // T
    dt = compute_dtype(x.dtype)
    A = per_pixel_basis(basis.to(dt), T, H, W)                  # (N, H, W, T, D)
    xs = x.to(dt).permute(0, 3, 4, 2, 1)                        # (N, H, W, T, C)
    G, lam, y = _solve(A, xs, eps)
    p = xs - A @ y
    ge = (grad_enopr.to(dt) * (2.0 / (H * W * C))).view(N, 1, 1, 1, 1)
    q = grad_pbar.to(dt).permute(0, 2, 3, 1).unsqueeze(3) / T + ge * p   # (N, H, W, T, C)
    z = torch.linalg.solve(G, A.transpose(-1, -2) @ q)          # (N, H, W, D, C)
    gx = q - A @ z
    gA = -(gx @ y.transpose(-1, -2)) - p @ z.transpose(-1, -2)
    gA = gA + (2.0 * eps / D) * (z * y).sum((-2, -1))[..., None, None] * A
    gb = upsample_basis_backward(gA.permute(0, 3, 4, 1, 2).reshape(N, T * D, H, W), h, w)
    return gx.permute(0, 4, 3, 1, 2).to(x.dtype).contiguous(), gb.to(basis.dtype).contiguous()
