"""Triton kernel of `vidops.busy_quiet` (operators.md §1.3): the Busy-Quiet Net input split, one read of
the clip.

    busy[n,c,s]  = sum_{a,b} sw[c,a,b] * Y[src(o+a-r), src(w+b-r)],  Y = sum_j tw[c,j] clip[n,c,3s+j]
                   (motion band-pass stem: temporal stride 3, no temporal padding, reflect)
    quiet[n,c,s] = clip[n,c,3s]                          quiet="first" (the public code)
                 = mean_j clip[n,c,3s+j] - busy[n,c,s]   quiet="mean_minus_busy" (thesis eq. 5.4)
    then optionally quiet <- bilinear(quiet, quiet_scale): align_corners=False, no antialias,
    output floor(H * scale), source row (dst + 0.5) / scale - 0.5 clamped at 0, rows y0 and
    min(y0 + 1, H - 1), as F.interpolate(scale_factor=scale, mode="bilinear").

The busy part is the row-streaming stencil of motion_band_pass.py (see there). Quiet comes out of
the same programs: at full resolution each completed output row also writes its quiet row (the
three frames of that row are in L1: they were just read as the stencil's centre taps). Resized
"first" quiet is computed by the program whose row chunk and column strip hold the quiet pixel's
top-left source (y0, x0): its four sources were just streamed (the row below may lie in the next
chunk, an L2 hit). Resized "mean_minus_busy" needs busy at the four sources, which other programs
may own, so the first kernel writes full-resolution quiet to a float32 workspace and a second one
resizes it (the clip is still read once).

The source rows and columns and their weights are computed on the host exactly as PyTorch does
(in float32, float64 for float64 clips) and cached per (size, scale, dtype, device).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ._band_pass_stencil import column_taps as _column_taps
from ._band_pass_stencil import plane_frames as _plane_frames
from ._band_pass_stencil import plane_of as _plane_of
from ._band_pass_stencil import row_config, tile_config
from ._band_pass_stencil import spatial_weights as _spatial_weights
from ._common import acc_types as _acc_dtype
from ._common import grid as _grid
from ._common import needs_int64


@triton.jit
def _busy_quiet_kernel(x_ptr, sw_ptr, tw_ptr, busy_ptr, q_ptr,
                       qrow_ptr, qcol_ptr, y0_ptr, y1_ptr, ly_ptr, x0_ptr, x1_ptr, lx_ptr,
                       C, T, H, W, S, HQ, WQ,
                       sxn, sxc, sxt, sxh, sxw, ssc, ssa, ssb, stc, stj,
                       ROWS, n_wblk, n_hblk,
                       K: tl.constexpr, MEAN: tl.constexpr, FULL_Q: tl.constexpr, RESIZE_Q: tl.constexpr,
                       QBLOCK: tl.constexpr, BLOCK_W: tl.constexpr, IDX64: tl.constexpr,
                       ACC: tl.constexpr):
    """busy (N, C, S, H, W); quiet at full resolution into q (FULL_Q; "first", or MEAN:
    "mean_minus_busy"), or the resized "first" quiet (N, C, S, HQ, WQ) into q (RESIZE_Q)."""
    R: tl.constexpr = (K - 1) // 2
    pid = tl.program_id(0)
    wblk, hblk, plane, s, nc, c, n = _plane_of(pid, n_wblk, n_hblk, S, C)
    cols = wblk * BLOCK_W + tl.arange(0, BLOCK_W)
    p0, p1, p2, tw0, tw1, tw2, _, _, _ = _plane_frames(
        x_ptr, tw_ptr, n, c, s, T, sxn, sxc, sxt, stc, stj, 3, 0, cols, 3, ACC)
    wts = _spatial_weights(sw_ptr + c.to(tl.int64) * ssc, ssa, ssb, K, BLOCK_W, ACC)
    offs, _ = _column_taps(cols - R, W, sxw, K, True, IDX64)

    o0 = hblk.to(tl.int64) * ROWS  # row scalars in int64 (no int32 overflow checks in the interpreter)
    nrows = tl.minimum(ROWS, H - o0)
    col_ok = cols < W
    busy_row = busy_ptr + plane.to(tl.int64) * H * W + cols
    q_row = q_ptr + plane.to(tl.int64) * H * W + cols
    i_vec = cols.to(tl.int64) * 0
    zero = tl.zeros([BLOCK_W], ACC)
    accs = (zero,) * K  # accs[m]: output row o0 + i - (K-1) + m (see _mbp_fwd_kernel)
    for i in range(nrows + K - 1):
        h = o0 - R + i
        h = tl.where(h < 0, -h, h)
        h = tl.where(h >= H, 2 * H - 2 - h, h)
        row = tl.minimum(tl.maximum(h, 0), H - 1).to(tl.int64) * sxh
        q0, q1, q2 = p0 + row, p1 + row, p2 + row
        ys = ()
        for b in tl.static_range(K):
            v = tl.load(q0 + offs[b]).to(ACC) * tw0
            v = tl.fma(tl.load(q1 + offs[b]).to(ACC), tw1, v)
            v = tl.fma(tl.load(q2 + offs[b]).to(ACC), tw2, v)
            ys = ys + (v,)
        new = ()
        for m in tl.static_range(K):
            acc = accs[m]
            for b in tl.static_range(K):
                acc = tl.fma(wts[K - 1 - m][b], ys[b], acc)
            new = new + (acc,)
        o = tl.maximum(o0 + i - (K - 1), 0)
        done = col_ok & (i_vec + i >= K - 1)
        busy = new[0]
        tl.store(busy_row + o * W, busy.to(busy_ptr.dtype.element_ty), mask=done)
        if FULL_Q:
            xo = o * sxh + offs[R]  # the output row's own pixels (centre tap column)
            qv = tl.load(p0 + xo, mask=done, other=0.0).to(ACC)
            if MEAN:
                qv += tl.load(p1 + xo, mask=done, other=0.0).to(ACC)
                qv += tl.load(p2 + xo, mask=done, other=0.0).to(ACC)
                qv = qv / 3.0 - busy
            tl.store(q_row + o * W, qv.to(q_ptr.dtype.element_ty), mask=done)
        accs = new[1:] + (zero,)

    if RESIZE_Q:
        # quiet pixels whose top-left source (y0, x0) lies in this program's rows and columns
        hq_lo = tl.load(qrow_ptr + hblk)
        hq_hi = tl.load(qrow_ptr + hblk + 1)
        wq = tl.load(qcol_ptr + wblk) + tl.arange(0, QBLOCK)
        qm = wq < tl.load(qcol_ptr + wblk + 1)
        xa = tl.load(x0_ptr + wq, mask=qm, other=0)
        xb = tl.load(x1_ptr + wq, mask=qm, other=0)
        if IDX64:
            xa = xa.to(tl.int64)
            xb = xb.to(tl.int64)
        xa = xa * sxw
        xb = xb * sxw
        lx = tl.load(lx_ptr + wq, mask=qm, other=0.0).to(ACC)
        qb = q_ptr + plane.to(tl.int64) * HQ * WQ + wq
        for hq in range(hq_lo, hq_hi):
            ra = p0 + tl.load(y0_ptr + hq).to(tl.int64) * sxh
            rb = p0 + tl.load(y1_ptr + hq).to(tl.int64) * sxh
            ly = tl.load(ly_ptr + hq).to(ACC)
            top = (tl.load(ra + xa, mask=qm, other=0.0).to(ACC) * (1.0 - lx)
                   + tl.load(ra + xb, mask=qm, other=0.0).to(ACC) * lx)
            bot = (tl.load(rb + xa, mask=qm, other=0.0).to(ACC) * (1.0 - lx)
                   + tl.load(rb + xb, mask=qm, other=0.0).to(ACC) * lx)
            v = top * (1.0 - ly) + bot * ly
            tl.store(qb + hq * WQ, v.to(q_ptr.dtype.element_ty), mask=qm)


@triton.jit
def _resize_kernel(src_ptr, dst_ptr, y0_ptr, y1_ptr, ly_ptr, x0_ptr, x1_ptr, lx_ptr,
                   H, W, HQ, WQ, n_wblk, n_hblk,
                   BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, IDX64: tl.constexpr,
                   ACC: tl.constexpr):
    """dst[p, hq, wq] = bilinear sample of the contiguous plane src[p] (the same formula as the
    fused "first" path), one tile per program."""
    pid = tl.program_id(0)
    wblk = pid % n_wblk
    hblk = (pid // n_wblk) % n_hblk
    plane = pid // (n_wblk * n_hblk)
    hq = hblk * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    wq = wblk * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    mh = hq < HQ
    mw = wq < WQ
    m = mh & mw
    ya = tl.load(y0_ptr + hq, mask=mh, other=0)
    yb = tl.load(y1_ptr + hq, mask=mh, other=0)
    xa = tl.load(x0_ptr + wq, mask=mw, other=0)
    xb = tl.load(x1_ptr + wq, mask=mw, other=0)
    if IDX64:
        ya, yb, xa, xb = ya.to(tl.int64), yb.to(tl.int64), xa.to(tl.int64), xb.to(tl.int64)
    ly = tl.load(ly_ptr + hq, mask=mh, other=0.0).to(ACC)
    lx = tl.load(lx_ptr + wq, mask=mw, other=0.0).to(ACC)
    sb = src_ptr + plane.to(tl.int64) * H * W
    top = (tl.load(sb + (ya * W + xa), mask=m, other=0.0).to(ACC) * (1.0 - lx)
           + tl.load(sb + (ya * W + xb), mask=m, other=0.0).to(ACC) * lx)
    bot = (tl.load(sb + (yb * W + xa), mask=m, other=0.0).to(ACC) * (1.0 - lx)
           + tl.load(sb + (yb * W + xb), mask=m, other=0.0).to(ACC) * lx)
    out = dst_ptr + plane.to(tl.int64) * HQ * WQ + (hq * WQ + wq)
    tl.store(out, (top * (1.0 - ly) + bot * ly).to(dst_ptr.dtype.element_ty), mask=m)


# ---- host side ------------------------------------------------------------------------------------

def _linear_sources(n_in: int, n_out: int, scale: float, opmath: torch.dtype):
    """(i0, i1, lambda) of align_corners=False linear resampling by `scale`, as PyTorch computes
    them (area_pixel_compute_source_index and guard_index_and_lambda in opmath precision):
    src = max((dst + 0.5) * (1/scale) - 0.5, 0), i0 = min(floor(src), n_in - 1),
    lambda = clamp(src - i0, 0, 1), i1 = i0 + (i0 < n_in - 1)."""
    rscale = torch.tensor(1.0 / scale, dtype=opmath)
    src = ((torch.arange(n_out, dtype=opmath) + 0.5) * rscale - 0.5).clamp_min(0)
    i0 = src.floor().to(torch.int64).clamp_max(n_in - 1)
    lam = (src - i0.to(opmath)).clamp(0, 1)
    i1 = i0 + (i0 < n_in - 1).to(torch.int64)
    return i0, i1, lam


@functools.lru_cache(maxsize=64)
def _tables(H, W, HQ, WQ, scale, opmath, device, rows, block_w):
    """Device tables of the resize: source rows/columns and weights, and for the fused "first"
    path the first quiet row (column) owned by each row chunk (column strip); plus QBLOCK, the
    widest column range of a strip as a power of two."""
    y0, y1, ly = _linear_sources(H, HQ, scale, opmath)
    x0, x1, lx = _linear_sources(W, WQ, scale, opmath)
    qrow = torch.searchsorted(y0, torch.arange(0, triton.cdiv(H, rows) + 1) * rows)
    qcol = torch.searchsorted(x0, torch.arange(0, triton.cdiv(W, block_w) + 1) * block_w)
    qblock = max(16, triton.next_power_of_2(int((qcol[1:] - qcol[:-1]).max())))
    i32 = dict(dtype=torch.int32, device=device)
    f = dict(device=device)
    return (y0.to(**i32), y1.to(**i32), ly.to(**f), x0.to(**i32), x1.to(**i32), lx.to(**f),
            qrow.to(**i32), qcol.to(**i32), qblock)


def forward(clip, spatial_weight, temporal_weight, quiet="first", quiet_scale=None, *,
            block_w=None, rows=None):
    """(busy (N, C, S, H, W), quiet (N, C, S, h, w)), contiguous in the clip's dtype.

    clip (N, C, 3S, H, W) any strides; spatial_weight (C, k, k); temporal_weight (C, 3);
    quiet "first" or "mean_minus_busy"; quiet_scale None or a positive float.
    block_w / rows override the launch configuration (tests)."""
    if quiet not in ("first", "mean_minus_busy"):
        raise ValueError(f"quiet must be 'first' or 'mean_minus_busy', got {quiet!r}")
    N, C, T, H, W = clip.shape
    S = T // 3
    K = spatial_weight.shape[-1]
    if quiet_scale is None:
        HQ, WQ = H, W
    else:
        HQ, WQ = int(H * quiet_scale), int(W * quiet_scale)
    dev = clip.device
    busy = torch.empty((N, C, S, H, W), dtype=clip.dtype, device=dev)
    q_out = torch.empty((N, C, S, HQ, WQ), dtype=clip.dtype, device=dev)
    if busy.numel() == 0 or q_out.numel() == 0:
        return busy, q_out
    acc_tl, acc_torch = _acc_dtype(clip.dtype)
    mean = quiet == "mean_minus_busy"
    resize = quiet_scale is not None
    planes = N * C * S
    BW, nw, ROWS, n_wblk, n_hblk = row_config(planes, H, W, block_w, rows)
    if resize:
        tables = _tables(H, W, HQ, WQ, float(quiet_scale), acc_torch, dev, ROWS, BW)
        qblock = tables[-1]
        tables = tables[:-1]
    else:
        tables = (busy,) * 8  # unused pointers
        qblock = 16
    # full-resolution quiet goes to q_out, or to a float32 workspace that a second kernel resizes
    q_full = torch.empty((N, C, S, H, W), dtype=acc_torch, device=dev) if (resize and mean) else q_out
    y0, y1, ly, x0, x1, lx, qrow, qcol = tables
    _busy_quiet_kernel[(_grid(planes * n_wblk * n_hblk),)](
        clip, spatial_weight, temporal_weight, busy, q_full,
        qrow, qcol, y0, y1, ly, x0, x1, lx,
        C, T, H, W, S, HQ, WQ,
        *clip.stride(), *spatial_weight.stride(), *temporal_weight.stride(),
        ROWS, n_wblk, n_hblk,
        K=K, MEAN=mean, FULL_Q=(not resize) or mean, RESIZE_Q=resize and not mean, QBLOCK=qblock,
        BLOCK_W=BW, IDX64=needs_int64(clip, busy, q_out), ACC=acc_tl, num_warps=nw)
    if resize and mean:
        BH, BW2, nw2 = tile_config(HQ, WQ)
        nwb, nhb = triton.cdiv(WQ, BW2), triton.cdiv(HQ, BH)
        _resize_kernel[(_grid(planes * nwb * nhb),)](
            q_full, q_out, y0, y1, ly, x0, x1, lx, H, W, HQ, WQ, nwb, nhb,
            BLOCK_H=BH, BLOCK_W=BW2, IDX64=needs_int64(q_full, q_out), ACC=acc_tl, num_warps=nw2)
    return busy, q_out
