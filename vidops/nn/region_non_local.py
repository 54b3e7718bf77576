"""Non-local blocks (operators.md §5.2): `RegionNonLocal` (RNL, thesis 4.2; region-based-non-local-network
ops/rnl.py) and the embedded-Gaussian `NonLocal` baseline (TSM ops/non_local.py), with the
conversion of the reference's "diagonalwise" region conv to a depthwise weight.

Both take (N, C, T, H, W), or the 2-D backbone's (N*T, C, H, W) with num_segments (the output
then comes back as (N*T, C, H, W), as the reference's NL3DWrapper returns it).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import reference
from ..ops.depthwise_conv3d import depthwise_conv3d
from ._args import kernel3
from ._impl import uses_reference
from ._layout import WeightHolder, to_frames, to_video

MODES = ("softmax", "cosine_softmax", "relu", "dot", "cosine_relu")


def _region_attention(q: torch.Tensor, v: torch.Tensor, k: Optional[torch.Tensor], mode: str,
                      backend: Optional[str] = None) -> torch.Tensor:
    """y_j = sum_i a_ij v_i on the flattened (N, d, L) views; the result is (N, dv, L_q).

    Keys at the queries' positions go to vidops.region_attention (looked up at call time: the op is
    its own module, operators.md §5.1, and this file must import without it). Max-pooled keys and values
    (sub_sample=True: fewer keys than queries, which the op does not take) run in plain PyTorch."""
    qf, vf = q.flatten(2), v.flatten(2)
    kf = None if k is None else k.flatten(2)
    if kf is not None and kf.shape[-1] != qf.shape[-1]:
        return _pooled_key_attention(qf, vf, kf, mode)
    from .. import ops

    fn = getattr(ops, "region_attention", None)
    if fn is None:
        import vidops

        fn = getattr(vidops, "region_attention", None)
    if fn is None:
        raise RuntimeError("vidops.nn: the attention blocks need vidops.region_attention (operators.md §5.1), "
                           "which this build of vidops does not have")
    kwargs = {} if backend is None else {"backend": backend}
    return fn(qf, vf, kf, mode=mode, **kwargs)


def _pooled_key_attention(q: torch.Tensor, v: torch.Tensor, k: torch.Tensor, mode: str) -> torch.Tensor:
    """The attention modes with Lk != Lq keys: SDPA (scale 1) for the softmax modes, Q (K^T V) / Lk
    for "dot", the explicit (N, Lk, Lq) weights for the ReLU modes (Lk = Lq / 4 after pooling)."""
    if mode.startswith("cosine"):
        q, k = F.normalize(q, dim=1, eps=1e-12), F.normalize(k, dim=1, eps=1e-12)
    if mode in ("softmax", "cosine_softmax"):
        # 4-D (one head): the ONNX exporter translates SDPA only for (N, heads, L, E)
        y = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                           v.transpose(1, 2)[:, None], scale=1.0)
        return y[:, 0].transpose(1, 2)
    if mode == "dot":
        return (v @ k.transpose(1, 2)) @ q / k.shape[-1]
    return v @ (k.transpose(1, 2) @ q).relu() / k.shape[-1]


# ---- the reference's "diagonalwise" region conv ---------------------------------------------

def diagonalwise_groups(channels: int) -> int:
    """groups = max(C // 32, 1) of the reference's DepthwiseConv3d (channels per group cpg = C / groups)."""
    return max(channels // 32, 1)


def diagonalwise_to_depthwise(weight: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The reference's grouped (C, cpg, kt, kh, kw) weight (times its 0/1 mask) -> the equivalent
    depthwise weight (C, 1, kt, kh, kw): w[o] = (weight * mask)[o, o mod cpg]. Output channel o of
    the grouped conv reads only input channel o through that entry, so the two convs agree exactly."""
    if weight.dim() != 5:
        raise ValueError(f"vidops.nn: a diagonalwise weight must be (C, cpg, kt, kh, kw), got shape "
                         f"{tuple(weight.shape)}")
    C, cpg = weight.shape[:2]
    if C % cpg != 0:
        raise ValueError(f"vidops.nn: diagonalwise weight with C={C} channels is not a whole number of "
                         f"groups of cpg={cpg}")
    if mask is not None:
        if mask.shape != weight.shape:
            raise ValueError(f"vidops.nn: penta.mask has shape {tuple(mask.shape)} but penta.weight has "
                             f"{tuple(weight.shape)}")
        weight = weight * mask.to(weight.dtype)
    o = torch.arange(C, device=weight.device)
    return weight[o, o % cpg].unsqueeze(1).clone()


def depthwise_to_diagonalwise(weight: torch.Tensor, cpg: Optional[int] = None):
    """A depthwise weight (C, 1, kt, kh, kw) or (C, kt, kh, kw) -> (mask, weight) in the reference's
    (C, cpg, kt, kh, kw) layout (cpg = C // max(C // 32, 1) unless given), to load into its code."""
    w = weight if weight.dim() == 5 else weight.unsqueeze(1)
    C = w.shape[0]
    cpg = cpg or C // diagonalwise_groups(C)
    if C % cpg != 0:
        raise ValueError(f"vidops.nn: C={C} channels cannot be cut into groups of cpg={cpg} "
                         f"(the reference's grouped conv is malformed there)")
    full = torch.zeros(C, cpg, *w.shape[2:], dtype=w.dtype, device=w.device)
    o = torch.arange(C, device=w.device)
    full[o, o % cpg] = w[:, 0]
    mask = torch.zeros_like(full)
    mask[o, o % cpg] = 1
    return mask, full


def convert_rnl_state_dict(state_dict: dict, prefix: str = "") -> dict:
    """A copy of `state_dict` in which every `<...>penta.weight` (under prefix) in the reference's
    grouped layout becomes the depthwise (C, 1, kt, kh, kw) weight RegionNonLocal keeps, and every
    `<...>penta.mask` is dropped. Already-converted entries pass through unchanged."""
    out = dict(state_dict)
    for key in list(state_dict):
        if not (key.startswith(prefix) and key.endswith("penta.weight")):
            continue
        mask_key = key[: -len("weight")] + "mask"
        w = state_dict[key]
        mask = state_dict.get(mask_key)
        if mask is not None or (w.dim() == 5 and w.shape[1] != 1):
            out[key] = diagonalwise_to_depthwise(w, mask)
        out.pop(mask_key, None)
    return out


def _check_channels(cls: str, in_channels: int, inter: int) -> None:
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"vidops.nn.{cls}: in_channels must be a positive int, got {in_channels!r}")
    if inter < 1:
        raise ValueError(f"vidops.nn.{cls}: inter_channels must be >= 1, got {inter}")


def _output_block(inter: int, channels: int) -> nn.Sequential:
    """W = Conv3d(C', C, 1) + BatchNorm3d(C) with gamma = beta = 0: the block is the identity at init."""
    w = nn.Sequential(nn.Conv3d(inter, channels, 1), nn.BatchNorm3d(channels))
    nn.init.zeros_(w[1].weight)
    nn.init.zeros_(w[1].bias)
    return w


class RegionConv(WeightHolder):
    """The region conv F_theta of an RNL block, P = depthwise_conv3d(V, weight) with its
    (C', 1, kt, kh, kw) `weight` (key `penta.weight`): a submodule of its own so that profilers and
    hooks see it apart from the attention. The block passes the impl and backend it runs in."""

    def forward(self, v: torch.Tensor, use_reference: bool = False, backend: Optional[str] = None) -> torch.Tensor:
        if use_reference:
            return reference.depthwise_conv3d(v, self.weight)
        return depthwise_conv3d(v, self.weight, backend=backend)


class RegionNonLocal(nn.Module):
    """Region-based non-local block (thesis eqs. 4.2-4.9, the public ops/rnl.py):

        V = theta(x)                              Conv3d(C, C', 1, bias), C' = C / ratio
        P = depthwise_conv3d(V, penta.weight)     channel-wise region conv F_theta (kernel, odd sizes)
        y_j = sum_i a_ij V_i,  a = f(P_i, P_j)    vidops.region_attention(P, V, mode): keys = queries = P
        z = BN(Conv3d(C', C, 1)(y)) + x           W.0, W.1 with BN gamma = beta = 0 (identity at init)

    mode: "softmax" (the reference; a_ij = softmax_i(P_i . P_j), no scaling), "cosine_softmax"
    (reference use_norm=True), "relu" (reference activation='relu': ReLU(P_i . P_j) / L), "dot"
    (thesis eq. 4.6), "cosine_relu" (thesis eq. 4.7). sub_sample=True max-pools keys and values by
    (1, 2, 2) as the reference does (after the cosine normalisation, as there).

    State dict as the reference: theta.weight/bias, penta.weight, W.0.weight/bias, W.1.*; penta.weight
    is kept depthwise (C', 1, kt, kh, kw). A reference checkpoint (penta.mask and the grouped
    (C', 32, kt, kh, kw) penta.weight) loads as is: it is converted by `convert_rnl_state_dict`
    (w[o] = (weight * mask)[o, o mod 32]); `depthwise_to_diagonalwise` goes back.

    impl="reference" runs the region conv as F.conv3d(groups=C') and the attention as the authors'
    bmm-softmax-bmm with the L x L matrix (vidops.reference) instead of the fused ops.
    """

    impl = "vidops"

    def __init__(self, in_channels: int, kernel: Sequence[int] = (3, 7, 7), mode: str = "softmax",
                 ratio: int = 2, sub_sample: bool = False, num_segments: Optional[int] = None,
                 backend: Optional[str] = None, attention_backend: Optional[str] = None):
        super().__init__()
        inter = in_channels // ratio if isinstance(in_channels, int) and isinstance(ratio, int) and ratio > 0 else 0
        _check_channels(type(self).__name__, in_channels, inter)
        if mode not in MODES:
            raise ValueError(f"vidops.nn.RegionNonLocal: mode must be one of {MODES}, got {mode!r}")
        self.in_channels, self.inter_channels = in_channels, inter
        self.kernel = kernel3(type(self).__name__, kernel)
        self.mode, self.sub_sample = mode, sub_sample
        self.num_segments, self.backend, self.attention_backend = num_segments, backend, attention_backend
        self.theta = nn.Conv3d(in_channels, inter, 1)
        # The reference initialises its grouped (C', cpg, k...) weight with xavier_uniform and masks it:
        # the surviving depthwise entries are uniform with the same bound.
        cpg = inter // diagonalwise_groups(inter)
        bound = math.sqrt(6.0 / ((cpg + inter) * math.prod(self.kernel)))
        self.penta = RegionConv(torch.empty(inter, 1, *self.kernel).uniform_(-bound, bound))
        self.W = _output_block(inter, in_channels)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Runs before the children load: a reference checkpoint's grouped penta.weight (+ penta.mask)
        # becomes the depthwise weight here (load_state_dict works on its own copy of the dict).
        w_key = prefix + "penta.weight"
        mask = state_dict.pop(prefix + "penta.mask", None)
        w = state_dict.get(w_key)
        if w is not None and (mask is not None or (w.dim() == 5 and w.shape[1] != 1)):
            state_dict[w_key] = diagonalwise_to_depthwise(w, mask)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def region_conv(self, v: torch.Tensor) -> torch.Tensor:
        """P = F_theta(V): the channel-wise region conv of the (N, C', T, H, W) values (the `penta`
        submodule, run in this block's impl and backend)."""
        return self.penta(v, uses_reference(self), self.backend)

    def attention_input(self, x: torch.Tensor):
        """(queries P, values V) of a 5-D input: V = theta(x), P = F_theta(V)."""
        v = self.theta(x)
        return self.region_conv(v), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = to_video(x, self.num_segments, type(self).__name__)
        p, v = self.attention_input(video)
        mode, keys = self.mode, None
        if self.sub_sample:
            if mode.startswith("cosine"):  # the reference normalises P, then pools the keys
                p = F.normalize(p, dim=1)
                mode = "softmax" if mode == "cosine_softmax" else "relu"
            keys = F.max_pool3d(p, (1, 2, 2))
            v = F.max_pool3d(v, (1, 2, 2))
        if uses_reference(self):
            y = reference.region_attention(p.flatten(2), v.flatten(2), None if keys is None else keys.flatten(2), mode)
        else:
            y = _region_attention(p, v, keys, mode, self.attention_backend)
        z = self.W(y.reshape(video.shape[0], self.inter_channels, *video.shape[2:])) + video
        return z if x.dim() == 5 else to_frames(z)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, inter_channels={self.inter_channels}, kernel={self.kernel}, "
                f"mode={self.mode!r}, sub_sample={self.sub_sample}")


class NonLocal(nn.Module):
    """The embedded-Gaussian non-local block (Wang et al.; TSM ops/non_local.py), the baseline:

        y_j = sum_i softmax_i(phi(x)_i . theta(x)_j) g(x)_i,   z = BN(Conv3d(C', C, 1)(y)) + x

    theta, phi, g: Conv3d(C, C', 1, bias), C' = C // 2 (at least 1). sub_sample=True (TSM's default)
    max-pools phi and g by (1, 2, 2), so their keys read `phi.0.weight`, `g.0.weight` as in TSM; W + BN
    zero-initialised (identity at init). mode as in RegionNonLocal ("softmax" is the reference).
    impl="reference" runs the attention as bmm-softmax-bmm with the L x Lk matrix, as TSM's code.
    """

    impl = "vidops"

    def __init__(self, in_channels: int, inter_channels: Optional[int] = None, sub_sample: bool = True,
                 mode: str = "softmax", num_segments: Optional[int] = None,
                 attention_backend: Optional[str] = None):
        super().__init__()
        inter = inter_channels
        if inter is None:
            inter = max(in_channels // 2, 1) if isinstance(in_channels, int) else 0
        _check_channels(type(self).__name__, in_channels, inter)
        if mode not in MODES:
            raise ValueError(f"vidops.nn.NonLocal: mode must be one of {MODES}, got {mode!r}")
        self.in_channels, self.inter_channels, self.sub_sample, self.mode = in_channels, inter, sub_sample, mode
        self.num_segments, self.attention_backend = num_segments, attention_backend
        self.g = nn.Conv3d(in_channels, inter, 1)
        self.W = _output_block(inter, in_channels)
        self.theta = nn.Conv3d(in_channels, inter, 1)
        self.phi = nn.Conv3d(in_channels, inter, 1)
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool3d((1, 2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool3d((1, 2, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = to_video(x, self.num_segments, type(self).__name__)
        if uses_reference(self):
            y = reference.region_attention(self.theta(video).flatten(2), self.g(video).flatten(2),
                                           self.phi(video).flatten(2), self.mode)
        else:
            y = _region_attention(self.theta(video), self.g(video), self.phi(video), self.mode,
                                  self.attention_backend)
        z = self.W(y.reshape(video.shape[0], self.inter_channels, *video.shape[2:])) + video
        return z if x.dim() == 5 else to_frames(z)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, inter_channels={self.inter_channels}, sub_sample={self.sub_sample}"
