"""`vidops.motion_band_pass`: the Motion Band-Pass Module's filter (operators.md §1.1).

    out[n,c,t] = sum_{j=0..2} tw[c,j] * (K_c (x) pad_s(x[n,c, s*t + j - p_t]))

K_c the per-channel k x k spatial filter (cross-correlation, spatial padding (k-1)/2, "reflect" or
"zeros"), tw the per-channel 3-tap temporal filter with stride s and temporal padding p_t
("valid": p_t = 0; "replicate": p_t = 1, frame -1 is frame 0 and frame T is frame T-1; "zeros").
T_out = (T + 2 p_t - 3) // s + 1. Backends: cpu (C++/OpenMP), cuda (CUDA C++), triton, reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _op
from ..reference.motion_band_pass import motion_band_pass as reference_forward
from ..reference.motion_band_pass import motion_band_pass_backward as reference_backward
from ..reference.motion_band_pass import output_frames, temporal_pad_size

OP_NAME = "motion_band_pass"
SPATIAL_PADDINGS = ("reflect", "zeros")
TEMPORAL_PADDINGS = ("valid", "replicate", "zeros")
CUDA_MAX_KERNEL = 1023       # the CUDA kernels' largest spatial kernel size
CUDA_MAX_STRIDE = 1 << 30    # and temporal stride


def check_args(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding,
               op=OP_NAME, x_name="x"):
    """Shapes, dtypes and devices of a band-pass call (busy_quiet's too: op and x_name name it)."""
    _checks.tensor(op, x_name, x, 5, "(N, C, T, H, W)")
    _checks.tensor(op, "spatial_weight", spatial_weight)
    _checks.tensor(op, "temporal_weight", temporal_weight)
    _checks.same_device(op, x_name, x, spatial_weight=spatial_weight, temporal_weight=temporal_weight)
    _checks.weight_dtype(op, x, spatial_weight=spatial_weight, temporal_weight=temporal_weight, x_name=x_name)
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
        raise ValueError(f"vidops.{op}: {x_name} has T={T} frames; the 3-tap temporal filter with "
                         f"temporal_padding={temporal_padding!r} needs T >= "
                         f"{3 - 2 * temporal_pad_size(temporal_padding)}")


def as_weights(spatial_weight, temporal_weight):
    """Accept the module parameter shapes (C,1,k,k) and (C,1,3) as views of (C,k,k) and (C,3);
    anything else (a non-tensor too) passes through to the checks."""
    if isinstance(spatial_weight, torch.Tensor) and spatial_weight.dim() == 4 and spatial_weight.shape[1] == 1:
        spatial_weight = spatial_weight.squeeze(1)
    if isinstance(temporal_weight, torch.Tensor) and temporal_weight.dim() == 3 and temporal_weight.shape[1] == 1:
        temporal_weight = temporal_weight.squeeze(1)
    return spatial_weight, temporal_weight


def cuda_limits(x, spatial_weight, temporal_weight, temporal_stride, *rest) -> Optional[str]:
    """The CUDA kernels' input rule (busy_quiet's too)."""
    if spatial_weight.shape[-1] > CUDA_MAX_KERNEL:
        return (f"the CUDA kernels take spatial kernels up to {CUDA_MAX_KERNEL}, got k="
                f"{spatial_weight.shape[-1]}")
    if temporal_stride > CUDA_MAX_STRIDE:
        return f"the CUDA kernels take temporal_stride up to 2^30, got {temporal_stride}"
    return None


def autocast_rule(args, device_type, dtype):
    """Under autocast x is taken as it comes (bf16/fp16 x read as is: rounding the clip to half
    precision would cost the LoG's accuracy, see motion_band_pass) and the weights in float32
    (x's dtype for float32/float64 x); float32 accumulation."""
    x, sw, tw, *rest = args
    wdt = torch.float32 if x.dtype in _op.HALF_DTYPES else x.dtype
    if isinstance(sw, torch.Tensor) and sw.is_floating_point():
        sw = sw.to(wdt)
    if isinstance(tw, torch.Tensor) and tw.is_floating_point():
        tw = tw.to(wdt)
    return (x, sw, tw, *rest)


def _fake(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding):
    N, C, T, H, W = x.shape
    return x.new_empty((N, C, output_frames(T, temporal_stride, temporal_padding), H, W))


OP = _op.Op(
    OP_NAME,
    "(Tensor x, Tensor spatial_weight, Tensor temporal_weight, int temporal_stride, str spatial_padding, "
    "str temporal_padding) -> Tensor out",
    check=check_args,
    fake=_fake,
    backends={
        "reference": _op.Impl(reference_forward, reference_backward),
        "cpu": _op.cpp("_motion_band_pass"),
        "cuda": _op.cpp("_motion_band_pass", supports=cuda_limits),
        "triton": _op.triton("motion_band_pass"),
    },
    autocast=autocast_rule,
)


def motion_band_pass(x: torch.Tensor, spatial_weight: torch.Tensor, temporal_weight: torch.Tensor,
                     temporal_stride: int = 1, spatial_padding: str = "reflect",
                     temporal_padding: str = "replicate", *, backend: Optional[str] = None) -> torch.Tensor:
    """Motion band-pass filter of a clip (operators.md §1.1).

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
    smooth content, fp16 ~5% (operators.md §1.4). Under torch.autocast (any device) x keeps the dtype it
    comes in and the weights are taken in float32, so the filter never runs in less precision
    than its input has.

    Returns: (N, C, T_out, H, W), T_out = (T + 2 p_t - 3) // s + 1, a fresh contiguous tensor.
    """
    spatial_weight, temporal_weight = as_weights(spatial_weight, temporal_weight)
    return OP(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding,
              backend=backend)
