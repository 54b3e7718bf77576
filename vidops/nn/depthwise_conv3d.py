"""`DepthwiseConv3d`: a drop-in for nn.Conv3d(C, C, k, stride, padding, groups=C, bias=...) that
runs vidops.depthwise_conv3d; same parameters (`weight` (C, 1, kt, kh, kw), `bias` (C,)), same
initialisation and state_dict keys, so nn.Conv3d checkpoints load unchanged."""
from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.depthwise_conv3d import depthwise_conv3d, resolve_padding, resolve_stride
from ._impl import uses_reference

NAME = "vidops.nn.DepthwiseConv3d"


def _triple(v, what):
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v, v)
    if isinstance(v, (tuple, list)) and len(v) == 3:
        return tuple(v)
    raise ValueError(f"{NAME}: {what} must be an int or 3 ints, got {v!r}")


class DepthwiseConv3d(nn.Module):
    """y = vidops.depthwise_conv3d(x, weight, bias, stride, padding): nn.Conv3d(channels, channels,
    kernel_size, stride, padding, groups=channels, bias=bias) computed by the fused op.

        y[n,c,to,ho,wo] = bias[c] + sum_{a,b,e} weight[c,0,a,b,e] * x[n,c, to*st+a-pt, ho*sh+b-ph, wo*sw+e-pw]

    Args:
        channels: C (in and out channels, and groups).
        kernel_size: an int or (kt, kh, kw), any sizes.
        stride: an int or (st, sh, sw).
        padding: "same" ((k-1)//2 per axis, odd kernels), an int or (pt, ph, pw).
        bias: whether the layer has a bias (nn.Conv3d's default is True; X3D's are bias-free).
        impl: "vidops" (the fused op) or "reference" (F.conv3d(groups=C), plain PyTorch).
    The attributes in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
    padding_mode are nn.Conv3d's. Any input layout; channels_last_3d in gives channels_last_3d out.
    """

    def __init__(self, channels: int, kernel_size, stride=1, padding="same", bias: bool = False,
                 impl: str = "vidops", device=None, dtype=None):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"{NAME}: channels must be a positive int, got {channels!r}")
        self.in_channels = self.out_channels = self.groups = channels
        self.kernel_size = _triple(kernel_size, "kernel_size")
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.kernel_size):
            raise ValueError(f"{NAME}: kernel_size must be positive ints, got {kernel_size!r}")
        self.stride = tuple(resolve_stride(stride, NAME[len("vidops."):]))
        resolve_padding(padding, self.kernel_size, NAME[len("vidops."):])  # the check
        self.padding = padding if isinstance(padding, str) else _triple(padding, "padding")
        self.dilation = (1, 1, 1)
        self.padding_mode = "zeros"
        self.transposed = False
        self.output_padding = (0, 0, 0)
        self.impl = impl
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(channels, 1, *self.kernel_size, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(channels, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv3d's initialisation: kaiming_uniform_(a=sqrt(5)) on the weight, U(-1/sqrt(fan_in),
        1/sqrt(fan_in)) on the bias, fan_in = kt*kh*kw."""
        if self.weight.is_meta:
            return
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(math.prod(self.kernel_size))
            nn.init.uniform_(self.bias, -bound, bound)

    def _padding3(self) -> tuple:
        return tuple(resolve_padding(self.padding, self.kernel_size, NAME[len("vidops."):]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if uses_reference(self):
            return F.conv3d(x, self.weight, self.bias, self.stride, self._padding3(), 1, self.groups)
        return depthwise_conv3d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding!r}, groups={self.groups}")
        if self.bias is None:
            s += ", bias=False"
        return s + ("" if self.impl == "vidops" else f", impl={self.impl!r}")

    @classmethod
    def from_conv3d(cls, conv: nn.Conv3d, impl: str = "vidops") -> "DepthwiseConv3d":
        """The DepthwiseConv3d computing what the depthwise `conv` (groups == in == out channels,
        dilation 1, zero padding) computes, sharing its weight and bias Parameters."""
        if not isinstance(conv, nn.Conv3d):
            raise TypeError(f"{NAME}.from_conv3d: conv must be an nn.Conv3d, got {type(conv).__name__}")
        C = conv.in_channels
        if not (conv.groups == C == conv.out_channels):
            raise ValueError(f"{NAME}.from_conv3d: conv must be depthwise (groups == in_channels == "
                             f"out_channels), got in {C}, out {conv.out_channels}, groups {conv.groups}")
        if tuple(conv.dilation) != (1, 1, 1) or conv.padding_mode != "zeros":
            raise ValueError(f"{NAME}.from_conv3d: conv must have dilation 1 and zero padding, got dilation "
                             f"{conv.dilation}, padding_mode {conv.padding_mode!r}")
        padding = conv.padding
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0, 0, 0)
            elif any(k % 2 == 0 for k in conv.kernel_size):  # torch pads even 'same' kernels unevenly
                raise ValueError(f"{NAME}.from_conv3d: padding='same' with the even kernel "
                                 f"{conv.kernel_size} pads unevenly; not a DepthwiseConv3d")
        w = conv.weight
        m = cls(C, tuple(conv.kernel_size), tuple(conv.stride), padding, bias=conv.bias is not None, impl=impl,
                device="meta", dtype=w.dtype)
        m.weight = w
        if conv.bias is not None:
            m.bias = conv.bias
        m.train(conv.training)
        return m

    def to_conv3d(self) -> nn.Conv3d:
        """The nn.Conv3d(groups=C) computing what this layer computes, sharing its Parameters."""
        w = self.weight
        conv = nn.Conv3d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self._padding3(),
                         groups=self.groups, bias=self.bias is not None, device="meta", dtype=w.dtype)
        conv.weight = w
        if self.bias is not None:
            conv.bias = self.bias
        conv.train(self.training)
        return conv

