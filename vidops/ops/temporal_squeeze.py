"""`vidops.temporal_squeeze`: temporal squeeze pooling (thesis 3.2, TSP paper eqs. 4-5).

    A = basis[n] (K, D), shared by every position j = (c, h, w) of sample n
    e = max(eps, 8 u),  lam = e (trace(A^T A) / D + 1e-20),  G = A^T A + lam I   (PWTP's solve)
    y_j = G^{-1} A^T x_j             squeezed frames (N, C, D, H, W)
    l_proj[n] = 1/(C H W) sum_j ||x_j - A y_j||_2

Backends: cpu (C++/OpenMP), cuda (CUDA C++), triton, reference; all run this same algorithm.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _dispatch
from ..reference.temporal_squeeze import temporal_squeeze as reference_forward
from ..reference.temporal_squeeze import temporal_squeeze_backward as reference_backward
from .pixelwise_temporal_projection import MAX_D, check_eps, loss_dtype

OP = "temporal_squeeze"


def check_args(x, basis, eps, op=OP) -> int:
    """Checks shapes, dtypes and devices (not the data); returns D."""
    _checks.tensor(op, "x", x, 5, "(N, C, K, H, W)")
    _checks.tensor(op, "basis", basis, 3, "(N, K, D)")
    _checks.same_device(op, "x", x, basis=basis)
    _checks.weight_dtype(op, x, basis=basis)
    check_eps(op, eps)
    N, C, K, H, W = x.shape
    if C < 1 or H < 1 or W < 1:
        raise ValueError(f"vidops.{op}: x must have C, H, W >= 1, got shape {tuple(x.shape)}")
    if K < 2:
        raise ValueError(f"vidops.{op}: x must have K >= 2 frames (a D < K subspace), got K={K}")
    if basis.shape[0] != N or basis.shape[1] != K:
        raise ValueError(f"vidops.{op}: basis must be (N, K, D) = ({N}, {K}, D) to match x, got shape "
                         f"{tuple(basis.shape)}")
    D = basis.shape[2]
    if not 1 <= D < K:
        raise ValueError(f"vidops.{op}: the subspace dimension D must satisfy 1 <= D < K={K}, got D={D}")
    if D > MAX_D:
        raise ValueError(f"vidops.{op}: D must be <= {MAX_D}, got D={D}")
    return D


class _Reference:
    @staticmethod
    def forward(x, basis, eps):
        return reference_forward(x, basis, eps)

    @staticmethod
    def backward(grad_y, grad_l, x, basis, eps):
        return reference_backward(grad_y, grad_l, x, basis, eps)


class _Cpp:
    @staticmethod
    def forward(x, basis, eps):
        return torch.ops.vidops._temporal_squeeze_fwd(x, basis, eps)

    @staticmethod
    def backward(grad_y, grad_l, x, basis, eps):
        return torch.ops.vidops._temporal_squeeze_bwd(grad_y, grad_l, x, basis, eps)


class _Triton:
    @staticmethod
    def forward(x, basis, eps):
        from .._triton import kernels
        return kernels(OP).forward(x, basis, eps)

    @staticmethod
    def backward(grad_y, grad_l, x, basis, eps):
        from .._triton import kernels
        return kernels(OP).backward(grad_y, grad_l, x, basis, eps)


_dispatch.register_op(OP, preference={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")})
_dispatch.register_backend(OP, "reference", _dispatch.always, _Reference)
_dispatch.register_backend(OP, "cpu", _dispatch.cpu_kernel("_temporal_squeeze_fwd"), _Cpp)
_dispatch.register_backend(OP, "cuda", _dispatch.cuda_kernel("_temporal_squeeze_fwd"), _Cpp)
_dispatch.register_backend(OP, "triton", _dispatch.triton_kernel(OP), _Triton)


def _empty_outputs(x, D):
    N, C, K, H, W = x.shape
    return x.new_empty((N, C, D, H, W)), x.new_empty((N,), dtype=loss_dtype(x.dtype))


@torch.library.custom_op("vidops::temporal_squeeze", mutates_args=())
def _temporal_squeeze_op(x: torch.Tensor, basis: torch.Tensor, eps: float, backend: Optional[str]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    D = check_args(x, basis, eps)
    _checks.finite(OP, "basis", basis)
    if x.shape[0] == 0:
        return _empty_outputs(x, D)
    name = _dispatch.choose(OP, x.device, backend)
    y, l_proj = _dispatch.impl(OP, name).forward(x, basis, eps)
    return y.to(x.dtype), l_proj.to(loss_dtype(x.dtype))


@_temporal_squeeze_op.register_fake
def _(x, basis, eps, backend):
    return _empty_outputs(x, check_args(x, basis, eps))


@torch.library.custom_op("vidops::temporal_squeeze_backward", mutates_args=())
def _temporal_squeeze_backward_op(grad_y: torch.Tensor, grad_l: torch.Tensor, x: torch.Tensor,
                                  basis: torch.Tensor, eps: float, backend: Optional[str]
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[0] == 0:
        return torch.zeros_like(x, memory_format=torch.contiguous_format), \
            torch.zeros_like(basis, memory_format=torch.contiguous_format)
    name = _dispatch.choose(OP, x.device, backend)
    gx, gb = _dispatch.impl(OP, name).backward(grad_y, grad_l, x, basis, eps)
    return gx.to(x.dtype), gb.to(basis.dtype)


@_temporal_squeeze_backward_op.register_fake
def _(grad_y, grad_l, x, basis, eps, backend):
    return torch.empty_like(x, memory_format=torch.contiguous_format), \
        torch.empty_like(basis, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    x, basis, eps, backend = inputs
    ctx.save_for_backward(x, basis)
    ctx.args = (eps, backend)


def _backward(ctx, grad_y, grad_l):
    x, basis = ctx.saved_tensors
    eps, backend = ctx.args
    N, C, K, H, W = x.shape
    if grad_y is None:
        grad_y = x.new_zeros((N, C, basis.shape[2], H, W))
    if grad_l is None:
        grad_l = x.new_zeros((N,), dtype=loss_dtype(x.dtype))
    gx, gb = _temporal_squeeze_backward_op(grad_y.contiguous(), grad_l.contiguous(), x, basis, eps, backend)
    return gx, gb, None, None


_temporal_squeeze_op.register_autograd(_backward, setup_context=_setup_context)


def temporal_squeeze(x: torch.Tensor, basis: torch.Tensor, eps: float = 1e-6, *,
                     backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal squeeze pooling: project every (c, h, w) K-vector onto one subspace per sample.

        A = basis[n] (K, D);  e = max(eps, 8 u)  (u: machine epsilon of the compute dtype)
        lam = e * (trace(A^T A) / D + 1e-20),  G = A^T A + lam I
        y_j = G^{-1} A^T x_j                     -> squeezed frames (N, C, D, H, W)  (eq. 3.4)
        l_proj[n] = 1/(C H W) sum_j ||x_j - A y_j||_2     (eq. 3.5: the L2 norm, not squared)

    The solve is PWTP's (see vidops.pixelwise_temporal_projection): G = L diag(d) L^T with pivots
    floored at lam, G^{-1} A^T by substitution once per sample, the residual formed explicitly.
    Every result is finite for finite inputs and the residual is that of the projection onto the
    column space of A whatever its rank. For a rank-deficient A, y is the ridge (minimum-norm
    like) solution: its components along the null space, and the gradient w.r.t. the basis along
    directions that would raise the rank (x / lam at A = 0), carry a relative uncertainty of about
    u / e. A zero basis gives y = 0 and l_proj = mean ||x_j||. The gradient of ||p_j|| is
    p_j / ||p_j||, and 0 where the residual is exactly 0 (never NaN).

    Args:
        x: (N, C, K, H, W) frames, any strides; float32/float64 (half computed in float32).
        basis: (N, K, D) with 1 <= D <= 4, D < K; x's dtype (or float32 for half x); finite.
        eps: the relative regulariser, > 0; values below 8 u act as 8 u.
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available.

    Returns: y (N, C, D, H, W) in x's dtype and l_proj (N,) (float64 for float64 x, else float32).
    """
    check_args(x, basis, eps)
    return _temporal_squeeze_op(x, basis, float(eps), backend)
