"""`vidops.pixelwise_temporal_projection`: PWTP, the dynamic appearance of a clip.

Per pixel i (basis bilinearly upsampled to (H, W) inside the kernels) and channel c:

    A_i (T, D) = basis[n, t*D + d, i]
    e   = max(eps, 8 u)  (u: machine epsilon of the compute dtype),  lam = e trace(A^T A) / D  (e for A = 0)
    G   = A^T A + lam I = L diag(d) L^T  (pivots floored at lam),  y = G^{-1} A^T x_c,  p = x_c - A y
    pbar[n, c, i] = mean_t p[t],   enopr[n] = 1/(H W C) sum_{i,c} ||p||^2

Backends: cpu (C++/OpenMP), cuda (CUDA C++), triton, reference; all run this same algorithm.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .. import _checks, _op
from ..reference.pixelwise_temporal_projection import pixelwise_temporal_projection as reference_forward
from ..reference.pixelwise_temporal_projection import pixelwise_temporal_projection_backward as reference_backward

OP_NAME = "pixelwise_temporal_projection"
MAX_D = 4
CUDA_MAX_INDEX = (1 << 31) - 1  # the CUDA kernels index a sample's pixels and basis in int32


def loss_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of ENoPR (and TSP's l_proj): float64 for float64 inputs, float32 otherwise."""
    return _op.acc_dtype(dtype)


def check_eps(op: str, eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"vidops.{op}: eps must be a positive finite float (the Gram matrix "
                         f"regulariser), got {eps!r}")


def check_args(x, basis, eps, op=OP_NAME) -> int:
    """Checks shapes, dtypes and devices (not the data); returns D."""
    _checks.tensor(op, "x", x, 5, "(N, C, T, H, W)")
    _checks.tensor(op, "basis", basis, 4, "(N, T*D, h, w)")
    _checks.same_device(op, "x", x, basis=basis)
    _checks.weight_dtype(op, x, basis=basis)
    check_eps(op, eps)
    N, C, T, H, W = x.shape
    if C < 1 or H < 1 or W < 1:
        raise ValueError(f"vidops.{op}: x must have C, H, W >= 1, got shape {tuple(x.shape)}")
    if T < 2:
        raise ValueError(f"vidops.{op}: x must have T >= 2 frames (a D < T subspace), got T={T}")
    if basis.shape[0] != N:
        raise ValueError(f"vidops.{op}: basis has batch {basis.shape[0]} but x has N={N}")
    TD = basis.shape[1]
    if TD == 0 or TD % T != 0:
        raise ValueError(f"vidops.{op}: basis must have T*D channels with T={T} (from x), got "
                         f"{TD} channels (shape {tuple(basis.shape)})")
    D = TD // T
    if D >= T:
        raise ValueError(f"vidops.{op}: the subspace dimension D must be < T, got D={D} (basis "
                         f"channels {TD}) and T={T}")
    if D > MAX_D:
        raise ValueError(f"vidops.{op}: D must be <= {MAX_D}, got D={D} (basis channels {TD}, T={T})")
    h, w = basis.shape[2:]
    if not (1 <= h <= H and 1 <= w <= W):
        raise ValueError(f"vidops.{op}: basis must have the resolution of x or lower, 1 <= h <= {H} "
                         f"and 1 <= w <= {W}, got h={h}, w={w}")
    return D


def basis_autocast(args, device_type, dtype):
    """Under autocast x is taken as it comes (half x read as is, the Gram matrix solved in
    float32: its conditioning needs it) and the basis in x's dtype (float32 for half x), so an
    autocast-produced bf16 basis meets a float32 clip (TSP's too)."""
    x, basis, *rest = args
    bdt = torch.float32 if x.dtype in _op.HALF_DTYPES else x.dtype
    if basis.is_floating_point() and x.is_floating_point():
        basis = basis.to(bdt)
    return (x, basis, *rest)


def _cuda_limits(x, basis, eps):
    N, C, T, H, W = x.shape
    TD, h, w = basis.shape[1:]
    if H * W > CUDA_MAX_INDEX or TD * h * w > CUDA_MAX_INDEX:
        return f"the CUDA kernels index a sample in int32, got H*W={H * W} and T*D*h*w={TD * h * w}"
    return None


def _fake(x, basis, eps):
    N, C, T, H, W = x.shape
    return x.new_empty((N, C, H, W)), x.new_empty((N,), dtype=loss_dtype(x.dtype))


def _finite_basis(x, basis, eps):
    _checks.finite(OP_NAME, "basis", basis)   # data-dependent: inside the op, not traced


def _forward_on(fn):
    def forward(x, basis, eps):
        _finite_basis(x, basis, eps)
        return fn(x, basis, eps)
    return forward


def _fwd_d(fn):
    def forward(x, basis, eps):
        _finite_basis(x, basis, eps)
        return fn(x, basis, basis.shape[1] // x.shape[2], eps)
    return forward


def _bwd_d(fn):
    def backward(gp, ge, x, basis, eps):
        return fn(gp, ge, x, basis, basis.shape[1] // x.shape[2], eps)
    return backward


_CPP, _TRITON = _op.cpp("_pixelwise_temporal_projection"), _op.triton(OP_NAME)

OP = _op.Op(
    OP_NAME,
    "(Tensor x, Tensor basis, float eps) -> (Tensor pbar, Tensor enopr)",
    check=check_args,
    fake=_fake,
    backends={
        "reference": _op.Impl(_forward_on(reference_forward), reference_backward),
        "cpu": _op.Impl(_fwd_d(_CPP.forward), _bwd_d(_CPP.backward), kernel=_CPP.kernel),
        "cuda": _op.Impl(_fwd_d(_CPP.forward), _bwd_d(_CPP.backward), kernel=_CPP.kernel, supports=_cuda_limits),
        "triton": _op.Impl(_fwd_d(_TRITON.forward), _bwd_d(_TRITON.backward), module=OP_NAME),
    },
    post=lambda out, x, basis, eps: (out[0].to(x.dtype), out[1].to(loss_dtype(x.dtype))),
    autocast=basis_autocast,
)


def pixelwise_temporal_projection(x: torch.Tensor, basis: torch.Tensor, eps: float = 1e-6,
                                  return_full: bool = False, *, backend: Optional[str] = None):
    """Pixel-wise temporal projection of a clip onto per-pixel D-dimensional subspaces.

        A_i (T, D) = Upsample(basis)[n, t*D + d, i]   (bilinear, align_corners=False, in-kernel)
        e = max(eps, 8 u),  u = machine epsilon of the compute dtype (float32: 2^-23, float64: 2^-52)
        lam = e * trace(A^T A) / D                                (e for A = 0)
        G = A^T A + lam I,  y = G^{-1} A^T x_c,  x_hat = A y,  p = x_c - x_hat   (per pixel, channel)
        pbar[n, c, i] = mean_t p[t]                               (dynamic appearance, eq. 3.12)
        enopr[n] = 1/(H W C) sum_{i,c} ||p||^2                    (ENoPR, eq. 3.13)

    eps is the relative ridge regulariser: lam is eps times the mean squared column norm of A, so
    the projection (pbar, ENoPR, the gradient w.r.t. x) does not depend on the scale of the basis
    and the gradient w.r.t. the basis scales as its inverse, over the whole range the dtype
    represents (every backend solves with the basis scaled per pixel by the power of two that puts
    its largest entry in [0.5, 1): exact, and nothing in A^T A over- or underflows).
    It is floored at 8 u because below that the rounding of A^T A exceeds lam and a singular
    A^T A (rank-deficient A) is no longer positive definite in floating point; at the default
    1e-6 the floor is inactive in float32 and float64. Every backend (reference included) then
    factors G = L diag(d) L^T (D <= 4 unrolled) with each pivot floored at lam (exact pivots of G
    are >= lam: the floor only absorbs rounding), solves by substitution (never an explicit
    G^{-1}) and forms p = x_c - A y explicitly (never x^T x - x^T P x, which cancels when the
    projection carries most of x, e.g. a static background). The kernels read x and the
    low-resolution basis once and write only pbar and enopr; float32 (float64 for float64 x).

    Any rank of A: the directions of the column space with squared singular values >> lam are
    projected out, the rest (the null space of a rank-deficient A) are not, so the result is the
    projection onto the column space of A, finite for any finite input. A = 0, the one basis
    without a scale, gives y = 0, p = x (pbar = mean_t x, enopr = mean ||x||^2) and a zero gradient
    w.r.t. the basis (the projection jumps there: along A = t V it is V's for every t != 0). For
    independent columns the projection differs from the exact least-squares one by a relative
    O(e cond(A^T A)). The gradient w.r.t. the basis along directions that would raise the rank of
    a rank-deficient A is the ridge solution's: it amplifies rounding by ~1/lam (a relative
    uncertainty of about u / e; a larger eps damps it).

    Args:
        x: (N, C, T, H, W) clip, any strides; float32/float64 (float16/bfloat16 read as is and
            computed in float32).
        basis: (N, T*D, h, w), 1 <= D <= 4, D < T, h <= H, w <= W; x's dtype (or float32 for half
            x). Must be finite (checked: ValueError).
        eps: the relative regulariser (see above), > 0; values below 8 u act as 8 u.
        return_full: also return x_hat and p (N, C, T, H, W), for visualisation. This path runs
            the plain-PyTorch formulation (vidops.reference; the basis is upsampled in memory and
            the gradient comes from autograd), whatever the backend.
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available.

    Under torch.autocast x keeps its dtype and the basis is taken in x's dtype (float32 for half
    x); the solve runs in float32 (float64 for float64 x).

    Returns: pbar (N, C, H, W) in x's dtype and enopr (N,) (float64 for float64 x, else float32),
    fresh contiguous tensors; with return_full also x_hat and p.
    """
    if return_full:
        check_args(x, basis, eps)
        if not torch.compiler.is_compiling():
            _checks.finite(OP_NAME, "basis", basis)
        pbar, enopr, x_hat, p = reference_forward(x, basis, float(eps), return_full=True)
        return pbar, enopr.to(loss_dtype(x.dtype)), x_hat, p
    return OP(x, basis, eps, backend=backend)
