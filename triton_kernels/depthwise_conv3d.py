"""Triton kernels of `vidops.depthwise_conv3d` (operators.md §2): launchers `forward` and `backward`.

    forward:  one program per (n*c, block of BLOCK_P outputs of the flattened (T, H, W) plane);
              per temporal tap one masked (KH_P, KW_P, BLOCK_P) gather of the shifted inputs (the
              masks are the zero padding) times the tap plane of the weight, reduced over the taps;
              fp32 accumulation (fp64 for float64 inputs).
              Reads x through its strides (non-contiguous and channels_last_3d need no copy).
    grad_x:   the same kernel on grad_out with the kernel reversed on every axis (FLIP).
    grad_w:   one program per (channel, temporal tap, split): the same gathers times grad_out,
              accumulated over its contiguous range of (sample, pixel block) units, one
              (KH_P, KW_P) partial per program; the partials are added over splits by torch.sum.
              The split count depends on the shape only, so the result is the same bits every run.
Weights are read as (C, kt*kh*kw) contiguous; half-precision inputs are accumulated in fp32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import acc_dtype as _acc_torch
from ._common import interpreter, tl_acc


@triton.jit
def _tap_offsets(x_base, ts, hs, ws, p_ok, a, T, H, W, sxt, sxh, sxw,
                 KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                 KH_P: tl.constexpr, KW_P: tl.constexpr):
    """Pointers and mask of the (KH_P, KW_P, BLOCK_P) input taps of temporal tap a for the
    outputs (ts, hs, ws): x[t + a - pt, h + b - ph, w + e - pw], masked to zero outside x."""
    bs = tl.arange(0, KH_P)
    es = tl.arange(0, KW_P)
    ti = ts + a - (KT - 1) // 2
    hi = hs[None, None, :] + bs[:, None, None] - (KH - 1) // 2
    wi = ws[None, None, :] + es[None, :, None] - (KW - 1) // 2
    m = (p_ok & (ti >= 0) & (ti < T))[None, None, :]
    m = m & (bs < KH)[:, None, None] & (es < KW)[None, :, None]
    m = m & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
    ptr = x_base + ti.to(tl.int64)[None, None, :] * sxt + hi.to(tl.int64) * sxh + wi.to(tl.int64) * sxw
    return ptr, m


@triton.jit
def _dwc_fwd_kernel(x_ptr, w_ptr, y_ptr, C, T, H, W,
                    sxn, sxc, sxt, sxh, sxw,
                    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, FLIP: tl.constexpr,
                    KH_P: tl.constexpr, KW_P: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid_nc = tl.program_id(0)
    n = pid_nc // C
    c = pid_nc % C
    HW = H * W
    ps = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)  # flat (t, h, w) of the outputs
    p_ok = ps < T * HW
    ts = ps // HW
    hs = (ps % HW) // W
    ws = ps % W
    x_base = x_ptr + n.to(tl.int64) * sxn + c.to(tl.int64) * sxc
    bs = tl.arange(0, KH_P)
    es = tl.arange(0, KW_P)
    w_m = (bs < KH)[:, None] & (es < KW)[None, :]
    acc = tl.zeros((BLOCK_P,), dtype=ACC)
    for a in range(KT):
        ptr, m = _tap_offsets(x_base, ts, hs, ws, p_ok, a, T, H, W, sxt, sxh, sxw, KT, KH, KW, KH_P, KW_P)
        xv = tl.load(ptr, mask=m, other=0.0).to(ACC)
        if FLIP:  # grad_x: the kernel reversed on every axis
            tap = ((KT - 1 - a) * KH + (KH - 1 - bs[:, None])) * KW + (KW - 1 - es[None, :])
        else:
            tap = (a * KH + bs[:, None]) * KW + es[None, :]
        wv = tl.load(w_ptr + c.to(tl.int64) * (KT * KH * KW) + tap, mask=w_m, other=0.0).to(ACC)
        acc += tl.sum(tl.sum(wv[:, :, None] * xv, 0), 0)
    tl.store(y_ptr + pid_nc.to(tl.int64) * T * HW + ps, acc.to(y_ptr.dtype.element_ty), mask=p_ok)


@triton.jit
def _dwc_wgrad_kernel(x_ptr, g_ptr, part_ptr, C, T, H, W, UNITS, SPLITS,
                      sxn, sxc, sxt, sxh, sxw, sgn, sgc, sgt, sgh, sgw,
                      KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                      KH_P: tl.constexpr, KW_P: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid = tl.program_id(0)  # c * KT + a
    s = tl.program_id(1)
    c = pid // KT
    a = pid % KT
    HW = H * W
    n_pb = tl.cdiv(T * HW, BLOCK_P)
    # units [u0, u1) of the N * n_pb (sample, pixel block) units (the split of dwc::chunk_range)
    base_n = UNITS // SPLITS
    extra = UNITS % SPLITS
    u0 = s * base_n + tl.minimum(s, extra)
    u1 = u0 + base_n + (s < extra).to(tl.int32)
    acc = tl.zeros((KH_P, KW_P, BLOCK_P), dtype=ACC)
    for u in range(u0, u1):
        n = u // n_pb
        ps = (u % n_pb) * BLOCK_P + tl.arange(0, BLOCK_P)
        p_ok = ps < T * HW
        ts = ps // HW
        hs = (ps % HW) // W
        ws = ps % W
        x_base = x_ptr + n.to(tl.int64) * sxn + c.to(tl.int64) * sxc
        g_off = (n.to(tl.int64) * sgn + c.to(tl.int64) * sgc + ts.to(tl.int64) * sgt
                 + hs.to(tl.int64) * sgh + ws.to(tl.int64) * sgw)
        gv = tl.load(g_ptr + g_off, mask=p_ok, other=0.0).to(ACC)
        ptr, m = _tap_offsets(x_base, ts, hs, ws, p_ok, a, T, H, W, sxt, sxh, sxw, KT, KH, KW, KH_P, KW_P)
        xv = tl.load(ptr, mask=m, other=0.0).to(ACC)
        acc += gv[None, None, :] * xv
    out = tl.sum(acc, 2)
    bs = tl.arange(0, KH_P)
    es = tl.arange(0, KW_P)
    tl.store(part_ptr + (pid.to(tl.int64) * SPLITS + s) * (KH_P * KW_P) + bs[:, None] * KW_P + es[None, :], out)


# 8 warps: the (KH_P, KW_P, BLOCK_P) accumulator, gather and its int64 pointers over 4 warps need
# 255 registers and spill 120 B on sm_90 with triton 3.6 (triton 3.9 fits them in 104).
WGRAD_WARPS = 8


def _tiles(T: int, H: int, W: int, kh: int, kw: int):
    """(KH_P, KW_P, BLOCK_P): the tap block and the number of outputs per program, keeping the
    (KH_P, KW_P, BLOCK_P) gathers at 4096 elements on a GPU (bigger under the interpreter, where
    every program costs Python time)."""
    kh_p, kw_p = triton.next_power_of_2(kh), triton.next_power_of_2(kw)
    cap = (1 << 17) if interpreter() else 4096
    bp = max(16, min(triton.next_power_of_2(max(T * H * W, 1)), cap // (kh_p * kw_p)))
    return kh_p, kw_p, bp


_acc = tl_acc


def _weight2d(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1).contiguous()


def _conv(x: torch.Tensor, weight: torch.Tensor, flip: bool) -> torch.Tensor:
    N, C, T, H, W = x.shape
    kt, kh, kw = weight.shape[-3:]
    y = torch.empty((N, C, T, H, W), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    kh_p, kw_p, bp = _tiles(T, H, W, kh, kw)
    grid = (N * C, triton.cdiv(T * H * W, bp))
    _dwc_fwd_kernel[grid](x, _weight2d(weight), y, C, T, H, W, *x.stride(),
                          KT=kt, KH=kh, KW=kw, FLIP=flip, KH_P=kh_p, KW_P=kw_p, BLOCK_P=bp,
                          ACC=_acc(x.dtype))
    return y


def forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _conv(x, weight, False)


def wgrad_splits(programs: int, units: int) -> int:
    """Splits of the (sample, pixel block) units of every (channel, temporal tap) program: enough
    programs to fill a GPU, fewer under the interpreter (each program costs Python time there);
    shape-determined either way, so the sum over splits is the same bits on every run."""
    target = 8 if interpreter() else 2048
    return max(1, min(units, -(-target // max(programs, 1))))


def backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool = True,
             need_w: bool = True):
    N, C, T, H, W = x.shape
    kt, kh, kw = weight.shape[-3:]
    gx = _conv(grad, weight, True) if need_x else torch.zeros_like(x, memory_format=torch.contiguous_format)
    if not need_w or x.numel() == 0:
        return gx, torch.zeros_like(weight, memory_format=torch.contiguous_format)
    kh_p, kw_p, bp = _tiles(T, H, W, kh, kw)
    units = N * triton.cdiv(T * H * W, bp)
    splits = wgrad_splits(C * kt, units)
    acc_dtype = _acc_torch(x.dtype)
    part = torch.empty((C * kt, splits, kh_p, kw_p), dtype=acc_dtype, device=x.device)
    _dwc_wgrad_kernel[(C * kt, splits)](x, grad, part, C, T, H, W, units, splits,
                                        *x.stride(), *grad.stride(),
                                        KT=kt, KH=kh, KW=kw, KH_P=kh_p, KW_P=kw_p, BLOCK_P=bp,
                                        ACC=_acc(x.dtype), num_warps=WGRAD_WARPS)
    gw = part.sum(1)[:, :kh, :kw].reshape(weight.shape).to(weight.dtype).contiguous()
    return gx, gw
