"""Triton kernels of `vidops.depthwise_conv3d` (operators.md §2): launchers `forward` and `backward`.

    y[n,c,o]   = bias[c] + sum_{a,b,e} w[c,a,b,e] * x[n,c, s*o + (a,b,e) - p]     (zeros outside x)
    grad_x[i]  = sum over taps k with (i + p - k) divisible by s, and o = (i + p - k) / s inside
                 y, of w[k] * grad_y[o]                        (the transposed gather: any stride)
    grad_w[k]  = sum_{n,o} grad_y[n,c,o] * x[n,c, s*o + k - p]
    grad_b[c]  = sum_{n,o} grad_y[n,c,o]
with s the stride and p the zero padding per axis (T, H, W); output size (L + 2p - k) // s + 1.

Two families of kernels, picked by x's layout; both read every tensor through its element strides
and write y and grad_x in x's layout (channels_last_3d in, channels_last_3d out):
  plane   (channels not innermost: NCDHW, slices): one program per (n*c, block of BLOCK_P outputs
          of the flattened (T, H, W) plane); per tap one masked [BLOCK_P] load (coalesced along W)
          and one FMA with the tap's weight.
  channel (channels innermost: channels_last_3d): one program per (BLOCK_P positions of the
          flattened (N, T, H, W), BLOCK_C channels); a [BLOCK_P, BLOCK_C] tile per tap whose
          channel axis is contiguous (coalesced, vectorised loads), the weight read as (taps, C).
Forward and grad_x add the taps in (a, b, e) order, one FMA each, in both families: a
channels_last_3d x gives the same bits as its contiguous copy.
grad_w: one program per (channel or channel block, temporal tap [and tap row], split); each split
is a contiguous range of (sample, output block) units summed in registers, the partials are added
over splits by torch.sum. The split count depends on the shape only: the same bits on every run.
grad_b is summed by the same programs (from grad_y, which they load anyway).
Accumulation in fp32 (fp64 for float64 inputs); weights and bias are read in their own dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import acc_dtype as _acc_torch
from ._common import interpreter, tl_acc


# ---- plane kernels (channels not innermost) ----------------------------------------------------

@triton.jit
def _fwd_plane_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C, T, H, W, TO, HO, WO,
                      sxn, sxc, sxt, sxh, sxw, syn, syc, syt, syh, syw,
                      PT, PH, PW, ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                      KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr,
                      BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid_nc = tl.program_id(0)
    n = pid_nc // C
    c = pid_nc % C
    HWO = HO * WO
    ps = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)  # flat (to, ho, wo) of the outputs
    p_ok = ps < TO * HWO
    to = ps // HWO
    ho = (ps % HWO) // WO
    wo = ps % WO
    x_base = x_ptr + n.to(tl.int64) * sxn + c.to(tl.int64) * sxc
    w_base = w_ptr + c.to(tl.int64) * (KT * KH * KW)
    acc = tl.zeros((BLOCK_P,), dtype=ACC)
    # taps in (a, b, e) order, one FMA each: the channel kernel's order, so both layouts give the same bits
    for a in range(KT):
        ti = to * ST + a - PT
        ok_t = p_ok & (ti >= 0) & (ti < T)
        for b in range(KH):
            hi = ho * SH + b - PH
            ok_h = ok_t & (hi >= 0) & (hi < H)
            row = x_base + ti.to(tl.int64) * sxt + hi.to(tl.int64) * sxh
            for e in range(KW):
                wi = wo * SW + e - PW
                ok = ok_h & (wi >= 0) & (wi < W)
                xv = tl.load(row + wi.to(tl.int64) * sxw, mask=ok, other=0.0).to(ACC)
                acc += xv * tl.load(w_base + (a * KH + b) * KW + e).to(ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(ACC)
    y_off = (n.to(tl.int64) * syn + c.to(tl.int64) * syc + to.to(tl.int64) * syt + ho.to(tl.int64) * syh
             + wo.to(tl.int64) * syw)
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=p_ok)


@triton.jit
def _dx_plane_kernel(g_ptr, w_ptr, gx_ptr, C, T, H, W, TO, HO, WO,
                     sgn, sgc, sgt, sgh, sgw, sxn, sxc, sxt, sxh, sxw,
                     PT, PH, PW, ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                     KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                     BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid_nc = tl.program_id(0)
    n = pid_nc // C
    c = pid_nc % C
    HW = H * W
    ps = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)  # flat (t, h, w) of grad_x
    p_ok = ps < T * HW
    ti = ps // HW
    hi = (ps % HW) // W
    wi = ps % W
    g_base = g_ptr + n.to(tl.int64) * sgn + c.to(tl.int64) * sgc
    w_base = w_ptr + c.to(tl.int64) * (KT * KH * KW)
    acc = tl.zeros((BLOCK_P,), dtype=ACC)
    for a in range(KT):
        nt = ti + PT - a  # = to * ST where output to reads ti through tap a
        to = nt // ST
        ok_t = p_ok & (nt >= 0) & (nt % ST == 0) & (to < TO)
        for b in range(KH):
            nh = hi + PH - b
            ho = nh // SH
            ok_h = ok_t & (nh >= 0) & (nh % SH == 0) & (ho < HO)
            row = g_base + to.to(tl.int64) * sgt + ho.to(tl.int64) * sgh
            for e in range(KW):
                nw = wi + PW - e
                wo = nw // SW
                ok = ok_h & (nw >= 0) & (nw % SW == 0) & (wo < WO)
                gv = tl.load(row + wo.to(tl.int64) * sgw, mask=ok, other=0.0).to(ACC)
                acc += gv * tl.load(w_base + (a * KH + b) * KW + e).to(ACC)
    x_off = (n.to(tl.int64) * sxn + c.to(tl.int64) * sxc + ti.to(tl.int64) * sxt + hi.to(tl.int64) * sxh
             + wi.to(tl.int64) * sxw)
    tl.store(gx_ptr + x_off, acc.to(gx_ptr.dtype.element_ty), mask=p_ok)


@triton.jit
def _dw_plane_kernel(x_ptr, g_ptr, part_ptr, partb_ptr, C, T, H, W, TO, HO, WO, UNITS, SPLITS,
                     sxn, sxc, sxt, sxh, sxw, sgn, sgc, sgt, sgh, sgw,
                     PT, PH, PW, ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                     KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr,
                     KH_P: tl.constexpr, KW_P: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid = tl.program_id(0)  # c * KT + a
    s = tl.program_id(1)
    c = pid // KT
    a = pid % KT
    HWO = HO * WO
    n_pb = tl.cdiv(TO * HWO, BLOCK_P)
    # units [u0, u1) of the N * n_pb (sample, output block) units, cut as dwc::chunk_range cuts them
    base_n = UNITS // SPLITS
    extra = UNITS % SPLITS
    u0 = s * base_n + tl.minimum(s, extra)
    u1 = u0 + base_n + (s < extra).to(tl.int32)
    bs = tl.arange(0, KH_P)
    es = tl.arange(0, KW_P)
    acc = tl.zeros((KH_P, KW_P, BLOCK_P), dtype=ACC)
    acc_b = tl.zeros((BLOCK_P,), dtype=ACC)
    for u in range(u0, u1):
        n = u // n_pb
        ps = (u % n_pb) * BLOCK_P + tl.arange(0, BLOCK_P)
        p_ok = ps < TO * HWO
        to = ps // HWO
        ho = (ps % HWO) // WO
        wo = ps % WO
        g_off = (n.to(tl.int64) * sgn + c.to(tl.int64) * sgc + to.to(tl.int64) * sgt
                 + ho.to(tl.int64) * sgh + wo.to(tl.int64) * sgw)
        gv = tl.load(g_ptr + g_off, mask=p_ok, other=0.0).to(ACC)
        ti = to * ST + a - PT
        hi = ho[None, None, :] * SH + bs[:, None, None] - PH
        wi = wo[None, None, :] * SW + es[None, :, None] - PW
        m = (p_ok & (ti >= 0) & (ti < T))[None, None, :]
        m = m & (bs < KH)[:, None, None] & (es < KW)[None, :, None]
        m = m & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
        x_off = (n.to(tl.int64) * sxn + c.to(tl.int64) * sxc + ti.to(tl.int64)[None, None, :] * sxt
                 + hi.to(tl.int64) * sxh + wi.to(tl.int64) * sxw)
        xv = tl.load(x_ptr + x_off, mask=m, other=0.0).to(ACC)
        acc += gv[None, None, :] * xv
        if HAS_BIAS:
            acc_b += gv
    out = tl.sum(acc, 2)
    tl.store(part_ptr + (pid.to(tl.int64) * SPLITS + s) * (KH_P * KW_P) + bs[:, None] * KW_P + es[None, :], out)
    if HAS_BIAS:
        tl.store(partb_ptr + pid.to(tl.int64) * SPLITS + s, tl.sum(acc_b, 0))


# ---- channel kernels (channels innermost: channels_last_3d) --------------------------------------

@triton.jit
def _fwd_chan_kernel(x_ptr, wt_ptr, b_ptr, y_ptr, C, T, H, W, TO, HO, WO, P_ALL,
                     sxn, sxc, sxt, sxh, sxw, syn, syc, syt, syh, syw,
                     PT, PH, PW, ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                     KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    pp = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # flat (n, to, ho, wo)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = pp < P_ALL
    c_ok = cs < C
    wo = pp % WO
    r = pp // WO
    ho = r % HO
    r = r // HO
    to = r % TO
    n = r // TO
    x_c = cs.to(tl.int64)[None, :] * sxc
    x_n = n.to(tl.int64) * sxn
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=ACC)
    for a in range(KT):
        ti = to * ST + a - PT
        ok_t = p_ok & (ti >= 0) & (ti < T)
        for b in range(KH):
            hi = ho * SH + b - PH
            ok_h = ok_t & (hi >= 0) & (hi < H)
            row = x_n + ti.to(tl.int64) * sxt + hi.to(tl.int64) * sxh
            for e in range(KW):
                wi = wo * SW + e - PW
                ok = ok_h & (wi >= 0) & (wi < W)
                xv = tl.load(x_ptr + (row + wi.to(tl.int64) * sxw)[:, None] + x_c,
                             mask=ok[:, None] & c_ok[None, :], other=0.0).to(ACC)
                wv = tl.load(wt_ptr + ((a * KH + b) * KW + e) * C + cs, mask=c_ok, other=0.0).to(ACC)
                acc += xv * wv[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + cs, mask=c_ok, other=0.0).to(ACC)[None, :]
    y_off = (n.to(tl.int64) * syn + to.to(tl.int64) * syt + ho.to(tl.int64) * syh + wo.to(tl.int64) * syw)
    tl.store(y_ptr + y_off[:, None] + cs.to(tl.int64)[None, :] * syc, acc.to(y_ptr.dtype.element_ty),
             mask=p_ok[:, None] & c_ok[None, :])


@triton.jit
def _dx_chan_kernel(g_ptr, wt_ptr, gx_ptr, C, T, H, W, TO, HO, WO, P_ALL,
                    sgn, sgc, sgt, sgh, sgw, sxn, sxc, sxt, sxh, sxw,
                    PT, PH, PW, ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    pp = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # flat (n, t, h, w) of grad_x
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = pp < P_ALL
    c_ok = cs < C
    wi = pp % W
    r = pp // W
    hi = r % H
    r = r // H
    ti = r % T
    n = r // T
    g_c = cs.to(tl.int64)[None, :] * sgc
    g_n = n.to(tl.int64) * sgn
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=ACC)
    for a in range(KT):
        nt = ti + PT - a
        to = nt // ST
        ok_t = p_ok & (nt >= 0) & (nt % ST == 0) & (to < TO)
        for b in range(KH):
            nh = hi + PH - b
            ho = nh // SH
            ok_h = ok_t & (nh >= 0) & (nh % SH == 0) & (ho < HO)
            row = g_n + to.to(tl.int64) * sgt + ho.to(tl.int64) * sgh
            for e in range(KW):
                nw = wi + PW - e
                wo = nw // SW
                ok = ok_h & (nw >= 0) & (nw % SW == 0) & (wo < WO)
                gv = tl.load(g_ptr + (row + wo.to(tl.int64) * sgw)[:, None] + g_c,
                             mask=ok[:, None] & c_ok[None, :], other=0.0).to(ACC)
                wv = tl.load(wt_ptr + ((a * KH + b) * KW + e) * C + cs, mask=c_ok, other=0.0).to(ACC)
                acc += gv * wv[None, :]
    x_off = (n.to(tl.int64) * sxn + ti.to(tl.int64) * sxt + hi.to(tl.int64) * sxh + wi.to(tl.int64) * sxw)
    tl.store(gx_ptr + x_off[:, None] + cs.to(tl.int64)[None, :] * sxc, acc.to(gx_ptr.dtype.element_ty),
             mask=p_ok[:, None] & c_ok[None, :])


@triton.jit
def _dw_chan_kernel(x_ptr, g_ptr, part_ptr, partb_ptr, C, T, H, W, TO, HO, WO, P_ALL, UNITS, SPLITS,
                    sxn, sxc, sxt, sxh, sxw, sgn, sgc, sgt, sgh, sgw,
                    PT, PH, PW, ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                    KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr,
                    KW_P: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    row_id = tl.program_id(0)  # a * KH + b: one tap row, its KW taps at once
    cb = tl.program_id(1)
    s = tl.program_id(2)
    a = row_id // KH
    b = row_id % KH
    cs = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    es = tl.arange(0, KW_P)
    base_n = UNITS // SPLITS
    extra = UNITS % SPLITS
    u0 = s * base_n + tl.minimum(s, extra)
    u1 = u0 + base_n + (s < extra).to(tl.int32)
    acc = tl.zeros((KW_P, BLOCK_P, BLOCK_C), dtype=ACC)
    acc_b = tl.zeros((BLOCK_P, BLOCK_C), dtype=ACC)
    for u in range(u0, u1):
        pp = u * BLOCK_P + tl.arange(0, BLOCK_P)  # flat (n, to, ho, wo)
        p_ok = pp < P_ALL
        wo = pp % WO
        r = pp // WO
        ho = r % HO
        r = r // HO
        to = r % TO
        n = r // TO
        g_off = (n.to(tl.int64) * sgn + to.to(tl.int64) * sgt + ho.to(tl.int64) * sgh + wo.to(tl.int64) * sgw)
        pc_ok = p_ok[:, None] & c_ok[None, :]
        gv = tl.load(g_ptr + g_off[:, None] + cs.to(tl.int64)[None, :] * sgc, mask=pc_ok, other=0.0).to(ACC)
        ti = to * ST + a - PT
        hi = ho * SH + b - PH
        ok = p_ok & (ti >= 0) & (ti < T) & (hi >= 0) & (hi < H)
        wi = wo[None, :] * SW + es[:, None] - PW
        ok2 = ok[None, :] & (es < KW)[:, None] & (wi >= 0) & (wi < W)
        x_off = (n.to(tl.int64) * sxn + ti.to(tl.int64) * sxt + hi.to(tl.int64) * sxh)[None, :] + wi.to(tl.int64) * sxw
        xv = tl.load(x_ptr + x_off[:, :, None] + cs.to(tl.int64)[None, None, :] * sxc,
                     mask=ok2[:, :, None] & c_ok[None, None, :], other=0.0).to(ACC)
        acc += gv[None, :, :] * xv
        if HAS_BIAS:
            acc_b += gv
    out = tl.sum(acc, 1)  # (KW_P, BLOCK_C)
    # part: (KT * KH, SPLITS, KW_P, C)
    base = (row_id.to(tl.int64) * SPLITS + s) * KW_P * C
    tl.store(part_ptr + base + es[:, None] * C + cs[None, :], out, mask=c_ok[None, :])
    if HAS_BIAS:
        tl.store(partb_ptr + (row_id.to(tl.int64) * SPLITS + s) * C + cs, tl.sum(acc_b, 0), mask=c_ok)


# ---- host side ---------------------------------------------------------------------------------

# 8 warps: the (KH_P, KW_P, BLOCK_P) accumulator, gather and its int64 pointers over 4 warps need
# 255 registers and spill 120 B on sm_90 with triton 3.6 (triton 3.9 fits them in 104).
WGRAD_WARPS = 8
# 8 warps and no software pipelining for the forward and grad_x kernels (1024-element tiles): with 4
# warps the unrolled taps keep their loads and int64 addresses live and spill (3x3x3 channel tiles:
# 128 registers and 24 B on sm_90; 1024-output plane blocks: 168 registers and 24 B on sm_80;
# triton 3.9, measured by vidops.kernel_report).
TAP_WARPS = 8
_acc = tl_acc


def out_size(L: int, k: int, s: int, p: int) -> int:
    """(L + 2p - k) // s + 1, as nn.Conv3d; an empty axis stays empty (the op's rule)."""
    return (L + 2 * p - k) // s + 1 if L > 0 else 0


def channels_last(x: torch.Tensor) -> bool:
    """x is channels_last_3d (and not also plain contiguous): y and grad_x are then channels_last_3d."""
    return x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


def _channels_inner(x: torch.Tensor) -> bool:
    """The channel kernels: channels are x's innermost (unit-stride) axis."""
    return x.shape[1] > 1 and x.stride(1) == 1


def _empty(shape, like: torch.Tensor) -> torch.Tensor:
    fmt = torch.channels_last_3d if channels_last(like) else torch.contiguous_format
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)


def _tiles(kh: int, kw: int, P: int):
    """(KH_P, KW_P, BLOCK_P) of the plane kernels: the (KH_P, KW_P, BLOCK_P) gathers stay at 4096
    elements and BLOCK_P at 1024 on a GPU (4096 outputs of a 5x1x1 kernel spill: the unrolled
    temporal taps keep their loads and int64 addresses live), bigger under the interpreter, where
    every program costs Python time."""
    kh_p, kw_p = triton.next_power_of_2(kh), triton.next_power_of_2(kw)
    cap, most = ((1 << 17), (1 << 17)) if interpreter() else (4096, 1024)
    bp = max(16, min(triton.next_power_of_2(max(P, 1)), cap // (kh_p * kw_p), most))
    return kh_p, kw_p, bp


def _plane_block(P: int) -> int:
    """BLOCK_P of the plane forward and grad_x: 1024 outputs of one (n, c) plane per program on a GPU
    (every tap one coalesced [BLOCK_P] load), more under the interpreter."""
    return max(16, min(triton.next_power_of_2(max(P, 1)), (1 << 16) if interpreter() else 1024))


def _chan_tiles(C: int, P: int, per_pos: int = 1):
    """(BLOCK_P, BLOCK_C) of the channel kernels: up to 64 channels (128 B of bf16 per row) and
    1024 elements per tile on a GPU (2048 spill on sm_80: the unrolled taps keep their loads and
    int64 addresses live); per_pos: elements per position and channel of the tile."""
    bc = min(triton.next_power_of_2(C), 64)
    cap = (1 << 16) if interpreter() else 1024
    bp = max(8, min(triton.next_power_of_2(max(P, 1)), cap // (bc * per_pos)))
    return bp, bc


def _weight2d(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1).contiguous()


def _weight_t(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1).t().contiguous()


def _geometry(x, weight, stride, padding):
    N, C, T, H, W = x.shape
    kt, kh, kw = weight.shape[-3:]
    st, sh, sw = (int(v) for v in stride)
    pt, ph, pw = (int(v) for v in padding)
    To, Ho, Wo = out_size(T, kt, st, pt), out_size(H, kh, sh, ph), out_size(W, kw, sw, pw)
    return (N, C, T, H, W), (kt, kh, kw), (st, sh, sw), (pt, ph, pw), (To, Ho, Wo)


def forward(x: torch.Tensor, weight: torch.Tensor, bias=None, stride=(1, 1, 1), padding=None) -> torch.Tensor:
    if padding is None:
        padding = tuple((k - 1) // 2 for k in weight.shape[-3:])
    (N, C, T, H, W), (kt, kh, kw), s, p, (To, Ho, Wo) = _geometry(x, weight, stride, padding)
    y = _empty((N, C, To, Ho, Wo), x)
    if y.numel() == 0:
        return y
    has_b = bias is not None
    b = bias if has_b else weight
    if _channels_inner(x):
        P = N * To * Ho * Wo
        bp, bc = _chan_tiles(C, P)
        grid = (triton.cdiv(P, bp), triton.cdiv(C, bc))
        _fwd_chan_kernel[grid](x, _weight_t(weight), b, y, C, T, H, W, To, Ho, Wo, P, *x.stride(), *y.stride(),
                               *p, ST=s[0], SH=s[1], SW=s[2], KT=kt, KH=kh, KW=kw, HAS_BIAS=has_b,
                               BLOCK_P=bp, BLOCK_C=bc, ACC=_acc(x.dtype), num_warps=TAP_WARPS, num_stages=1)
    else:
        bp = _plane_block(To * Ho * Wo)
        grid = (N * C, triton.cdiv(To * Ho * Wo, bp))
        _fwd_plane_kernel[grid](x, _weight2d(weight), b, y, C, T, H, W, To, Ho, Wo, *x.stride(), *y.stride(),
                                *p, ST=s[0], SH=s[1], SW=s[2], KT=kt, KH=kh, KW=kw, HAS_BIAS=has_b,
                                BLOCK_P=bp, ACC=_acc(x.dtype), num_warps=TAP_WARPS, num_stages=1)
    return y


def wgrad_splits(programs: int, units: int) -> int:
    """Splits of the units of every weight-gradient program: enough programs to fill a GPU, fewer
    under the interpreter (each program costs Python time there); shape-determined either way, so
    the sum over splits is the same bits on every run."""
    target = 8 if interpreter() else 2048
    return max(1, min(units, -(-target // max(programs, 1))))


def _grad_x(grad, x, weight, s, p, To, Ho, Wo):
    N, C, T, H, W = x.shape
    kt, kh, kw = weight.shape[-3:]
    gx = _empty(x.shape, x)
    if gx.numel() == 0:
        return gx
    if _channels_inner(x):
        P = N * T * H * W
        bp, bc = _chan_tiles(C, P)
        grid = (triton.cdiv(P, bp), triton.cdiv(C, bc))
        _dx_chan_kernel[grid](grad, _weight_t(weight), gx, C, T, H, W, To, Ho, Wo, P, *grad.stride(), *gx.stride(),
                              *p, ST=s[0], SH=s[1], SW=s[2], KT=kt, KH=kh, KW=kw, BLOCK_P=bp, BLOCK_C=bc,
                              ACC=_acc(x.dtype), num_warps=TAP_WARPS, num_stages=1)
    else:
        bp = _plane_block(T * H * W)
        grid = (N * C, triton.cdiv(T * H * W, bp))
        _dx_plane_kernel[grid](grad, _weight2d(weight), gx, C, T, H, W, To, Ho, Wo, *grad.stride(), *gx.stride(),
                               *p, ST=s[0], SH=s[1], SW=s[2], KT=kt, KH=kh, KW=kw, BLOCK_P=bp, ACC=_acc(x.dtype),
                               num_warps=TAP_WARPS, num_stages=1)
    return gx


def _grad_w_b(grad, x, weight, has_b, s, p, To, Ho, Wo):
    """(grad_w in the accumulation dtype, grad_b or None) from the split partials."""
    N, C, T, H, W = x.shape
    kt, kh, kw = weight.shape[-3:]
    acc_dtype = _acc_torch(x.dtype)
    dev = x.device
    if _channels_inner(x):
        kw_p = triton.next_power_of_2(kw)
        P = N * To * Ho * Wo
        bp, bc = _chan_tiles(C, P, per_pos=kw_p)
        units = triton.cdiv(P, bp)
        n_cb = triton.cdiv(C, bc)
        splits = wgrad_splits(kt * kh * n_cb, units)
        part = torch.empty((kt * kh, splits, kw_p, C), dtype=acc_dtype, device=dev)
        partb = torch.empty((kt * kh, splits, C) if has_b else (1,), dtype=acc_dtype, device=dev)
        _dw_chan_kernel[(kt * kh, n_cb, splits)](x, grad, part, partb, C, T, H, W, To, Ho, Wo, P, units, splits,
                                                 *x.stride(), *grad.stride(), *p, ST=s[0], SH=s[1], SW=s[2],
                                                 KT=kt, KH=kh, KW=kw, HAS_BIAS=has_b, KW_P=kw_p,
                                                 BLOCK_P=bp, BLOCK_C=bc, ACC=_acc(x.dtype))
        gw = part.sum(1)[:, :kw, :].reshape(kt, kh, kw, C).permute(3, 0, 1, 2)
        gb = partb[0].sum(0) if has_b else None
    else:
        kh_p, kw_p, bp = _tiles(kh, kw, To * Ho * Wo)
        units = N * triton.cdiv(To * Ho * Wo, bp)
        splits = wgrad_splits(C * kt, units)
        part = torch.empty((C * kt, splits, kh_p, kw_p), dtype=acc_dtype, device=dev)
        partb = torch.empty((C * kt, splits) if has_b else (1,), dtype=acc_dtype, device=dev)
        _dw_plane_kernel[(C * kt, splits)](x, grad, part, partb, C, T, H, W, To, Ho, Wo, units, splits,
                                           *x.stride(), *grad.stride(), *p, ST=s[0], SH=s[1], SW=s[2],
                                           KT=kt, KH=kh, KW=kw, HAS_BIAS=has_b, KH_P=kh_p, KW_P=kw_p,
                                           BLOCK_P=bp, ACC=_acc(x.dtype), num_warps=WGRAD_WARPS)
        gw = part.sum(1)[:, :kh, :kw].reshape(C, kt, kh, kw)
        gb = partb.reshape(C, kt, splits)[:, 0].sum(1) if has_b else None
    return gw, gb


def backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias=None, stride=(1, 1, 1),
             padding=None, need_x: bool = True, need_weight: bool = True, need_bias: bool = True):
    """(grad_x, grad_weight, grad_bias); a gradient not asked for comes back as zeros without
    being computed, grad_bias as an empty (0,) tensor when there is no bias."""
    if padding is None:
        padding = tuple((k - 1) // 2 for k in weight.shape[-3:])
    _, _, s, p, (To, Ho, Wo) = _geometry(x, weight, stride, padding)
    has_b = bias is not None
    need_bias = need_bias and has_b
    gx = _grad_x(grad, x, weight, s, p, To, Ho, Wo) if need_x else _empty(x.shape, x).zero_()
    gw = torch.zeros_like(weight, memory_format=torch.contiguous_format)
    gb = torch.zeros_like(bias, memory_format=torch.contiguous_format) if has_b else x.new_empty((0,))
    bdt = gb.dtype
    if grad.numel() == 0 or not (need_weight or need_bias):
        return gx, gw, gb
    if need_weight:
        gwa, gba = _grad_w_b(grad, x, weight, need_bias, s, p, To, Ho, Wo)
        gw = gwa.reshape(weight.shape).to(weight.dtype).contiguous()
        if need_bias:
            gb = gba.to(bdt)
    else:  # bias only: a plain (deterministic) reduction of grad_y
        gb = grad.sum((0, 2, 3, 4), dtype=_acc_torch(x.dtype)).to(bdt)
    return gx, gw, gb
