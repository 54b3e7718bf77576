"""`vidops.depthwise_conv3d`: channel-wise (depthwise) 3-D convolution (spec 2).

    y[n,c,t,h,w] = sum_{a<kt, b<kh, e<kw} w[c,a,b,e] * x[n,c, t+a-pt, h+b-ph, w+e-pw]

cross-correlation (not flipped), stride 1, zero padding p = (k-1)/2 on every axis (odd kernel
sizes: the output has x's shape), no bias. RNL's region conv F_theta (3x7x7 in res3, 3x3x3 in
res4) and CPA's single-channel pyramid. Backends: cpu (C++/OpenMP, vectorised along W), cuda
(CUDA C++, shared-memory tiles), triton, reference (F.conv3d(groups=C)).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _dispatch
from ..reference.depthwise_conv3d import depthwise_conv3d as reference_forward
from ..reference.depthwise_conv3d import depthwise_conv3d_backward as reference_backward

OP = "depthwise_conv3d"


def _as_weight(weight):
    """Accept nn.Conv3d's depthwise weight (C, 1, kt, kh, kw) as a view of (C, kt, kh, kw)."""
    if isinstance(weight, torch.Tensor) and weight.dim() == 5 and weight.shape[1] == 1:
        return weight.squeeze(1)
    return weight


def check_args(x, weight, op=OP):
    _checks.tensor(op, "x", x, 5, "(N, C, T, H, W)")
    _checks.tensor(op, "weight", weight)
    _checks.same_device(op, "x", x, weight=weight)
    _checks.weight_dtype(op, x, weight=weight)
    C = x.shape[1]
    if weight.dim() != 4:
        raise ValueError(f"vidops.{op}: weight must be (C, kt, kh, kw) or (C, 1, kt, kh, kw) with "
                         f"C={C}, got shape {tuple(weight.shape)}")
    if weight.shape[0] != C:
        raise ValueError(f"vidops.{op}: weight has {weight.shape[0]} channels but x has C={C} "
                         f"(weight must be (C, kt, kh, kw))")
    ks = tuple(weight.shape[1:])
    if any(k < 1 or k % 2 == 0 for k in ks):
        raise ValueError(f"vidops.{op}: kernel sizes (kt, kh, kw) must be odd (zero 'same' padding "
                         f"(k-1)/2), got {ks}")


def _check_padding(weight, padding, op=OP):
    if isinstance(padding, str) and padding == "same":
        return
    same = tuple((k - 1) // 2 for k in weight.shape[-3:])
    pad = (padding,) * 3 if isinstance(padding, int) and not isinstance(padding, bool) else padding
    if isinstance(pad, (tuple, list)) and tuple(pad) == same:
        return
    raise ValueError(f"vidops.{op}: padding must be 'same' (zero padding (k-1)/2 = {same} for this "
                     f"weight), got {padding!r}")


# ---- backends --------------------------------------------------------------------------------

class _Reference:
    @staticmethod
    def forward(x, w):
        return reference_forward(x, w)

    @staticmethod
    def backward(grad, x, w, need_x, need_w):
        return reference_backward(grad, x, w, need_x, need_w)


class _Cpp:  # the same entry points serve the cpu and cuda backends (dispatch key picks the kernel)
    @staticmethod
    def forward(x, w):
        return torch.ops.vidops._depthwise_conv3d_fwd(x, w.contiguous())

    @staticmethod
    def backward(grad, x, w, need_x, need_w):
        return torch.ops.vidops._depthwise_conv3d_bwd(grad, x, w.contiguous(), need_x, need_w)


class _Triton:
    @staticmethod
    def forward(x, w):
        from .._triton import kernels
        return kernels(OP).forward(x, w)

    @staticmethod
    def backward(grad, x, w, need_x, need_w):
        from .._triton import kernels
        return kernels(OP).backward(grad, x, w, need_x, need_w)


_dispatch.register_op(OP, preference={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")})
_dispatch.register_backend(OP, "reference", _dispatch.always, _Reference)
_dispatch.register_backend(OP, "cpu", _dispatch.cpu_kernel("_depthwise_conv3d_fwd"), _Cpp)
_dispatch.register_backend(OP, "cuda", _dispatch.cuda_kernel("_depthwise_conv3d_fwd"), _Cpp)
_dispatch.register_backend(OP, "triton", _dispatch.triton_kernel(OP), _Triton)


# ---- the custom ops ----------------------------------------------------------------------------

@torch.library.custom_op("vidops::depthwise_conv3d", mutates_args=())
def _depthwise_conv3d_op(x: torch.Tensor, weight: torch.Tensor, backend: Optional[str]) -> torch.Tensor:
    check_args(x, weight)
    name = _dispatch.choose(OP, x.device, backend)
    return _dispatch.impl(OP, name).forward(x, weight)


@_depthwise_conv3d_op.register_fake
def _(x, weight, backend):
    check_args(x, weight)
    return x.new_empty(x.shape)


@torch.library.custom_op("vidops::depthwise_conv3d_backward", mutates_args=())
def _depthwise_conv3d_backward_op(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                                  compute_grad_x: bool, compute_grad_weight: bool,
                                  backend: Optional[str]) -> tuple[torch.Tensor, torch.Tensor]:
    name = _dispatch.choose(OP, x.device, backend)
    gx, gw = _dispatch.impl(OP, name).backward(grad_out, x, weight, compute_grad_x, compute_grad_weight)
    return gx.to(x.dtype).contiguous(), gw.to(weight.dtype).contiguous()


@_depthwise_conv3d_backward_op.register_fake
def _(grad_out, x, weight, compute_grad_x, compute_grad_weight, backend):
    return torch.empty_like(x, memory_format=torch.contiguous_format), \
        torch.empty_like(weight, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    x, weight, backend = inputs
    ctx.save_for_backward(x, weight)
    ctx.backend = backend


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if not (need_x or need_w):
        return None, None, None
    gx, gw = _depthwise_conv3d_backward_op(grad.contiguous(), x, weight, need_x, need_w, ctx.backend)
    return (gx if need_x else None), (gw if need_w else None), None


_depthwise_conv3d_op.register_autograd(_backward, setup_context=_setup_context)


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, padding="same", *,
                     backend: Optional[str] = None) -> torch.Tensor:
    """Channel-wise 3-D convolution of a clip (spec 2).

        y[n,c,t,h,w] = sum_{a,b,e} w[c,a,b,e] * x[n,c, t+a-pt, h+b-ph, w+e-pw]

    Args:
        x: (N, C, T, H, W), any strides (channels_last_3d too); N may be 0.
        weight: (C, kt, kh, kw) with odd sizes, or nn.Conv3d's depthwise (C, 1, kt, kh, kw).
            Same dtype as x, or float32 when x is float16/bfloat16.
        padding: "same" (zero padding (k-1)/2 per axis, the only mode; the equal tuple is accepted).
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available
            (see vidops.use_backend and VIDOPS_BACKEND).

    Stride 1, no bias. Half precision is read as is and accumulated in float32. Differentiable in
    x and weight (the weight gradient is a deterministic reduction on every backend).

    Returns: (N, C, T, H, W) in x's dtype, a fresh contiguous tensor.
    """
    weight = _as_weight(weight)
    check_args(x, weight)
    _check_padding(weight, padding)
    return _depthwise_conv3d_op(x, weight, backend)
