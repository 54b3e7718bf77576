"""Channel and spatio-temporal attention blocks of the RNL family (operators.md §5.2, thesis 4.3-4.4):
`ChannelGate` (the public code's channel block), `SpatioTemporalSE` (thesis eqs. 4.12-4.14),
`ConvPyramidAttention` (thesis eqs. 4.10-4.11) and `AttentionChain` (channel block, then RNL or CPA).

Every block is the identity at initialisation (its residual branch ends in zero-initialised
parameters) and takes (N, C, T, H, W) or the 2-D backbone's (N*T, C, H, W) with num_segments.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from ..ops.depthwise_conv3d import depthwise_conv3d
from ._args import kernel3
from ._impl import uses_reference
from ._layout import WeightHolder, to_frames, to_video
from .region_non_local import RegionNonLocal


def _channels(cls: str, channels, reduction) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"vidops.nn.{cls}: channels must be a positive int, got {channels!r}")
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1 or channels // reduction < 1:
        raise ValueError(f"vidops.nn.{cls}: reduction must be a positive int <= channels={channels}, "
                         f"got {reduction!r}")
    return channels // reduction


class ChannelGate(nn.Module):
    """The channel block of the released RNL models (GCNet-style; ops/rnl.py `ChannelGate`):

        a = softmax over the T*H*W positions of W_k(x)      W_k = Conv3d(C, 1, 1, bias)
        c = sum_p a_p x_p                                    (N, C)
        h = ReLU(BN1d(W_v1 c))                               Linear(C, C/r), BatchNorm1d(C/r, momentum 0.01)
        out = x + W_v2 h   (broadcast over T, H, W)          Linear(C/r, C), weight and bias zero-init

    Keys W_k.*, W_v1.*, bn1.*, W_v2.* as the reference (cg.* inside the attention chain). The BN
    sees (N, C/r, 1), so training needs a batch of more than one clip, as in the reference.
    It has no fused op: both impls run plain PyTorch; on the backbone's (N*T, C, H, W) frames impl
    "vidops" computes the same formula in that layout (no transposes), "reference" views the frames
    as the video as the authors' code does.
    """

    impl = "vidops"

    def __init__(self, channels: int, reduction_ratio: int = 2, num_segments: Optional[int] = None):
        super().__init__()
        hidden = _channels(type(self).__name__, channels, reduction_ratio)
        self.channels, self.num_segments = channels, num_segments
        self.W_k = nn.Conv3d(channels, 1, 1)
        self.W_v1 = nn.Linear(channels, hidden)
        self.bn1 = nn.BatchNorm1d(hidden, momentum=0.01)
        self.W_v2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.W_v2.weight)
        nn.init.zeros_(self.W_v2.bias)

    def _forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """impl "vidops" on (N*T, C, H, W) frames: the same formula per frame and no layout copy;
        W_k as a (1, C) GEMM (a one-channel conv3d's backward is slow on CPU)."""
        NT, C, H, W = x.shape
        N, T = NT // self.num_segments, self.num_segments
        xf = x.reshape(NT, C, H * W)
        logits = torch.matmul(self.W_k.weight.view(1, C), xf) + self.W_k.bias.view(1, 1, 1)   # (NT, 1, HW)
        a = logits.reshape(N, T * H * W).softmax(-1).reshape(NT, H * W, 1)
        ctx = torch.bmm(xf, a).reshape(N, T, C).sum(1)                                      # (N, C)
        h = torch.relu(self.bn1(self.W_v1(ctx).unsqueeze(-1))).squeeze(-1)
        out = x.reshape(N, T, C, H, W) + self.W_v2(h).reshape(N, 1, C, 1, 1)
        return out.reshape(NT, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and not uses_reference(self) and self.num_segments is not None:
            return self._forward_frames(x)
        video = to_video(x, self.num_segments, type(self).__name__)
        N, C = video.shape[:2]
        L = video.shape[2] * video.shape[3] * video.shape[4]                # sizes, not -1: N may be 0
        a = self.W_k(video).reshape(N, 1, L).softmax(-1)                   # (N, 1, L)
        ctx = torch.bmm(video.reshape(N, C, L), a.transpose(1, 2))          # (N, C, 1)
        h = torch.relu(self.bn1(self.W_v1(ctx.squeeze(-1)).unsqueeze(-1))).squeeze(-1)
        out = video + self.W_v2(h).reshape(N, C, 1, 1, 1)
        return out if x.dim() == 5 else to_frames(out)


class SpatioTemporalSE(nn.Module):
    """The thesis's spatio-temporal squeeze-excitation (eqs. 4.12-4.14; no public code):

        s' = mean over T, H, W of x                (N, C)
        s  = W2 ReLU(BN(W1 s'))                    W1: Linear(C, C/r, no bias: BN follows), W2: Linear(C/r, C)
        out = x + s   (additive, broadcast over T, H, W)

    W2's weight and bias start at zero (identity at init). Keys W1.weight, bn.*, W2.weight/bias.
    It has no fused op: impl "vidops" and "reference" run this same plain PyTorch.
    """

    impl = "vidops"

    def __init__(self, channels: int, reduction: int = 2, num_segments: Optional[int] = None):
        super().__init__()
        hidden = _channels(type(self).__name__, channels, reduction)
        self.channels, self.num_segments = channels, num_segments
        self.W1 = nn.Linear(channels, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.W2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.W2.weight)
        nn.init.zeros_(self.W2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = to_video(x, self.num_segments, type(self).__name__)
        N, C = video.shape[:2]
        s = self.W2(torch.relu(self.bn(self.W1(video.mean((2, 3, 4))))))
        out = video + s.reshape(N, C, 1, 1, 1)
        return out if x.dim() == 5 else to_frames(out)


def fold_kernels(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of centred 3-D kernels (each (kt, kh, kw) with odd sizes, or (1, 1, kt, kh, kw)) as one
    kernel of the largest size per axis, each zero-padded around its centre. Zero-padded "same"
    correlations are linear in the kernel, so conv(x, fold(ws)) = sum_i conv(x, ws[i]) exactly."""
    ks = [w.reshape(w.shape[-3:]) for w in weights]
    size = [max(k.shape[i] for k in ks) for i in range(3)]
    out = ks[0].new_zeros(size)
    for k in ks:
        o = [(size[i] - k.shape[i]) // 2 for i in range(3)]
        out = out + nn.functional.pad(k, (o[2], o[2], o[1], o[1], o[0], o[0]))
    return out


class ConvPyramidAttention(nn.Module):
    """Convolution Pyramid Attention (thesis eqs. 4.10-4.11; no public code):

        CPA(x) = softmax over T, H, W of F(mean over channels of x)  *  x
        F(m)   = f_1x1x1(m) + f_3x3x3(m) + f_3x7x7(m) (+ f_3x9x9(m))    single-channel 3-D convs

    The pyramid is folded into ONE single-channel conv with the summed, zero-padded kernels
    (`fold_kernels`) and run by vidops.depthwise_conv3d with C = 1; gradients reach every pyramid
    kernel through the fold. The convs have no bias (a constant added before the softmax cancels).

    residual=True (default) keeps the family's zero-initialised residual path: out = x + BN(CPA(x)),
    BatchNorm3d(C) with gamma = beta = 0, so the block is the identity at init (the BN also restores
    the scale that the softmax's 1/(T H W) takes away). residual=False returns CPA(x) as in eq. 4.10.
    Keys pyramid.<i>.weight (1, 1, kt, kh, kw) and bn.*.

    impl="reference" runs F as written, one zero-padded F.conv3d per pyramid kernel, summed.
    """

    impl = "vidops"

    def __init__(self, channels: int, kernels: Sequence[Sequence[int]] = ((1, 1, 1), (3, 3, 3), (3, 7, 7)),
                 residual: bool = True, num_segments: Optional[int] = None, backend: Optional[str] = None):
        super().__init__()
        _channels(type(self).__name__, channels, 1)
        if not kernels:
            raise ValueError("vidops.nn.ConvPyramidAttention: kernels must name at least one kernel size")
        self.kernels = tuple(kernel3(type(self).__name__, k) for k in kernels)
        self.channels, self.residual = channels, residual
        self.num_segments, self.backend = num_segments, backend
        pyramid = []
        for k in self.kernels:  # nn.Conv3d(1, 1, k)'s default initialisation
            bound = 1.0 / math.sqrt(math.prod(k))
            pyramid.append(WeightHolder(torch.empty(1, 1, *k).uniform_(-bound, bound)))
        self.pyramid = nn.ModuleList(pyramid)
        if residual:
            self.bn = nn.BatchNorm3d(channels)
            nn.init.zeros_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)

    def folded_kernel(self) -> torch.Tensor:
        """The pyramid as one (1, kt, kh, kw) kernel."""
        return fold_kernels([p.weight for p in self.pyramid]).unsqueeze(0)

    def attention(self, video: torch.Tensor) -> torch.Tensor:
        """softmax over T, H, W of F(mean_c x): (N, 1, T, H, W), summing to 1 per clip."""
        m = video.mean(1, keepdim=True)
        wdt = torch.float32 if m.dtype in (torch.float16, torch.bfloat16) else m.dtype
        if uses_reference(self):
            f = sum(nn.functional.conv3d(m.to(wdt), p.weight.to(wdt), padding=tuple((k - 1) // 2 for k in ks))
                    for p, ks in zip(self.pyramid, self.kernels)).to(m.dtype)
        else:
            f = depthwise_conv3d(m, self.folded_kernel().to(wdt), backend=self.backend)
        return f.flatten(2).softmax(-1).reshape(f.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = to_video(x, self.num_segments, type(self).__name__)
        cpa = self.attention(video) * video
        out = video + self.bn(cpa) if self.residual else cpa
        return out if x.dim() == 5 else to_frames(out)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernels={self.kernels}, residual={self.residual}"


class AttentionChain(nn.Module):
    """The vision attention chain (thesis 4.4, fig. 4.6): a channel block, then a spatio-temporal
    block. channel: "gate" (ChannelGate, the released models) or "se" (SpatioTemporalSE, the
    thesis); spatial: "rnl" (RegionNonLocal) or "cpa" (ConvPyramidAttention). Submodules `cg` and
    `nl`, so keys read cg.* and nl.* as in the reference's NL3DWrapper (e.g. layer2.0.cg.W_k.weight).
    """

    def __init__(self, channels: int, spatial: str = "rnl", channel: str = "gate",
                 kernel: Sequence[int] = (3, 7, 7), mode: str = "softmax",
                 cpa_kernels: Sequence[Sequence[int]] = ((1, 1, 1), (3, 3, 3), (3, 7, 7)),
                 num_segments: Optional[int] = None, backend: Optional[str] = None,
                 attention_backend: Optional[str] = None):
        super().__init__()
        if channel not in ("gate", "se"):
            raise ValueError(f"vidops.nn.AttentionChain: channel must be 'gate' or 'se', got {channel!r}")
        if spatial not in ("rnl", "cpa"):
            raise ValueError(f"vidops.nn.AttentionChain: spatial must be 'rnl' or 'cpa', got {spatial!r}")
        self.num_segments = num_segments
        self.cg = ChannelGate(channels) if channel == "gate" else SpatioTemporalSE(channels)
        if spatial == "rnl":
            self.nl = RegionNonLocal(channels, kernel, mode, backend=backend, attention_backend=attention_backend)
        else:
            self.nl = ConvPyramidAttention(channels, cpa_kernels, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = to_video(x, self.num_segments, type(self).__name__)
        out = self.nl(self.cg(video))
        return out if x.dim() == 5 else to_frames(out)
