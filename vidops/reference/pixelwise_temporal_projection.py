"""Reference pixel-wise temporal projection (thesis eqs. 3.7, 3.10-3.13): upsample the basis, then
solve the D x D regularised normal equations per pixel, with the same algorithm as the kernels.

    A_i = reshape(Upsample_bilinear(basis)[:, :, i], (T, D))          index t*D + d
    e   = max(eps, 8 u)          u = the compute dtype's machine epsilon (float32: 2^-23)
    lam = e * trace(A^T A) / D   (lam = e for A = 0)                    (the regulariser)
    G   = A^T A + lam I = L diag(d) L^T                                 (LDL^T, pivots d_j >= lam)
    y   = G^{-1} A^T x_c,  x_hat = A y,  p = x_c - x_hat                (per pixel i, channel c)
    pbar[n,c,i] = mean_t p[t]                                           (dynamic appearance)
    enopr[n]    = 1/(H W C) sum_{i,c} ||p||^2                           (ENoPR, eq. 3.13)

Why the floor 8 u: below it the rounding of A^T A (about u trace(A^T A)) is larger than lam, so
for a rank-deficient A the computed G is not positive definite and the solve amplifies rounding
by 1/lam. With lam >= 8 u trace / D every pivot of the exact G is >= lam, the factorisation floors
the computed pivots at lam (a no-op in exact arithmetic, it only absorbs rounding), and the
solve is stable: the columns of A that carry singular values s with s^2 >> lam are projected
out, those with s^2 << lam (the null space of a rank-deficient A, A = 0 included) are not, so
x_hat is the projection onto the column space of A whatever its rank. For eps >= 8 u (the default
1e-6 in float32 and float64) this is the plain ridge lam = eps trace/D.

Scale: lam is relative to A's own size, so G(s A) = s^2 G(A) and the projection (x_hat, p, pbar,
ENoPR) does not depend on the scale of the basis, y scales as 1/s and the gradient w.r.t. the
basis as 1/s. So that this holds in floating point over the whole range (A^T A would underflow
for float32 entries below ~1e-19 and overflow above ~1e19), every backend solves with
A' = s A, s = pow2_scale(max |A|) the power of two that puts the largest entry of A in [0.5, 1)
(exact: only the exponent changes), per pixel (per sample for TSP): y = s y', grad_A = s grad_A'.
A = 0 is the one basis without a scale: lam = e there, y = 0, p = x exactly, and the gradient
w.r.t. the basis is 0 (the projection jumps at A = 0: along A = t V it is V's for every t != 0).

What the regulariser costs: for independent columns y differs from the least-squares solution by
a relative O(e cond(A^T A)); the coefficients y along the null space of a rank-deficient A (and
the gradients w.r.t. the basis along the directions that would raise its rank) are those of the
ridge solution, which amplifies rounding by ~1/lam: a relative uncertainty of about u / e there
(a larger eps damps it). The projection itself (x_hat, p, pbar, ENoPR) carries neither.

The solves are forward/back substitutions with the factor (never an explicit G^{-1}, whose
product with A^T x cancels catastrophically when G is ill-conditioned) and the residual is formed
explicitly (not as x^T x - x^T P x, which cancels when the projection carries most of x).

The backward is written out (custom-op backends cannot use autograd). With
q_c = dL/dp_c = grad_pbar_c / T * 1 + 2 grad_enopr / (H W C) * p_c and z_c = G^{-1} A^T q_c:

    grad_x_c = q_c - A z_c
    grad_A   = -sum_c [(q_c - A z_c) y_c^T + p_c z_c^T] + (2 e / D) (sum_c z_c . y_c) A

(the last term is the derivative of lam through trace(A^T A)), then the adjoint of the bilinear
upsampling takes grad_A back to the basis resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FLOOR_ULPS = 8  # the regulariser is at least FLOOR_ULPS machine epsilons of the compute dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def effective_eps(eps: float, dtype: torch.dtype) -> float:
    """e = max(eps, 8 u) for the compute dtype of `dtype` (u = torch.finfo(...).eps)."""
    return max(float(eps), FLOOR_ULPS * torch.finfo(compute_dtype(dtype)).eps)


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


def regulariser(G0: torch.Tensor, e: float) -> torch.Tensor:
    """lam = e * trace(G0) / D for Gram matrices G0 (..., D, D); e where trace(G0) = 0 (A = 0)."""
    D = G0.shape[-1]
    tr = G0.diagonal(dim1=-2, dim2=-1).sum(-1)
    return e * torch.where(tr > 0, tr / D, torch.ones_like(tr))


# the exponent range that keeps 2^-e a normal number, per compute dtype
_EXP_LIMIT = {torch.float32: 126, torch.float64: 1022}


def _times_pow2(v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """v * 2^k for integer-valued k, in two halves (2^149 alone overflows float32)."""
    half = torch.floor(k / 2)
    return v * torch.exp2(half) * torch.exp2(k - half)


def pow2_scale(m: torch.Tensor) -> torch.Tensor:
    """The power of two s with s m in [0.5, 1) for m > 0 (s = 2^-e for m = f 2^e, f in [0.5, 1),
    e clamped so that s is a normal number); 0 for m = 0 (a zero basis: y = s y' = 0 and
    grad_A = s grad_A' = 0). The kernels read e from m's exponent bits; here it comes from log2
    (corrected by one where log2 rounds across a power of two: exact, subnormals included), which
    every export path has (ONNX has no frexp)."""
    lim = _EXP_LIMIT[m.dtype]
    positive = m > 0
    safe = torch.where(positive, m, torch.ones_like(m))
    e = torch.floor(torch.log2(safe)) + 1
    f = _times_pow2(safe, -e)
    e = e + (f >= 1).to(m.dtype) - (f < 0.5).to(m.dtype)
    s = torch.exp2(-e.clamp(-lim, lim))
    return torch.where(positive, s, torch.zeros_like(s))


def scaled_basis(A: torch.Tensor):
    """A (..., T, D) -> (A' = s A, s (...)): s = pow2_scale(max |A|) per matrix (a constant for
    autograd: the projection does not depend on it)."""
    s = pow2_scale(A.detach().abs().amax((-2, -1)))
    return A * s[..., None, None], s


class Ldl:
    """G = G0 + lam I = L diag(d) L^T for a batch of D x D Gram matrices (D <= 4, loops unrolled
    in Python like the kernels' compile-time loops). Pivots are floored at lam."""

    def __init__(self, G0: torch.Tensor, lam: torch.Tensor):
        D = G0.shape[-1]
        self.D = D
        self.l = {}
        self.dinv = []
        piv = []
        for j in range(D):
            dj = G0[..., j, j] + lam
            for k in range(j):
                dj = dj - self.l[j, k] * self.l[j, k] * piv[k]
            dj = torch.where(dj >= lam, dj, lam)
            piv.append(dj)
            self.dinv.append(1.0 / dj)
            for i in range(j + 1, D):
                v = G0[..., i, j]
                for k in range(j):
                    v = v - self.l[i, k] * self.l[j, k] * piv[k]
                self.l[i, j] = v * self.dinv[j]

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """G^{-1} b for b (..., D, C): forward then backward substitution."""
        D = self.D
        z = []
        for i in range(D):
            v = b[..., i, :]
            for k in range(i):
                v = v - self.l[i, k][..., None] * z[k]
            z.append(v)
        y = [None] * D
        for i in reversed(range(D)):
            v = z[i] * self.dinv[i][..., None]
            for k in range(i + 1, D):
                v = v - self.l[k, i][..., None] * y[k]
            y[i] = v
        return torch.stack(y, -2)


def factor(A: torch.Tensor, e: float):
    """A (..., T, D) -> (Ldl of G = A^T A + lam I, lam)."""
    G0 = A.transpose(-1, -2) @ A
    lam = regulariser(G0, e)
    return Ldl(G0, lam), lam


def pixelwise_temporal_projection(x, basis, eps=1e-6, return_full=False):
    """(pbar (N, C, H, W), enopr (N,)) [+ (x_hat, p), each (N, C, T, H, W), when return_full].

    Plain PyTorch (differentiable by autograd), computed in float32 for half inputs."""
    N, C, T, H, W = x.shape
    dt = compute_dtype(x.dtype)
    A, _ = scaled_basis(per_pixel_basis(basis.to(dt), T, H, W))  # (N, H, W, T, D), max |A| in [0.5, 1)
    xs = x.to(dt).permute(0, 3, 4, 2, 1)                        # (N, H, W, T, C)
    f, _ = factor(A, effective_eps(eps, dt))
    y = f.solve(A.transpose(-1, -2) @ xs)                       # (N, H, W, D, C)
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
    e = effective_eps(eps, dt)
    A, sc = scaled_basis(per_pixel_basis(basis.to(dt), T, H, W))  # (N, H, W, T, D), (N, H, W)
    xs = x.to(dt).permute(0, 3, 4, 2, 1)                        # (N, H, W, T, C)
    f, _ = factor(A, e)
    y = f.solve(A.transpose(-1, -2) @ xs)
    p = xs - A @ y
    ge = (grad_enopr.to(dt) * (2.0 / (H * W * C))).view(N, 1, 1, 1, 1)
    q = grad_pbar.to(dt).permute(0, 2, 3, 1).unsqueeze(3) / T + ge * p   # (N, H, W, T, C)
    z = f.solve(A.transpose(-1, -2) @ q)                        # (N, H, W, D, C)
    gx = q - A @ z
    gA = -(gx @ y.transpose(-1, -2)) - p @ z.transpose(-1, -2)
    gA = gA + (2.0 * e / D) * (z * y).sum((-2, -1))[..., None, None] * A
    gA = gA * sc[..., None, None]                               # back from A' = s A to A
    gb = upsample_basis_backward(gA.permute(0, 3, 4, 1, 2).reshape(N, T * D, H, W), h, w)
    return gx.permute(0, 4, 3, 1, 2).to(x.dtype).contiguous(), gb.to(basis.dtype).contiguous()
