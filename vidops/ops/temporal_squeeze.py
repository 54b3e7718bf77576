"""`vidops.temporal_squeeze`: temporal squeeze pooling (thesis 3.2, TSP paper eqs. 4-5).

    A = basis[n] (K, D), shared by every position j = (c, h, w) of sample n
    e = max(eps, 8 u),  lam = e trace(A^T A) / D (e for A = 0),  G = A^T A + lam I   (PWTP's solve)
    y_j = G^{-1} A^T x_j             squeezed frames (N, C, D, H, W)
    l_proj[n] = 1/(C H W) sum_j ||x_j - A y_j||_2

Backends: cpu (C++/OpenMP), cuda (CUDA C++), triton, reference; all run this same algorithm.
"""
from __future__ import annotations

from typing import Optional

from .. import _checks, _op
from ..reference.temporal_squeeze import temporal_squeeze as reference_forward
from ..reference.temporal_squeeze import temporal_squeeze_backward as reference_backward
from .pixelwise_temporal_projection import MAX_D, basis_autocast, check_eps, loss_dtype

OP_NAME = "temporal_squeeze"


def check_args(x, basis, eps, op=OP_NAME) -> int:
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


def _fake(x, basis, eps):
    N, C, K, H, W = x.shape
    return x.new_empty((N, C, basis.shape[2], H, W)), x.new_empty((N,), dtype=loss_dtype(x.dtype))


def _checked(fn):
    def forward(x, basis, eps):
        _checks.finite(OP_NAME, "basis", basis)   # data-dependent: inside the op, not traced
        return fn(x, basis, eps)
    return forward


_CPP, _TRITON = _op.cpp("_temporal_squeeze"), _op.triton(OP_NAME)

OP = _op.Op(
    OP_NAME,
    "(Tensor x, Tensor basis, float eps) -> (Tensor y, Tensor l_proj)",
    check=check_args,
    fake=_fake,
    backends={
        "reference": _op.Impl(_checked(reference_forward), reference_backward),
        "cpu": _op.Impl(_checked(_CPP.forward), _CPP.backward, kernel=_CPP.kernel),
        "cuda": _op.Impl(_checked(_CPP.forward), _CPP.backward, kernel=_CPP.kernel),
        "triton": _op.Impl(_checked(_TRITON.forward), _TRITON.backward, module=OP_NAME),
    },
    post=lambda out, x, basis, eps: (out[0].to(x.dtype), out[1].to(loss_dtype(x.dtype))),
    autocast=basis_autocast,
)


def temporal_squeeze(x: torch.Tensor, basis: torch.Tensor, eps: float = 1e-6, *,
                     backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal squeeze pooling: project every (c, h, w) K-vector onto one subspace per sample.

        A = basis[n] (K, D);  e = max(eps, 8 u)  (u: machine epsilon of the compute dtype)
        lam = e * trace(A^T A) / D  (e for A = 0),  G = A^T A + lam I
        y_j = G^{-1} A^T x_j                     -> squeezed frames (N, C, D, H, W)  (eq. 3.4)
        l_proj[n] = 1/(C H W) sum_j ||x_j - A y_j||_2     (eq. 3.5: the L2 norm, not squared)

    The solve is PWTP's (see vidops.pixelwise_temporal_projection): G = L diag(d) L^T with pivots
    floored at lam, G^{-1} A^T by substitution once per sample, the residual formed explicitly.
    Every result is finite for finite inputs and the residual is that of the projection onto the
    column space of A whatever its rank. For a rank-deficient A, y is the ridge (minimum-norm
    like) solution: its components along the null space, and the gradient w.r.t. the basis along
    directions that would raise the rank, carry a relative uncertainty of about u / e. The
    regulariser is relative to the basis's own scale: l_proj, s y and the gradient w.r.t. x do not
    depend on a scale s of the basis and its gradient scales as 1/s, over the dtype's whole range
    (the solve runs on the basis scaled by a power of two per sample). A zero basis gives y = 0,
    l_proj = mean ||x_j|| and a zero gradient w.r.t. the basis. The gradient of ||p_j|| is
    p_j / ||p_j||, and 0 where the residual is exactly 0 (never NaN).

    Args:
        x: (N, C, K, H, W) frames, any strides; float32/float64 (half computed in float32).
        basis: (N, K, D) with 1 <= D <= 4, D < K; x's dtype (or float32 for half x); finite.
        eps: the relative regulariser, > 0; values below 8 u act as 8 u.
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available.

    Under torch.autocast x keeps its dtype and the basis is taken in x's dtype (float32 for half x).

    Returns: y (N, C, D, H, W) in x's dtype and l_proj (N,) (float64 for float64 x, else float32).
    """
    return OP(x, basis, eps, backend=backend)
