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

from .. import _checks, _op
from ..reference.temporal_shift import temporal_shift as reference_shift

OP_NAME = "temporal_shift"


def _int_arg(op: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"vidops.{op}: {name} must be an int, got {type(value).__name__} {value!r}")
    _checks.positive_int(op, name, value)


def check_args(x, num_segments, fold_div, op=OP_NAME) -> None:
    _checks.tensor(op, "x", x, 4, "(N*T, C, H, W)")
    _int_arg(op, "num_segments", num_segments)
    _int_arg(op, "fold_div", fold_div)
    NT, C = x.shape[:2]
    if NT % num_segments != 0:
        raise ValueError(f"vidops.{op}: x.shape[0] = N*T = {NT} must be a multiple of num_segments="
                         f"{num_segments}, got shape {tuple(x.shape)}")
    if C < fold_div:
        raise ValueError(f"vidops.{op}: x must have C >= fold_div={fold_div} channels (fold = C // fold_div "
                         f"would be 0 and nothing would shift), got C={C}")


def output_memory_format(x: torch.Tensor, *args) -> torch.memory_format:
    """channels_last for a channels_last x (that is not also contiguous), else contiguous; every
    backend's output (and gradient) has this layout."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _empty_like(x, *args):
    return torch.empty_like(x, memory_format=output_memory_format(x))


def _reference_backward(grad_y, num_segments, fold_div):
    return reference_shift(grad_y, num_segments, fold_div, backward=True)


def _setup_double(ctx, inputs, output):
    _, ctx.num_segments, ctx.fold_div, ctx.backend = inputs


def _double_backward(ctx, grad_grad):
    # the mirror shift is linear: its gradient is the forward shift, on the same backend
    return OP.forward_op(grad_grad, ctx.num_segments, ctx.fold_div, ctx.backend), None, None, None


OP = _op.Op(
    OP_NAME,
    "(Tensor x, int num_segments, int fold_div) -> Tensor y",
    check=check_args,
    fake=_empty_like,
    backends={
        "reference": _op.Impl(reference_shift, _reference_backward),
        "cpu": _op.cpp("_temporal_shift"),
        "cuda": _op.cpp("_temporal_shift"),
        "triton": _op.triton("temporal_shift"),
    },
    backward="(Tensor grad_y, int num_segments, int fold_div) -> Tensor grad_x",
    save=lambda x, num_segments, fold_div, outs: (num_segments, fold_div),
    grads_of=("x",),
    backward_fake=_empty_like,
    output_format=output_memory_format,   # the reference's torch.cat picks its own layout; this fixes it
    backward_autograd=(_setup_double, _double_backward),
)
_temporal_shift_op = OP.forward_op
_temporal_shift_backward_op = OP.backward_op


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
    return OP(x, num_segments, fold_div, backend=backend)
