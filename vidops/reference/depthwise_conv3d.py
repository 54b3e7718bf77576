"""Reference depthwise 3-D convolution (operators.md §2) and the authors' "diagonalwise" form of it.

`depthwise_conv3d` is PyTorch's grouped conv3d with groups=C (what a plain-PyTorch RNL would run);
`diagonalwise_conv3d` is what region-based-non-local-network's `DiagonalwiseRefactorization` runs:
a grouped conv with groups = C // cpg and a (C, cpg, kt, kh, kw) weight multiplied by a 0/1 mask
that keeps entry [o, o mod cpg] only; the two agree exactly (reference-code.md 2.3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

HALF = (torch.float16, torch.bfloat16)


def same_padding(weight: torch.Tensor) -> tuple:
    """(pt, ph, pw) = (k - 1) // 2 per axis of a (C, kt, kh, kw) or (C, 1, kt, kh, kw) weight."""
    return tuple((k - 1) // 2 for k in weight.shape[-3:])


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in HALF else x.dtype


def _as_conv_weight(weight: torch.Tensor, dtype) -> torch.Tensor:
    C = weight.shape[0]
    return weight.reshape(C, 1, *weight.shape[-3:]).to(dtype)


def _triple(v, default) -> tuple:
    if v is None:
        return tuple(default)
    return (v,) * 3 if isinstance(v, int) else tuple(v)


def _layout(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d for a channels_last_3d x that is not also contiguous, else contiguous."""
    if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=None) -> torch.Tensor:
    """y[n,c,t,h,w] = bias[c] + sum_{a,b,e} w[c,a,b,e] x[n,c,t*st+a-pt,h*sh+b-ph,w*sw+e-pw]
    (zeros outside), as F.conv3d(groups=C); padding None is "same" ((k-1)//2). Half inputs are
    computed in float32 and rounded once at the end. Inputs are made contiguous first, so that
    the result does not depend on their layout (ATen picks another summation order for
    channels_last_3d). Returns a fresh tensor in x's layout (channels_last_3d or contiguous)."""
    dt = _compute_dtype(x)
    C = x.shape[1]
    b = None if bias is None else bias.to(dt).contiguous()
    y = F.conv3d(x.to(dt).contiguous(), _as_conv_weight(weight, dt).contiguous(), b, stride=_triple(stride, ()),
                 padding=_triple(padding, same_padding(weight)), groups=C)
    return y.to(x.dtype).contiguous(memory_format=_layout(x))


def depthwise_conv3d_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias=None,
                              stride=1, padding=None, compute_grad_x: bool = True,
                              compute_grad_weight: bool = True, compute_grad_bias: bool = True):
    """(grad_x, grad_weight, grad_bias) of `depthwise_conv3d`, written out because autograd does
    not run inside a custom op's impl:
        grad_x      = conv_transpose3d(grad, w, stride=s, padding=p, groups=C)  (aten's convolution backward)
        grad_weight[c,a,b,e] = sum_{n,t,h,w} grad[n,c,t,h,w] * x[n,c,t*st+a-pt,h*sh+b-ph,w*sw+e-pw]
        grad_bias[c] = sum_{n,t,h,w} grad[n,c,t,h,w]
    The weight gradient is the definition itself, one strided product per tap: independent of
    ATen's depthwise weight-gradient kernel (which is also ~100x slower on CPU). A gradient not
    asked for comes back as zeros; grad_bias is an empty (0,) tensor when bias is None."""
    dt = _compute_dtype(x)
    C = x.shape[1]
    st = _triple(stride, ())
    pad = _triple(padding, same_padding(weight))
    g = grad.to(dt).contiguous()
    xc = x.to(dt).contiguous()
    fmt = _layout(x)
    if compute_grad_x:
        w5 = _as_conv_weight(weight, dt).contiguous()
        gx, _, _ = torch.ops.aten.convolution_backward(
            g, xc, w5, None, list(st), list(pad), [1, 1, 1], False, [0, 0, 0], C, [True, False, False])
        gx = gx.to(x.dtype).contiguous(memory_format=fmt)
    else:
        gx = torch.zeros_like(x, memory_format=fmt)
    if compute_grad_weight:
        kt, kh, kw = weight.shape[-3:]
        To, Ho, Wo = g.shape[2:]
        xp = F.pad(xc, (pad[2], pad[2], pad[1], pad[1], pad[0], pad[0]))
        gw = torch.stack([
            (g * xp[:, :, a:a + (To - 1) * st[0] + 1:st[0], b:b + (Ho - 1) * st[1] + 1:st[1],
                    e:e + (Wo - 1) * st[2] + 1:st[2]]).sum((0, 2, 3, 4))
            for a in range(kt) for b in range(kh) for e in range(kw)], 1)
        gw = gw.reshape(weight.shape).to(weight.dtype).contiguous()
    else:
        gw = torch.zeros_like(weight, memory_format=torch.contiguous_format)
    if bias is None:
        gb = x.new_empty((0,))
    elif compute_grad_bias:
        gb = g.sum((0, 2, 3, 4)).to(bias.dtype)
    else:
        gb = torch.zeros_like(bias, memory_format=torch.contiguous_format)
    return gx, gw, gb


def diagonalwise_mask(channels: int, cpg: int, kernel, dtype=torch.float32, device=None) -> torch.Tensor:
    """The reference's fixed 0/1 mask (C, cpg, kt, kh, kw): ones at [o, o mod cpg]."""
    m = torch.zeros(channels, cpg, *kernel, dtype=dtype, device=device)
    o = torch.arange(channels, device=device)
    m[o, o % cpg] = 1
    return m


def diagonalwise_conv3d(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference's grouped form: F.conv3d(x, weight * mask, padding=(k-1)//2, groups=C // cpg)
    with weight and mask (C, cpg, kt, kh, kw)."""
    C, cpg = weight.shape[:2]
    return F.conv3d(x, weight * mask, padding=same_padding(weight), groups=C // cpg)
