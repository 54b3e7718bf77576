"""`vidops.busy_quiet`: the Busy-Quiet Net input split in one pass over the clip (spec 1.3).

    busy[n,c,s]  = sum_j tw[c,j] * (K_c (x) reflectpad(clip[n,c,3s+j]))      (motion band-pass stem)
    quiet[n,c,s] = clip[n,c,3s]                             (quiet="first", the public code)
                 | mean_j clip[n,c,3s+j] - busy[n,c,s]      (quiet="mean_minus_busy", thesis eq. 5.4)
    quiet is then optionally resized bilinearly by quiet_scale (align_corners=False, no antialias).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _dispatch
from ..reference.busy_quiet import busy_quiet as reference_forward
from ..reference.busy_quiet import bilinear_matrix, quiet_output_size
from .motion_band_pass import _as_weights, _motion_band_pass_backward_op
from .motion_band_pass import check_args as check_mbp_args

OP = "busy_quiet"
QUIET_MODES = ("first", "mean_minus_busy")


def check_args(clip, spatial_weight, temporal_weight, quiet, quiet_scale):
    check_mbp_args(clip, spatial_weight, temporal_weight, 3, "reflect", "valid", op=OP)
    _checks.choice(OP, "quiet", quiet, QUIET_MODES)
    T = clip.shape[2]
    if T % 3 != 0:
        raise ValueError(f"vidops.{OP}: clip must hold S segments of 3 frames (T a multiple of 3), got T={T}")
    if quiet_scale is not None:
        if not isinstance(quiet_scale, (int, float)) or not (0 < quiet_scale) or quiet_scale != quiet_scale:
            raise ValueError(f"vidops.{OP}: quiet_scale must be a positive number or None, got {quiet_scale!r}")
        h, w = quiet_output_size(clip.shape[3], clip.shape[4], quiet_scale)
        if h < 1 or w < 1:
            raise ValueError(f"vidops.{OP}: quiet_scale={quiet_scale} maps H x W = {clip.shape[3]} x "
                             f"{clip.shape[4]} to an empty {h} x {w} image")


class _Reference:
    @staticmethod
    def forward(clip, sw, tw, quiet, quiet_scale):
        return reference_forward(clip, sw, tw, quiet, quiet_scale)


class _Cpp:
    @staticmethod
    def forward(clip, sw, tw, quiet, quiet_scale):
        scale = -1.0 if quiet_scale is None else float(quiet_scale)
        return torch.ops.vidops._busy_quiet_fwd(clip, sw.contiguous(), tw.contiguous(), quiet, scale)


class _Triton:
    @staticmethod
    def forward(clip, sw, tw, quiet, quiet_scale):
        from .._triton import kernels
        return kernels(OP).forward(clip, sw, tw, quiet, quiet_scale)


_dispatch.register_op(OP, preference={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")})
_dispatch.register_backend(OP, "reference", _dispatch.always, _Reference)
_dispatch.register_backend(OP, "cpu", _dispatch.cpu_kernel("_busy_quiet_fwd"), _Cpp)
_dispatch.register_backend(OP, "cuda", _dispatch.cuda_kernel("_busy_quiet_fwd"), _Cpp)
_dispatch.register_backend(OP, "triton", _dispatch.triton_kernel(OP), _Triton)


@torch.library.custom_op("vidops::busy_quiet", mutates_args=())
def _busy_quiet_op(clip: torch.Tensor, spatial_weight: torch.Tensor, temporal_weight: torch.Tensor,
                   quiet: str, quiet_scale: Optional[float], backend: Optional[str]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    check_args(clip, spatial_weight, temporal_weight, quiet, quiet_scale)
    name = _dispatch.choose(OP, clip.device, backend)
    busy, q = _dispatch.impl(OP, name).forward(clip, spatial_weight, temporal_weight, quiet, quiet_scale)
    return busy, q


@_busy_quiet_op.register_fake
def _(clip, spatial_weight, temporal_weight, quiet, quiet_scale, backend):
    check_args(clip, spatial_weight, temporal_weight, quiet, quiet_scale)
    N, C, T, H, W = clip.shape
    h, w = quiet_output_size(H, W, quiet_scale)
    return clip.new_empty((N, C, T // 3, H, W)), clip.new_empty((N, C, T // 3, h, w))


def _setup_context(ctx, inputs, output):
    clip, sw, tw, quiet, quiet_scale, backend = inputs
    ctx.save_for_backward(clip, sw, tw)
    ctx.args = (quiet, quiet_scale, backend)
    ctx.clip_shape = clip.shape


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


def _backward(ctx, grad_busy, grad_quiet):
    clip, sw, tw = ctx.saved_tensors
    quiet, quiet_scale, backend = ctx.args
    gclip_q, gbusy_from_q = _quiet_adjoint(grad_quiet, ctx.clip_shape, quiet, quiet_scale, clip.dtype)
    gbusy = grad_busy if gbusy_from_q is None else grad_busy + gbusy_from_q.to(grad_busy.dtype)
    gx, gs, gt = _motion_band_pass_backward_op(gbusy.contiguous(), clip, sw, tw, 3, "reflect", "valid", backend)
    return gx + gclip_q, gs, gt, None, None, None


_busy_quiet_op.register_autograd(_backward, setup_context=_setup_context)


def busy_quiet(clip: torch.Tensor, spatial_weight: torch.Tensor, temporal_weight: torch.Tensor,
               quiet: str = "first", quiet_scale: Optional[float] = None, *,
               backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a BQN clip into its Busy and Quiet inputs in one pass (spec 1.3).

        busy[n,c,s]  = sum_j tw[c,j] * (K_c (x) reflectpad(clip[n,c,3s+j]))
        quiet[n,c,s] = clip[n,c,3s]                          quiet="first" (public code, default)
                     = mean_j clip[n,c,3s+j] - busy[n,c,s]   quiet="mean_minus_busy" (thesis eq. 5.4)

    Args:
        clip: (N, C, 3S, H, W), S segments of 3 consecutive frames.
        spatial_weight: (C, k, k) or (C, 1, k, k); temporal_weight: (C, 3) or (C, 1, 3).
        quiet: "first" or "mean_minus_busy".
        quiet_scale: None, or the bilinear resize factor of quiet (0.625 = 160/256 in the
            reference; align_corners=False, no antialias, output floor(H * scale)).
        backend: as for motion_band_pass; the gradient goes through motion_band_pass's backward.

    Returns: busy (N, C, S, H, W) and quiet (N, C, S, h, w), fresh contiguous tensors.
    """
    spatial_weight, temporal_weight = _as_weights(spatial_weight, temporal_weight)
    check_args(clip, spatial_weight, temporal_weight, quiet, quiet_scale)
    if quiet_scale is not None:
        quiet_scale = float(quiet_scale)
    return _busy_quiet_op(clip, spatial_weight, temporal_weight, quiet, quiet_scale, backend)
