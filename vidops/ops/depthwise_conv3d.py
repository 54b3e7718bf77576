"""`vidops.depthwise_conv3d`: channel-wise (depthwise) 3-D convolution (operators.md §2).

    y[n,c,t,h,w] = sum_{a<kt, b<kh, e<kw} w[c,a,b,e] * x[n,c, t+a-pt, h+b-ph, w+e-pw]

cross-correlation (not flipped), stride 1, zero padding p = (k-1)/2 on every axis (odd kernel
sizes: the output has x's shape), no bias. RNL's region conv F_theta (3x7x7 in res3, 3x3x3 in
res4) and CPA's single-channel pyramid. Backends: cpu (C++/OpenMP, vectorised along W), cuda
(CUDA C++, shared-memory tiles), triton, reference (F.conv3d(groups=C)).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _op
from ..reference.depthwise_conv3d import depthwise_conv3d as reference_forward
from ..reference.depthwise_conv3d import depthwise_conv3d_backward as reference_backward

OP_NAME = "depthwise_conv3d"


def _as_weight(weight):
    """Accept nn.Conv3d's depthwise weight (C, 1, kt, kh, kw) as a view of (C, kt, kh, kw)."""
    if isinstance(weight, torch.Tensor) and weight.dim() == 5 and weight.shape[1] == 1:
        return weight.squeeze(1)
    return weight


def check_args(x, weight, op=OP_NAME):
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


def _check_padding(weight, padding, op=OP_NAME):
    if isinstance(padding, str) and padding == "same":
        return
    same = tuple((k - 1) // 2 for k in weight.shape[-3:])
    pad = (padding,) * 3 if isinstance(padding, int) and not isinstance(padding, bool) else padding
    if isinstance(pad, (tuple, list)) and tuple(pad) == same:
        return
    raise ValueError(f"vidops.{op}: padding must be 'same' (zero padding (k-1)/2 = {same} for this "
                     f"weight), got {padding!r}")


def autocast_rule(args, device_type, dtype):
    """Under autocast on CUDA a float32 x is read in the autocast dtype (as torch's convolutions
    run there: the op is memory-bound, half the bytes), on the CPU x is taken as it comes; the
    weight is float32 for half x, accumulation float32 (float64 for float64 x)."""
    x, weight = args
    if device_type == "cuda" and x.dtype == torch.float32:
        x = x.to(dtype)
    wdt = torch.float32 if x.dtype in _op.HALF_DTYPES else x.dtype
    return x, (weight.to(wdt) if weight.is_floating_point() else weight)


OP = _op.Op(
    OP_NAME,
    "(Tensor x, Tensor weight) -> Tensor y",
    check=check_args,
    fake=lambda x, weight: x.new_empty(x.shape),
    backends={
        "reference": _op.Impl(reference_forward, reference_backward),
        "cpu": _op.cpp("_depthwise_conv3d"),
        "cuda": _op.cpp("_depthwise_conv3d"),
        "triton": _op.triton("depthwise_conv3d"),
    },
    needs_input_grad=True,   # backward(grad_y, x, weight, need_x, need_weight)
    autocast=autocast_rule,
)


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, padding="same", *,
                     backend: Optional[str] = None) -> torch.Tensor:
    """Channel-wise 3-D convolution of a clip (operators.md §2).

        y[n,c,t,h,w] = sum_{a,b,e} w[c,a,b,e] * x[n,c, t+a-pt, h+b-ph, w+e-pw]

    Args:
        x: (N, C, T, H, W), any strides (channels_last_3d too); N may be 0.
        weight: (C, kt, kh, kw) with odd sizes, or nn.Conv3d's depthwise (C, 1, kt, kh, kw).
            Same dtype as x, or float32 when x is float16/bfloat16.
        padding: "same" (zero padding (k-1)/2 per axis, the only mode; the equal tuple is accepted).
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available
            (see vidops.use_backend and VIDOPS_BACKEND).

    Stride 1, no bias. Half precision is read as is and accumulated in float32. Under
    torch.autocast a float32 x is read in the autocast dtype on CUDA and as is on the CPU. Differentiable in
    x and weight (the weight gradient is a deterministic reduction on every backend).

    Returns: (N, C, T, H, W) in x's dtype, a fresh contiguous tensor.
    """
    weight = _as_weight(weight)
    if isinstance(weight, torch.Tensor):
        _check_padding(weight, padding)
    return OP(x, weight, backend=backend)
