"""`vidops.temporal_shift`: TSM's temporal shift of a (N*T, C, H, W) batch of frames.

    x viewed as (N, T, C, H, W), fold = C // fold_div:
    out[:, t, c] = x[:, t + 1, c]  for c <  fold          (0 at t = T - 1)
    out[:, t, c] = x[:, t - 1, c]  for fold <= c < 2 fold (0 at t = 0)
    out[:, t, c] = x[:, t, c]      for c >= 2 fold

Backward: the mirror shift (its own custom op, whose gradient is the forward again).
Backends: cpu (C++/at::parallel_for), cuda (CUDA C++), triton, reference (slices + torch.cat).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _dispatch
from ..reference.temporal_shift import temporal_shift as reference_shift

OP = "temporal_shift"


def check_args(x, num_segments, fold_div, op=OP) -> None:
    _checks.tensor(op, "x", x, 4, "(N*T, C, H, W)")
    _checks.positive_int(op, "num_segments", num_segments)
    _checks.positive_int(op, "fold_div", fold_div)
    NT, C = x.shape[:2]
    if NT % num_segments != 0:
        raise ValueError(f"vidops.{op}: x.shape[0] = N*T = {NT} must be a multiple of num_segments="
                         f"{num_segments}, got shape {tuple(x.shape)}")
    if C < fold_div:
        raise ValueError(f"vidops.{op}: x must have C >= fold_div={fold_div} channels (fold = C // fold_div "
                         f"would be 0 and nothing would shift), got C={C}")


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a channels_last x (that is not also contiguous), else contiguous; every
    backend's output has this layout."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class _Reference:
    @staticmethod
    def forward(x, num_segments, fold_div):
        return reference_shift(x, num_segments, fold_div)

    @staticmethod
    def backward(grad_out, num_segments, fold_div):
        return reference_shift(grad_out, num_segments, fold_div, backward=True)


class _Cpp:
    @staticmethod
    def forward(x, num_segments, fold_div):
        return torch.ops.vidops._temporal_shift_fwd(x, num_segments, fold_div)

    @staticmethod
    def backward(grad_out, num_segments, fold_div):
        return torch.ops.vidops._temporal_shift_bwd(grad_out, num_segments, fold_div)


class _Triton:
    @staticmethod
    def forward(x, num_segments, fold_div):
        from .._triton import kernels
        return kernels(OP).forward(x, num_segments, fold_div)

    @staticmethod
    def backward(grad_out, num_segments, fold_div):
        from .._triton import kernels
        return kernels(OP).backward(grad_out, num_segments, fold_div)


_dispatch.register_op(OP, preference={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")})
_dispatch.register_backend(OP, "reference", _dispatch.always, _Reference)
_dispatch.register_backend(OP, "cpu", _dispatch.cpu_kernel("_temporal_shift_fwd"), _Cpp)
_dispatch.register_backend(OP, "cuda", _dispatch.cuda_kernel("_temporal_shift_fwd"), _Cpp)
_dispatch.register_backend(OP, "triton", _dispatch.triton_kernel(OP), _Triton)


def _empty_output(x):
    return torch.empty_like(x, memory_format=output_memory_format(x))


def _run(x, num_segments, fold_div, backend, direction):
    check_args(x, num_segments, fold_div)
    if x.numel() == 0:
        return _empty_output(x)
    impl = _dispatch.impl(OP, _dispatch.choose(OP, x.device, backend))
    out = getattr(impl, direction)(x, num_segments, fold_div)
    # the reference's torch.cat picks its own layout; the op's output layout is fixed (the fake's)
    return out.contiguous(memory_format=output_memory_format(x))


@torch.library.custom_op("vidops::temporal_shift", mutates_args=())
def _temporal_shift_op(x: torch.Tensor, num_segments: int, fold_div: int, backend: Optional[str]) -> torch.Tensor:
    return _run(x, num_segments, fold_div, backend, "forward")


@torch.library.custom_op("vidops::temporal_shift_backward", mutates_args=())
def _temporal_shift_backward_op(grad_out: torch.Tensor, num_segments: int, fold_div: int,
                                backend: Optional[str]) -> torch.Tensor:
    return _run(grad_out, num_segments, fold_div, backend, "backward")


@_temporal_shift_op.register_fake
def _(x, num_segments, fold_div, backend):
    check_args(x, num_segments, fold_div)
    return _empty_output(x)


@_temporal_shift_backward_op.register_fake
def _(grad_out, num_segments, fold_div, backend):
    check_args(grad_out, num_segments, fold_div)
    return _empty_output(grad_out)


def _setup_context(ctx, inputs, output):
    _, ctx.num_segments, ctx.fold_div, ctx.backend = inputs


def _forward_grad(ctx, grad_out):
    return _temporal_shift_backward_op(grad_out, ctx.num_segments, ctx.fold_div, ctx.backend), None, None, None


def _backward_grad(ctx, grad_grad):
    return _temporal_shift_op(grad_grad, ctx.num_segments, ctx.fold_div, ctx.backend), None, None, None


_temporal_shift_op.register_autograd(_forward_grad, setup_context=_setup_context)
_temporal_shift_backward_op.register_autograd(_backward_grad, setup_context=_setup_context)


def temporal_shift(x: torch.Tensor, num_segments: int, fold_div: int = 8, *,
                   backend: Optional[str] = None) -> torch.Tensor:
    """TSM's temporal shift: a fold of the channels reads the next frame, a fold the previous one.

    With x viewed as (N, T, C, H, W), T = num_segments, and fold = C // fold_div:

        out[:, t, c] = x[:, t + 1, c]  for 0 <= c < fold        (zero at the last frame)
        out[:, t, c] = x[:, t - 1, c]  for fold <= c < 2 fold   (zero at the first frame)
        out[:, t, c] = x[:, t, c]      for c >= 2 fold          (C not a multiple of fold_div:
                                                                 the extra channels stay put)

    The gradient is the mirror shift (the first fold's gradient goes to frame t + 1, the second's
    to t - 1). Never in place: a new tensor (channels_last for a channels_last x, else
    contiguous), so it traces, compiles and exports.

    Args:
        x: (N*T, C, H, W) frames of N clips of T frames each, any strides; float16, bfloat16,
            float32 or float64 (copied exactly). N*T = 0 gives an empty output.
        num_segments: T, frames per clip (a positive int dividing x.shape[0]).
        fold_div: fold = C // fold_div (a positive int); C < fold_div is an error (TSM's code
            would shift nothing).
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available.
    """
    check_args(x, num_segments, fold_div)
    return _temporal_shift_op(x, num_segments, fold_div, backend)
