"""`vidops.busy_quiet`: the Busy-Quiet Net input split in one pass over the clip (operators.md §1.3).

    busy[n,c,s]  = sum_j tw[c,j] * (K_c (x) reflectpad(clip[n,c,3s+j]))      (motion band-pass stem)
    quiet[n,c,s] = clip[n,c,3s]                             (quiet="first", the public code)
                 | mean_j clip[n,c,3s+j] - busy[n,c,s]      (quiet="mean_minus_busy", thesis eq. 5.4)
    quiet is then optionally resized bilinearly by quiet_scale (align_corners=False, no antialias).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .. import _checks, _op
from ..reference.busy_quiet import busy_quiet as reference_forward
from ..reference.busy_quiet import bilinear_matrix, quiet_output_size
from .motion_band_pass import OP as MBP
from .motion_band_pass import as_weights, autocast_rule, check_args as band_pass_checks, cuda_limits

OP_NAME = "busy_quiet"
QUIET_MODES = ("first", "mean_minus_busy")
MAX_ELEMENTS = 1 << 62  # a quiet output larger than this cannot be allocated (int64 sizes)


def check_args(clip, spatial_weight, temporal_weight, quiet, quiet_scale):
    band_pass_checks(clip, spatial_weight, temporal_weight, 3, "reflect", "valid", op=OP_NAME, x_name="clip")
    _checks.choice(OP_NAME, "quiet", quiet, QUIET_MODES)
    N, C, T, H, W = clip.shape
    if T % 3 != 0:
        raise ValueError(f"vidops.{OP_NAME}: clip must hold S segments of 3 frames (T a multiple of 3), got T={T}")
    if quiet_scale is not None:
        if isinstance(quiet_scale, bool) or not isinstance(quiet_scale, (int, float)) \
                or not math.isfinite(quiet_scale) or quiet_scale <= 0:
            raise ValueError(f"vidops.{OP_NAME}: quiet_scale must be a positive finite number or None, "
                             f"got {quiet_scale!r}")
        h, w = quiet_output_size(H, W, quiet_scale)
        if H * W and (h < 1 or w < 1):
            raise ValueError(f"vidops.{OP_NAME}: quiet_scale={quiet_scale} maps H x W = {H} x "
                             f"{W} to an empty {h} x {w} image")
        if N * C * (T // 3) * h * w >= MAX_ELEMENTS:
            raise ValueError(f"vidops.{OP_NAME}: quiet_scale={quiet_scale} maps H x W = {H} x {W} to a "
                             f"{h} x {w} image, too large to allocate")


def _fake(clip, spatial_weight, temporal_weight, quiet, quiet_scale):
    N, C, T, H, W = clip.shape
    h, w = quiet_output_size(H, W, quiet_scale)
    return clip.new_empty((N, C, T // 3, H, W)), clip.new_empty((N, C, T // 3, h, w))


def _quiet_adjoint(grad_q, clip_shape, quiet, quiet_scale, dtype):
    """Gradient of quiet w.r.t. the clip's frames (before the '- busy' term), and the part that
    flows into busy. Cheap: these are strided slices, a mean and a bilinear resize."""
    N, C, T, H, W = clip_shape
    S = T // 3
    g = grad_q
    if quiet_scale is not None:
        h, w = grad_q.shape[-2:]
        rh = bilinear_matrix(h, H, quiet_scale, grad_q.dtype, grad_q.device)
        rw = bilinear_matrix(w, W, quiet_scale, grad_q.dtype, grad_q.device)
        g = torch.einsum("ph,ncspq,qw->ncshw", rh, grad_q, rw)
    gclip = torch.zeros(clip_shape, dtype=dtype, device=grad_q.device)
    if quiet == "first":
        gclip[:, :, 0::3] = g
        return gclip, None
    gclip.view(N, C, S, 3, H, W).add_((g / 3).unsqueeze(3).to(dtype))
    return gclip, -g


def _backward_on(backend: str):
    """The backward of busy_quiet on `backend`: the quiet adjoint, then motion_band_pass's
    backward on the same backend (the stem: stride 3, reflect, valid)."""

    def backward(grad_busy, grad_quiet, clip, sw, tw, quiet, quiet_scale):
        gclip_q, gbusy_from_q = _quiet_adjoint(grad_quiet, clip.shape, quiet, quiet_scale, clip.dtype)
        gbusy = grad_busy if gbusy_from_q is None else grad_busy + gbusy_from_q.to(grad_busy.dtype)
        gx, gs, gt = MBP.backend(backend).impl.backward(gbusy.to(clip.dtype), clip, sw, tw, 3, "reflect", "valid")
        return gx + gclip_q, gs, gt

    return backward


def _cpp_forward(clip, sw, tw, quiet, quiet_scale):
    scale = -1.0 if quiet_scale is None else quiet_scale
    return torch.ops.vidops._busy_quiet_fwd(clip, sw, tw, quiet, scale)


def _cuda_limits(clip, sw, tw, quiet, quiet_scale):
    return cuda_limits(clip, sw, tw, 3)


OP = _op.Op(
    OP_NAME,
    "(Tensor clip, Tensor spatial_weight, Tensor temporal_weight, str quiet, float? quiet_scale) "
    "-> (Tensor busy, Tensor quiet_out)",
    check=check_args,
    fake=_fake,
    backends={
        "reference": _op.Impl(reference_forward, _backward_on("reference")),
        "cpu": _op.Impl(_cpp_forward, _backward_on("cpu"), kernel="_busy_quiet"),
        "cuda": _op.Impl(_cpp_forward, _backward_on("cuda"), kernel="_busy_quiet", supports=_cuda_limits),
        "triton": _op.Impl(_op.triton("busy_quiet").forward, _backward_on("triton"), module="busy_quiet"),
    },
    autocast=autocast_rule,
)


def busy_quiet(clip: torch.Tensor, spatial_weight: torch.Tensor, temporal_weight: torch.Tensor,
               quiet: str = "first", quiet_scale: Optional[float] = None, *,
               backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a BQN clip into its Busy and Quiet inputs in one pass (operators.md §1.3).

        busy[n,c,s]  = sum_j tw[c,j] * (K_c (x) reflectpad(clip[n,c,3s+j]))
        quiet[n,c,s] = clip[n,c,3s]                          quiet="first" (public code, default)
                     = mean_j clip[n,c,3s+j] - busy[n,c,s]   quiet="mean_minus_busy" (thesis eq. 5.4)

    Args:
        clip: (N, C, 3S, H, W), S segments of 3 consecutive frames.
        spatial_weight: (C, k, k) or (C, 1, k, k); temporal_weight: (C, 3) or (C, 1, 3).
        quiet: "first" or "mean_minus_busy".
        quiet_scale: None, or the bilinear resize factor of quiet (0.625 = 160/256 in the
            reference; align_corners=False, no antialias, output floor(H * scale)).
        backend: as for motion_band_pass; the gradient goes through motion_band_pass's backward
            on the backend that ran the forward.

    Returns: busy (N, C, S, H, W) and quiet (N, C, S, h, w), fresh contiguous tensors.
    """
    spatial_weight, temporal_weight = as_weights(spatial_weight, temporal_weight)
    return OP(clip, spatial_weight, temporal_weight, quiet, quiet_scale, backend=backend)
