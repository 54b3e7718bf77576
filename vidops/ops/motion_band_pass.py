"""`vidops.motion_band_pass`: the Motion Band-Pass Module's filter (spec 1.1).

    out[n,c,t] = sum_{j=0..2} tw[c,j] * (K_c (x) pad_s(x[n,c, s*t + j - p_t]))

K_c the per-channel k x k spatial filter (cross-correlation, spatial padding (k-1)/2, "reflect" or
"zeros"), tw the per-channel 3-tap temporal filter with stride s and temporal padding p_t
("valid": p_t = 0; "replicate": p_t = 1, frame -1 is frame 0 and frame T is frame T-1; "zeros").
T_out = (T + 2 p_t - 3) // s + 1. Backends: cpu (C++/OpenMP), cuda (CUDA C++), triton, reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _dispatch
from ..reference.motion_band_pass import motion_band_pass as reference_forward
from ..reference.motion_band_pass import motion_band_pass_backward as reference_backward
from ..reference.motion_band_pass import output_frames, temporal_pad_size

OP = "motion_band_pass"
SPATIAL_PADDINGS = ("reflect", "zeros")
TEMPORAL_PADDINGS = ("valid", "replicate", "zeros")


def check_args(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding, op=OP):
    _checks.tensor(op, "x", x, 5, "(N, C, T, H, W)")
    _checks.tensor(op, "spatial_weight", spatial_weight)
    _checks.tensor(op, "temporal_weight", temporal_weight)
    _checks.same_device(op, "x", x, spatial_weight=spatial_weight, temporal_weight=temporal_weight)
    _checks.weight_dtype(op, x, spatial_weight=spatial_weight, temporal_weight=temporal_weight)
    _checks.positive_int(op, "temporal_stride", temporal_stride)
    _checks.choice(op, "spatial_padding", spatial_padding, SPATIAL_PADDINGS)
    _checks.choice(op, "temporal_padding", temporal_padding, TEMPORAL_PADDINGS)
    N, C, T, H, W = x.shape
    sw, tw = spatial_weight, temporal_weight
    if sw.dim() != 3 or sw.shape[0] != C or sw.shape[1] != sw.shape[2] or sw.shape[1] % 2 == 0:
        raise ValueError(f"vidops.{op}: spatial_weight must be (C, k, k) with C={C} and odd k, "
                         f"got shape {tuple(sw.shape)}")
    if tw.shape != (C, 3):
        raise ValueError(f"vidops.{op}: temporal_weight must be (C, 3) with C={C}, got shape {tuple(tw.shape)}")
    r = (sw.shape[1] - 1) // 2
    if spatial_padding == "reflect" and (H <= r or W <= r):
        raise ValueError(f"vidops.{op}: reflect padding of {r} needs H and W > {r} (kernel size "
                         f"{sw.shape[1]}), got H={H}, W={W}")
    if T + 2 * temporal_pad_size(temporal_padding) < 3:
        raise ValueError(f"vidops.{op}: x has T={T} frames; the 3-tap temporal filter with "
                         f"temporal_padding={temporal_padding!r} needs T >= "
                         f"{3 - 2 * temporal_pad_size(temporal_padding)}")


def _as_weights(spatial_weight, temporal_weight):
    """Accept the module parameter shapes (C,1,k,k) and (C,1,3) as views of (C,k,k) and (C,3)."""
    if spatial_weight.dim() == 4 and spatial_weight.shape[1] == 1:
        spatial_weight = spatial_weight.squeeze(1)
    if temporal_weight.dim() == 3 and temporal_weight.shape[1] == 1:
        temporal_weight = temporal_weight.squeeze(1)
    return spatial_weight, temporal_weight


# ---- backends --------------------------------------------------------------------------------

class _Reference:
    @staticmethod
    def forward(x, sw, tw, stride, sp, tp):
        return reference_forward(x, sw, tw, stride, sp, tp)

    @staticmethod
    def backward(grad, x, sw, tw, stride, sp, tp):
        return reference_backward(grad, x, sw, tw, stride, sp, tp)


class _Cpp:  # the same entry points serve the cpu and cuda backends (dispatch key picks the kernel)
    @staticmethod
    def forward(x, sw, tw, stride, sp, tp):
        return torch.ops.vidops._motion_band_pass_fwd(x, sw.contiguous(), tw.contiguous(), stride, sp, tp)

    @staticmethod
    def backward(grad, x, sw, tw, stride, sp, tp):
        return torch.ops.vidops._motion_band_pass_bwd(grad, x, sw.contiguous(), tw.contiguous(), stride, sp, tp)


class _Triton:
    @staticmethod
    def forward(x, sw, tw, stride, sp, tp):
        from .._triton import kernels
        return kernels(OP).forward(x, sw, tw, stride, sp, tp)

    @staticmethod
    def backward(grad, x, sw, tw, stride, sp, tp):
        from .._triton import kernels
        return kernels(OP).backward(grad, x, sw, tw, stride, sp, tp)


_dispatch.register_op(OP, preference={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")})
_dispatch.register_backend(OP, "reference", _dispatch.always, _Reference)
_dispatch.register_backend(OP, "cpu", _dispatch.cpu_kernel("_motion_band_pass_fwd"), _Cpp)
_dispatch.register_backend(OP, "cuda", _dispatch.cuda_kernel("_motion_band_pass_fwd"), _Cpp)
_dispatch.register_backend(OP, "triton", _dispatch.triton_kernel(OP), _Triton)


# ---- the custom ops ----------------------------------------------------------------------------

@torch.library.custom_op("vidops::motion_band_pass", mutates_args=())
def _motion_band_pass_op(x: torch.Tensor, spatial_weight: torch.Tensor, temporal_weight: torch.Tensor,
                         temporal_stride: int, spatial_padding: str, temporal_padding: str,
                         backend: Optional[str]) -> torch.Tensor:
    check_args(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding)
    name = _dispatch.choose(OP, x.device, backend)
    return _dispatch.impl(OP, name).forward(x, spatial_weight, temporal_weight, temporal_stride,
                                            spatial_padding, temporal_padding)


@_motion_band_pass_op.register_fake
def _(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding, backend):
    check_args(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding)
    N, C, T, H, W = x.shape
    T_out = output_frames(T, temporal_stride, temporal_padding)
    return x.new_empty((N, C, T_out, H, W))


@torch.library.custom_op("vidops::motion_band_pass_backward", mutates_args=())
def _motion_band_pass_backward_op(grad_out: torch.Tensor, x: torch.Tensor, spatial_weight: torch.Tensor,
                                  temporal_weight: torch.Tensor, temporal_stride: int, spatial_padding: str,
                                  temporal_padding: str, backend: Optional[str]
                                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    name = _dispatch.choose(OP, x.device, backend)
    gx, gs, gt = _dispatch.impl(OP, name).backward(grad_out, x, spatial_weight, temporal_weight,
                                                   temporal_stride, spatial_padding, temporal_padding)
    return gx.to(x.dtype), gs.to(spatial_weight.dtype), gt.to(temporal_weight.dtype)


@_motion_band_pass_backward_op.register_fake
def _(grad_out, x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding, backend):
    return torch.empty_like(x, memory_format=torch.contiguous_format), \
        torch.empty_like(spatial_weight, memory_format=torch.contiguous_format), \
        torch.empty_like(temporal_weight, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    x, sw, tw, stride, sp, tp, backend = inputs
    ctx.save_for_backward(x, sw, tw)
    ctx.args = (stride, sp, tp, backend)


def _backward(ctx, grad):
    x, sw, tw = ctx.saved_tensors
    gx, gs, gt = _motion_band_pass_backward_op(grad.contiguous(), x, sw, tw, *ctx.args)
    return gx, gs, gt, None, None, None, None


_motion_band_pass_op.register_autograd(_backward, setup_context=_setup_context)


def motion_band_pass(x: torch.Tensor, spatial_weight: torch.Tensor, temporal_weight: torch.Tensor,
                     temporal_stride: int = 1, spatial_padding: str = "reflect",
                     temporal_padding: str = "replicate", *, backend: Optional[str] = None) -> torch.Tensor:
    """Motion band-pass filter of a clip (spec 1.1).

        out[n,c,t] = sum_{j=0..2} tw[c,j] * (K_c (x) pad_s(x[n,c, s*t + j - p_t]))

    Args:
        x: (N, C, T, H, W) clip, any strides (channels_last_3d too).
        spatial_weight: (C, k, k) per-channel spatial filter (odd k), or the module's (C, 1, k, k).
        temporal_weight: (C, 3) per-channel temporal taps, or the module's (C, 1, 3).
        temporal_stride: s; the stem uses 3 with temporal_padding="valid" (T_out = T // 3).
        spatial_padding: "reflect" (the reference) or "zeros", (k-1)/2 on every side.
        temporal_padding: "replicate" (the lateral reference), "zeros" or "valid" (no padding).
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available
            (see vidops.use_backend and VIDOPS_BACKEND).

    Half-precision x is read as is and accumulated in float32 with float32 weights; the normalised
    LoG's large L1 norm (~1600 for the stem) makes bf16 *inputs* lose ~38% relative accuracy on
    smooth content, fp16 ~5% (spec 1.4).

    Returns: (N, C, T_out, H, W), T_out = (T + 2 p_t - 3) // s + 1, a fresh contiguous tensor.
    """
    spatial_weight, temporal_weight = _as_weights(spatial_weight, temporal_weight)
    check_args(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding)
    return _motion_band_pass_op(x, spatial_weight, temporal_weight, temporal_stride,
                                spatial_padding, temporal_padding, backend)
