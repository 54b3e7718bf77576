"""`vidops.temporal_relation`: PWTP's temporal relation descriptor (spec 3.1, thesis eq. 3.9).

    u[n, pair(t1, t2), i] = (1/C') sum_c f[n, c, t1, i] * f[n, c, t2, i],   t1 < t2 ascending

Backends: cpu (C++/OpenMP), cuda (CUDA C++), triton, reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _dispatch
from ..reference.temporal_relation import temporal_relation as reference_forward
from ..reference.temporal_relation import temporal_relation_backward as reference_backward

OP = "temporal_relation"


def check_args(f, op=OP) -> None:
    _checks.tensor(op, "f", f, 5, "(N, C', T, h, w)")
    N, C, T, h, w = f.shape
    if C < 1:
        raise ValueError(f"vidops.{op}: f must have C' >= 1 channels, got shape {tuple(f.shape)}")
    if T < 2:
        raise ValueError(f"vidops.{op}: f must have T >= 2 frames (one pair at least), got T={T}")


def num_pairs(T: int) -> int:
    return T * (T - 1) // 2


class _Reference:
    @staticmethod
    def forward(f):
        return reference_forward(f)

    @staticmethod
    def backward(grad_u, f):
        return reference_backward(grad_u, f)


class _Cpp:
    @staticmethod
    def forward(f):
        return torch.ops.vidops._temporal_relation_fwd(f)

    @staticmethod
    def backward(grad_u, f):
        return torch.ops.vidops._temporal_relation_bwd(grad_u, f)


class _Triton:
    @staticmethod
    def forward(f):
        from .._triton import kernels
        return kernels(OP).forward(f)

    @staticmethod
    def backward(grad_u, f):
        from .._triton import kernels
        return kernels(OP).backward(grad_u, f)


_dispatch.register_op(OP, preference={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")})
_dispatch.register_backend(OP, "reference", _dispatch.always, _Reference)
_dispatch.register_backend(OP, "cpu", _dispatch.cpu_kernel("_temporal_relation_fwd"), _Cpp)
_dispatch.register_backend(OP, "cuda", _dispatch.cuda_kernel("_temporal_relation_fwd"), _Cpp)
_dispatch.register_backend(OP, "triton", _dispatch.triton_kernel(OP), _Triton)


def _empty_output(f):
    N, C, T, h, w = f.shape
    return f.new_empty((N, num_pairs(T), h, w))


@torch.library.custom_op("vidops::temporal_relation", mutates_args=())
def _temporal_relation_op(f: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    check_args(f)
    if f.numel() == 0:
        return _empty_output(f)
    name = _dispatch.choose(OP, f.device, backend)
    return _dispatch.impl(OP, name).forward(f).to(f.dtype)


@_temporal_relation_op.register_fake
def _(f, backend):
    check_args(f)
    return _empty_output(f)


@torch.library.custom_op("vidops::temporal_relation_backward", mutates_args=())
def _temporal_relation_backward_op(grad_u: torch.Tensor, f: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    if f.numel() == 0:
        return torch.zeros_like(f, memory_format=torch.contiguous_format)
    name = _dispatch.choose(OP, f.device, backend)
    return _dispatch.impl(OP, name).backward(grad_u, f).to(f.dtype)


@_temporal_relation_backward_op.register_fake
def _(grad_u, f, backend):
    return torch.empty_like(f, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    f, backend = inputs
    ctx.save_for_backward(f)
    ctx.backend = backend


def _backward(ctx, grad_u):
    f, = ctx.saved_tensors
    return _temporal_relation_backward_op(grad_u.contiguous(), f, ctx.backend), None


_temporal_relation_op.register_autograd(_backward, setup_context=_setup_context)


def temporal_relation(f: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """Temporal relation descriptor of every position (spec 3.1, thesis eq. 3.9).

        u[n, pair(t1, t2), i] = (1/C') sum_c f[n, c, t1, i] * f[n, c, t2, i]

    for the P = T(T-1)/2 pairs t1 < t2 in ascending (t1, t2) order (torch.triu_indices(T, T, 1)).

    Args:
        f: (N, C', T, h, w) features (the PWTP module's strided conv output), any strides;
            float32/float64 (half read as is, accumulated in float32). T >= 2.
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available.

    Returns: u (N, T(T-1)/2, h, w) in f's dtype, a fresh contiguous tensor.
    """
    check_args(f)
    return _temporal_relation_op(f, backend)
