"""Reference motion band-pass (operators.md §1.1), two formulations of the same math.

`motion_band_pass` runs it as busy-quiet-net's src/bpf.py does: pad and depthwise conv2d on every
input frame, permute time last, pad in time, depthwise conv1d with the temporal stride, permute
back. `motion_band_pass_temporal_first` is the best plain-PyTorch formulation: the 3-tap temporal
filter first (on T_out frames only), then one depthwise conv2d; the two agree because both filters
are linear and the spatial padding acts per frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def temporal_pad_size(temporal_padding: str) -> int:
    return 0 if temporal_padding == "valid" else 1


def output_frames(T: int, temporal_stride: int, temporal_padding: str) -> int:
    return (T + 2 * temporal_pad_size(temporal_padding) - 3) // temporal_stride + 1


def _spatial_pad(x4: torch.Tensor, r: int, spatial_padding: str) -> torch.Tensor:
    if r == 0:
        return x4
    if spatial_padding == "reflect":
        return F.pad(x4, (r, r, r, r), mode="reflect")
    return F.pad(x4, (r, r, r, r))


def _temporal_pad(x: torch.Tensor, temporal_padding: str, dim: int) -> torch.Tensor:
    """Replicate repeats the edge frames (frame -1 is frame 0); zeros adds zero frames."""
    if temporal_padding == "valid":
        return x
    first = x.narrow(dim, 0, 1)
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    if temporal_padding == "zeros":
        first, last = torch.zeros_like(first), torch.zeros_like(last)
    return torch.cat([first, x, last], dim)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed in float32 (as the cpu, cuda and triton backends
    accumulate): the stem's normalised LoG has an L1 norm of ~1600, so its intermediate frames
    and the weight gradients' sums overflow float16 (max 65504) on ordinary inputs."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def motion_band_pass(x, spatial_weight, temporal_weight, temporal_stride=1,
                     spatial_padding="reflect", temporal_padding="replicate"):
    """out[n,c,t] = sum_j tw[c,j] * (K_c (x) pad_s(x[n,c,s*t + j - p_t])), computed spatial-first.
    Half-precision x is computed in float32 and the output rounded to x's dtype."""
    N, C, T, H, W = x.shape
    k = spatial_weight.shape[-1]
    out_dtype = x.dtype
    x = x.to(_compute_dtype(x.dtype))
    sw = spatial_weight.reshape(C, 1, k, k).to(x.dtype)
    tw = temporal_weight.reshape(C, 1, 3).to(x.dtype)
    frames = x.transpose(1, 2).reshape(N * T, C, H, W)
    s = F.conv2d(_spatial_pad(frames, (k - 1) // 2, spatial_padding), sw, groups=C)
    seq = s.reshape(N, T, C, H, W).permute(0, 3, 4, 2, 1).reshape(N * H * W, C, T)
    seq = _temporal_pad(seq, temporal_padding, 2)
    out = F.conv1d(seq, tw, stride=temporal_stride, groups=C)
    T_out = out.shape[-1]
    return out.reshape(N, H, W, C, T_out).permute(0, 3, 4, 1, 2).to(out_dtype).contiguous()


def motion_band_pass_temporal_first(x, spatial_weight, temporal_weight, temporal_stride=1,
                                    spatial_padding="reflect", temporal_padding="replicate"):
    """The same operator, temporal filter first: 3 strided slices, then one depthwise conv2d."""
    N, C, T, H, W = x.shape
    k = spatial_weight.shape[-1]
    s = temporal_stride
    T_out = output_frames(T, s, temporal_padding)
    xp = _temporal_pad(x, temporal_padding, 2)
    tw = temporal_weight.reshape(C, 3).to(x.dtype)
    y = sum(xp[:, :, j: j + s * (T_out - 1) + 1: s] * tw[:, j].view(1, C, 1, 1, 1) for j in range(3))
    sw = spatial_weight.reshape(C, 1, k, k).to(x.dtype).repeat_interleave(T_out, 0)
    y4 = _spatial_pad(y.reshape(N, C * T_out, H, W), (k - 1) // 2, spatial_padding)
    return F.conv2d(y4, sw, groups=C * T_out).reshape(N, C, T_out, H, W)


def _reflect_fold(g: torch.Tensor, r: int, dim: int, size: int) -> torch.Tensor:
    """Adjoint of reflect padding by r along dim: padded index p reads source |p - r| mirrored."""
    idx = torch.arange(size + 2 * r, device=g.device) - r
    idx = torch.where(idx < 0, -idx, idx)
    idx = torch.where(idx >= size, 2 * (size - 1) - idx, idx)
    shape = list(g.shape)
    shape[dim] = size
    return torch.zeros(shape, dtype=g.dtype, device=g.device).index_add_(dim, idx, g)


def motion_band_pass_backward(grad, x, spatial_weight, temporal_weight, temporal_stride=1,
                              spatial_padding="reflect", temporal_padding="replicate"):
    """(grad_x, grad_spatial_weight, grad_temporal_weight) of motion_band_pass, written out with
    the temporal-first factorisation out = S(Y), Y = Tf(x):
        gY = S^T(grad)     (transposed depthwise conv, then the adjoint of the spatial padding)
        g_sw[c,a,b] = sum_{n,t,i,j} grad[n,c,t,i,j] * pad_s(Y)[n,c,t,i+a,j+b]
        g_tw[c,j]   = sum_{n,t,h,w} gY[n,c,t] * pad_t(x)[n,c,s*t+j]
        g_x = Tf^T(gY)     (scatter of tw[c,j] * gY[t] to frame s*t+j-p, padding folded back)
    Half-precision x and grad are computed in float32 (the weight gradients are sums over N T H W
    products and overflow float16 long before float32); g_x is returned in x's dtype, the weight
    gradients in the weights' dtypes.
    """
    if grad.numel() == 0:
        return torch.zeros_like(x), torch.zeros_like(spatial_weight), torch.zeros_like(temporal_weight)
    gx, g_sw, g_tw = _backward(grad, x.to(_compute_dtype(x.dtype)), spatial_weight, temporal_weight,
                               temporal_stride, spatial_padding, temporal_padding)
    return gx.to(x.dtype), g_sw.to(spatial_weight.dtype), g_tw.to(temporal_weight.dtype)


def _backward(grad, x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding):
    N, C, T, H, W = x.shape
    k = spatial_weight.shape[-1]
    r = (k - 1) // 2
    s = temporal_stride
    T_out = grad.shape[2]
    dt = x.dtype
    sw = spatial_weight.reshape(C, 1, k, k).to(dt)
    tw = temporal_weight.reshape(C, 3).to(dt)
    xp = _temporal_pad(x, temporal_padding, 2)
    y = sum(xp[:, :, j: j + s * (T_out - 1) + 1: s] * tw[:, j].view(1, C, 1, 1, 1) for j in range(3))
    g4 = grad.to(dt).reshape(N, C * T_out, H, W)
    sw_rep = sw.repeat_interleave(T_out, 0)
    if spatial_padding == "zeros":
        gy = F.conv_transpose2d(g4, sw_rep, padding=r, groups=C * T_out)
    else:
        gyp = F.conv_transpose2d(g4, sw_rep, groups=C * T_out)
        gy = _reflect_fold(_reflect_fold(gyp, r, 2, H), r, 3, W)
    gy = gy.reshape(N, C, T_out, H, W)
    # g_sw: one grouped correlation of pad(Y) (batch folded into channels) with grad as weights.
    yp = _spatial_pad(y.reshape(N, C * T_out, H, W), r, spatial_padding)
    yp = yp.reshape(N, C, T_out, H + 2 * r, W + 2 * r).transpose(0, 1).reshape(1, C * N * T_out, H + 2 * r, W + 2 * r)
    gw = grad.to(dt).transpose(0, 1).reshape(C, N * T_out, H, W)
    g_sw = F.conv2d(yp, gw.unsqueeze(0).reshape(C, N * T_out, H, W), groups=C).reshape(C, k, k)
    # g_tw and g_x through the padded time axis.
    g_tw = torch.stack([(gy * xp[:, :, j: j + s * (T_out - 1) + 1: s]).sum((0, 2, 3, 4)) for j in range(3)], 1)
    gxp = torch.zeros_like(xp)
    for j in range(3):
        gxp[:, :, j: j + s * (T_out - 1) + 1: s] += gy * tw[:, j].view(1, C, 1, 1, 1)
    if temporal_padding == "valid":
        gx = gxp
    else:
        gx = gxp[:, :, 1: T + 1].clone()
        if temporal_padding == "replicate":
            gx[:, :, 0] += gxp[:, :, 0]
            gx[:, :, T - 1] += gxp[:, :, T + 1]
    return gx, g_sw.reshape(spatial_weight.shape), g_tw.reshape(temporal_weight.shape)
