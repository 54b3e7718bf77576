"""TSM ResNet-50 with attention blocks after five bottlenecks: the RNL TSM-ResNet-50 of
region-based-non-local-network (ops/models.py + make_non_local), the TSM non-local baseline, and
the thesis's attention-chain variants (its Table 4.6 rows).

Positions (res3 = layer2, C = 512; res4 = layer3, C = 1024): after layer2 blocks 0 and 2 (region
kernel 3x7x7) and layer3 blocks 0, 2 and 4 (3x3x3). A wrapped bottleneck runs first (its output is
already past the residual add and the ReLU); then, on the (N, C, T, H, W) view, the channel block
`cg` (when present) and the spatio-temporal block `nl`. Keys `base_model.layer2.0.block.*`,
`base_model.layer2.0.cg.*`, `base_model.layer2.0.nl.*` as the authors' NL3DWrapper.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .. import reference
from ..nn._impl import uses_reference
from ..nn.attention import ChannelGate, ConvPyramidAttention, SpatioTemporalSE
from ..nn.region_non_local import (NonLocal, RegionNonLocal, depthwise_to_diagonalwise, diagonalwise_groups,
                                   diagonalwise_to_depthwise)
from ..ops.depthwise_conv3d import depthwise_conv3d
from ..reference.depthwise_conv3d import diagonalwise_mask
from ._common import set_impl
from .tsm import TSMResNet50

# (stage, block index, region-conv kernel)
POSITIONS = (("layer2", 0, (3, 7, 7)), ("layer2", 2, (3, 7, 7)),
             ("layer3", 0, (3, 3, 3)), ("layer3", 2, (3, 3, 3)), ("layer3", 4, (3, 3, 3)))
# The thesis's CPA rows use the four-level pyramid (its best ablation): 1x1x1 + 3x3x3 + 3x7x7 + 3x9x9.
CPA_KERNELS = ((1, 1, 1), (3, 3, 3), (3, 7, 7), (3, 9, 9))
# Reduction of the thesis's SE blocks: 16 gives its +0.46M parameters for five blocks (24.33M -> 24.79M).
SE_REDUCTION = 16
ATTENTIONS = ("rnl", "se+rnl", "cpa", "se+cpa")


class DiagonalwisePenta(nn.Module):
    """The authors' storage of the channel-wise region conv: a frozen 0/1 `mask` and a grouped
    `weight`, both (C', cpg, kt, kh, kw) with groups = max(C' // 32, 1) and cpg = C' / groups; the
    mask keeps entry [o, o mod cpg] only, so the grouped conv of weight * mask is depthwise."""

    def __init__(self, channels: int, kernel: Sequence[int]):
        super().__init__()
        cpg = channels // diagonalwise_groups(channels)
        full = torch.empty(channels, cpg, *kernel)
        nn.init.xavier_uniform_(full)  # as the authors: on the whole grouped tensor, masked in forward
        mask = diagonalwise_mask(channels, cpg, kernel)
        self.mask = nn.Parameter(mask, requires_grad=False)
        self.weight = nn.Parameter(full)

    def depthwise_weight(self) -> torch.Tensor:
        """(C', 1, kt, kh, kw): w[o] = (weight * mask)[o, o mod cpg]."""
        return diagonalwise_to_depthwise(self.weight, self.mask)

    def forward(self, v: torch.Tensor, use_reference: bool = False, backend: Optional[str] = None) -> torch.Tensor:
        """The region conv of the values v: the authors' grouped conv3d of weight * mask (reference),
        or the fused depthwise_conv3d of the extracted depthwise kernel (vidops)."""
        if use_reference:
            return reference.diagonalwise_conv3d(v, self.weight, self.mask.to(v.dtype))
        return depthwise_conv3d(v, self.depthwise_weight(), backend=backend)


class DiagonalwiseRegionNonLocal(RegionNonLocal):
    """vidops.nn.RegionNonLocal with the region conv stored as the authors store it
    (`penta.mask`, `penta.weight` of shape (C', 32, kt, kh, kw)), so a model has exactly their
    state_dict and parameter count. impl "vidops" extracts the depthwise kernel and runs the fused
    depthwise_conv3d; impl "reference" runs the authors' grouped, masked conv3d. A depthwise
    (C', 1, kt, kh, kw) penta.weight (vidops.nn.RegionNonLocal's layout) also loads."""

    def __init__(self, in_channels: int, kernel: Sequence[int] = (3, 7, 7), mode: str = "softmax", **kwargs):
        super().__init__(in_channels, kernel, mode, **kwargs)
        self.penta = DiagonalwisePenta(self.inter_channels, self.kernel)
        self.W = self._modules.pop("W")  # keep the authors' key order: theta, penta, W

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        w_key, mask_key = prefix + "penta.weight", prefix + "penta.mask"
        w = state_dict.get(w_key)
        if w is not None and w.dim() == 5 and w.shape[1] == 1 and self.penta.weight.shape[1] != 1:
            mask, full = depthwise_to_diagonalwise(w, self.penta.weight.shape[1])
            state_dict[w_key] = full
            state_dict.setdefault(mask_key, mask)
        nn.Module._load_from_state_dict(self, state_dict, prefix, *args, **kwargs)


class NonLocalWrapper(nn.Module):
    """block, then cg (optional) and nl. impl "reference" runs them on the block's output viewed
    as (N, C, T, H, W) and copies the result back to frames, as the authors' NL3DWrapper; impl
    "vidops" hands them the (N*T, C, H, W) frames (they take both layouts), so each block changes
    layout only where it needs to."""

    impl = "vidops"

    def __init__(self, block: nn.Module, nl: nn.Module, num_segments: int, cg: Optional[nn.Module] = None):
        super().__init__()
        self.block = block
        if cg is not None:
            self.cg = cg
        self.nl = nl
        self.num_segments = num_segments
        for m in (cg, nl):
            if m is not None and getattr(m, "num_segments", False) is None:
                m.num_segments = num_segments

    def _takes_frames(self) -> bool:
        return all(getattr(m, "num_segments", None) == self.num_segments for m in self.children()
                   if m is not self.block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        if not uses_reference(self) and self._takes_frames():
            if hasattr(self, "cg"):
                x = self.cg(x)
            return self.nl(x)
        NT, C, H, W = x.shape
        video = x.view(NT // self.num_segments, self.num_segments, C, H, W).transpose(1, 2)
        if hasattr(self, "cg"):
            video = self.cg(video)
        video = self.nl(video)
        return video.transpose(1, 2).reshape(NT, C, H, W)


def _wrap(model: TSMResNet50, make_blocks) -> None:
    for i, (stage, index, kernel) in enumerate(POSITIONS):
        layer = getattr(model.base_model, stage)
        block = layer[index]
        channels = block.conv3.out_channels
        cg, nl = make_blocks(i, channels, kernel)
        layer[index] = NonLocalWrapper(block, nl, model.num_segments, cg)


class RNLTSMResNet50(TSMResNet50):
    """TSM ResNet-50 + five attention blocks (see the module doc). attention:

    "rnl"    : RegionNonLocal at the five positions, a ChannelGate before the first (channel_gate=True):
               the released models (35,747,025 parameters at 400 classes with the grouped region-conv
               storage). channel_gate=False is the thesis's "+5 RNL" row (35.48M).
    "se+rnl" : the thesis's attention chain, SpatioTemporalSE (reduction 16) + RegionNonLocal at each.
    "cpa"    : ConvPyramidAttention (1x1x1 + 3x3x3 + 3x7x7 + 3x9x9) at each.
    "se+cpa" : SpatioTemporalSE + ConvPyramidAttention at each.

    mode: the RNL affinity ("softmax", the authors'; "cosine_softmax", "relu", "dot", "cosine_relu").
    """

    def __init__(self, num_classes: int, num_segments: int = 8, mode: str = "softmax", attention: str = "rnl",
                 channel_gate: bool = True, dropout: float = 0.5, impl: str = "vidops"):
        super().__init__(num_classes, num_segments, dropout, shift=True, impl=impl)
        if attention not in ATTENTIONS:
            raise ValueError(f"vidops.models.rnl_tsm_resnet50: attention must be one of {ATTENTIONS}, "
                             f"got {attention!r}")
        self.attention, self.mode = attention, mode

        def blocks(i, channels, kernel):
            cg = None
            if attention.startswith("se+"):
                cg = SpatioTemporalSE(channels, SE_REDUCTION)
            elif i == 0 and channel_gate and attention == "rnl":
                cg = ChannelGate(channels)
            if attention.endswith("rnl"):
                nl = DiagonalwiseRegionNonLocal(channels, kernel, mode)
            else:
                nl = ConvPyramidAttention(channels, CPA_KERNELS)
            return cg, nl

        _wrap(self, blocks)
        set_impl(self, impl)


class NLTSMResNet50(TSMResNet50):
    """TSM ResNet-50 + TSM's own non-local blocks (embedded Gaussian, phi and g max-pooled by
    (1, 2, 2) when sub_sample=True, no channel block) at the five positions: 385 state_dict
    entries, 31,686,096 parameters at 400 classes."""

    def __init__(self, num_classes: int, num_segments: int = 8, sub_sample: bool = True, mode: str = "softmax",
                 dropout: float = 0.5, impl: str = "vidops"):
        super().__init__(num_classes, num_segments, dropout, shift=True, impl=impl)
        _wrap(self, lambda i, channels, kernel: (None, NonLocal(channels, sub_sample=sub_sample, mode=mode)))
        set_impl(self, impl)


def rnl_tsm_resnet50(num_classes: int, num_segments: int = 8, mode: str = "softmax", attention: str = "rnl",
                     impl: str = "vidops", channel_gate: bool = True, dropout: float = 0.5) -> RNLTSMResNet50:
    """RNL TSM-ResNet-50 (attention="rnl": the authors' released model, 386 state_dict entries) or a
    Table 4.6 variant ("se+rnl", "cpa", "se+cpa"). Input: a clip of num_segments frames."""
    return RNLTSMResNet50(num_classes, num_segments, mode, attention, channel_gate, dropout, impl)


def nl_tsm_resnet50(num_classes: int, num_segments: int = 8, impl: str = "vidops", sub_sample: bool = True,
                    mode: str = "softmax", dropout: float = 0.5) -> NLTSMResNet50:
    """TSM ResNet-50 with TSM's non-local blocks at the RNL positions (keys of TSM's NL model)."""
    return NLTSMResNet50(num_classes, num_segments, sub_sample, mode, dropout, impl)
