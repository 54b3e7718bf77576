"""Triton kernels of `vidops.motion_band_pass` (operators.md §1.1): `forward` and `backward` launchers.

Math, per channel c (s the temporal stride, p the temporal padding, r = (k-1)/2, src_t the
temporal source: identity inside [0, T), clamped for "replicate", a zero frame for "zeros"):

    Y[n,c,t]     = sum_{j<3} tw[c,j] * x[n,c, src_t(s*t + j - p)]        temporal filter first
    out[n,c,t]   = K_c (x) pad_s(Y[n,c,t]):
    out[.., o, w] = sum_{a,b<k} sw[c,a,b] * Y[.., src_s(o+a-r), src_s(w+b-r)]

src_s mirrors without repeating the edge ("reflect", PyTorch's) or reads zero ("zeros"). The two
filters commute (linear, padding per frame), so filtering in time first runs the k x k stencil on
T_out frames only: 3x less arithmetic at the stem's stride 3.

Backward (g = d loss / d out; Y is recomputed from x, never stored):

    Gp[p,q]     = sum_{a,b} sw[c,a,b] * g0[p+r-a, q+r-b]    the transposed stencil, on the padded
                  domain p, q in [-r, H+r) x [-r, W+r) (g0 = g zero-extended); with zeros padding
                  only [0, H) x [0, W) is needed
    gY[h,w]     = sum of Gp over the padded positions whose source is (h, w): for reflect up to 3
                  per axis ({h, -h, 2(H-1)-h} where they exist), so up to 9 terms near a corner
    g_sw[c,a,b] = sum_{n,t,o,w} g[o,w] * pad_s(Y)[o+a, w+b]
    g_tw[c,j]   = sum_{n,t,h,w} gY[t] * x[src_t(s*t + j - p)]
    g_x[f]      = sum over (t, j) with src_t(s*t + j - p) = f of tw[c,j] * gY[t]

Design: the k x k stencil streams rows. A program owns one (n, c, t) plane, a strip of BLOCK_W
columns and a chunk of ROWS output rows; it walks the ROWS + k - 1 input rows top to bottom, loads
each row once per tap column b (3 frames combined in time on load: 3k loads per row), and adds
the row into the k output rows it touches, held in registers as a k-tuple of accumulators. The
oldest accumulator is complete after each row: it is stored and the tuple shifts. So every output
costs k^2 + 3k FMAs and about 3k cached loads (a tile-shifted-load stencil would need 3k^2 loads).
Padding is index math on the loads: reflect mirrors the row (a scalar) and each tap column's
indices (k vectors computed once per program); zeros masks them. x is read through its element
strides (channels_last_3d and slices give identical results); accumulation is float32 (float64
for float64 x), weights are read as float32/float64, the output is stored in x's dtype.

The backward runs three kernels and two tiny torch reductions, all deterministic (no atomics):
  1. `_mbp_fwd_kernel` again, on g with the flipped kernel and zero padding, over the padded
     domain: writes Gp into a float32 workspace (float64 for float64 x).
  2. `_mbp_bwd_sw_kernel`: streams the rows of Y like the forward and keeps the last k rows of g
     in registers: per-program partial sums of g_sw (k^2 per program) into a workspace.
  3. `_mbp_bwd_x_kernel`: one program per tile of an input frame f gathers gY (the fold of Gp,
     mirrored loads only in tiles near the border) from the <= 3 output frames that read f
     (<= 6 next to a replicated edge), writes g_x and per-program partial sums of g_tw.

Numerics: half-precision x and output gradients are read exactly and everything is accumulated in
float32 with float32 weights, so the only half-precision rounding is the final store (an fp16
output overflows above 65504: the stem's normalised LoG has an L1 norm near 1600, operators.md §1.4).

Cost on the GPU (sm_90 SASS of the forward's row loop, k = 9, float32): 99 FFMA + 9 FMUL, 27 LDG
(L1 hits but for the first touch) and ~110 integer/address instructions per row per thread, 165
registers, no spills (k = 11: 255 registers). See row_config for the launch parameters.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._band_pass_stencil import column_taps as _column_taps
from ._band_pass_stencil import plane_frames as _plane_frames
from ._band_pass_stencil import plane_of as _plane_of
from ._band_pass_stencil import row_config, tile_config  # noqa: F401  (tile_config: busy_quiet's resize)
from ._band_pass_stencil import spatial_weights as _spatial_weights
from ._common import acc_types as _acc_dtype
from ._common import grid as _grid
from ._common import needs_int64

SPATIAL_PADDINGS = ("reflect", "zeros")
TEMPORAL_PADDINGS = ("valid", "replicate", "zeros")


# ---- kernels ------------------------------------------------------------------------------------

@triton.jit
def _mbp_fwd_kernel(x_ptr, sw_ptr, tw_ptr, out_ptr,
                    C, T, H, W, T_out, OUT_H, OUT_W, OFF,
                    sxn, sxc, sxt, sxh, sxw, ssc, ssa, ssb, stc, stj, son, soc, sot, soh,
                    stride, pad_t, ROWS, n_wblk, n_hblk,
                    K: tl.constexpr, NF: tl.constexpr, REFLECT: tl.constexpr, TZERO: tl.constexpr,
                    BLOCK_W: tl.constexpr, IDX64: tl.constexpr, ACC: tl.constexpr):
    """out[o, w] (o < OUT_H, w < OUT_W) = sum_{a,b} sw[a,b] * Y[src(o-OFF+a-r), src(w-OFF+b-r)].

    Forward: OFF=0, Y the temporal filter of 3 frames of x. Backward step 1: x is the output
    gradient (NF=1), sw the flipped kernel, zero padding, OFF=r (the padded domain)."""
    R: tl.constexpr = (K - 1) // 2
    ZPAD: tl.constexpr = not REFLECT
    pid = tl.program_id(0)
    wblk, hblk, plane, t, nc, c, n = _plane_of(pid, n_wblk, n_hblk, T_out, C)
    cols = wblk * BLOCK_W + tl.arange(0, BLOCK_W)
    p0, p1, p2, tw0, tw1, tw2, ok0, ok1, ok2 = _plane_frames(
        x_ptr, tw_ptr, n, c, t, T, sxn, sxc, sxt, stc, stj, stride, pad_t, cols, NF, ACC)
    wts = _spatial_weights(sw_ptr + c.to(tl.int64) * ssc, ssa, ssb, K, BLOCK_W, ACC)
    offs, inside = _column_taps(cols - OFF - R, W, sxw, K, REFLECT, IDX64)

    o0 = hblk.to(tl.int64) * ROWS  # row scalars in int64 (no int32 overflow checks in the interpreter)
    nrows = tl.minimum(ROWS, OUT_H - o0)
    col_ok = cols < OUT_W
    out_row = out_ptr + (n.to(tl.int64) * son + c.to(tl.int64) * soc + t.to(tl.int64) * sot) + cols
    i_vec = cols.to(tl.int64) * 0  # scalar conditions enter masks as vectors
    zero = tl.zeros([BLOCK_W], ACC)
    accs = (zero,) * K  # accs[m]: output row o0 + i - (K-1) + m, which reads row i through a = K-1-m
    for i in range(nrows + K - 1):
        # source row of padded row h (a scalar): mirrored (reflect) or masked (zeros)
        h = o0 - OFF - R + i
        if REFLECT:
            h = tl.where(h < 0, -h, h)
            h = tl.where(h >= H, 2 * H - 2 - h, h)
        row = tl.minimum(tl.maximum(h, 0), H - 1).to(tl.int64) * sxh
        if ZPAD:
            hv = i_vec + h
            row_ok = (hv >= 0) & (hv < H)
        q0, q1, q2 = p0 + row, p1 + row, p2 + row
        # the row at the K tap-column shifts, filtered in time: ys[b] = Y[row, cols - OFF - R + b]
        ys = ()
        for b in tl.static_range(K):
            if ZPAD:
                m = inside[b] & row_ok
                if TZERO:
                    m0, m1, m2 = m & ok0, m & ok1, m & ok2
                else:
                    m0, m1, m2 = m, m, m
            else:
                m0, m1, m2 = ok0, ok1, ok2
            if ZPAD or TZERO:
                v = tl.load(q0 + offs[b], mask=m0, other=0.0).to(ACC)
                if NF == 3:
                    v = v * tw0
                    v = tl.fma(tl.load(q1 + offs[b], mask=m1, other=0.0).to(ACC), tw1, v)
                    v = tl.fma(tl.load(q2 + offs[b], mask=m2, other=0.0).to(ACC), tw2, v)
            else:
                v = tl.load(q0 + offs[b]).to(ACC)
                if NF == 3:
                    v = v * tw0
                    v = tl.fma(tl.load(q1 + offs[b]).to(ACC), tw1, v)
                    v = tl.fma(tl.load(q2 + offs[b]).to(ACC), tw2, v)
            ys = ys + (v,)
        # add the row into the K output rows it touches
        new = ()
        for m in tl.static_range(K):
            acc = accs[m]
            for b in tl.static_range(K):
                acc = tl.fma(wts[K - 1 - m][b], ys[b], acc)
            new = new + (acc,)
        # new[0] is complete: output row o = o0 + i - (K-1) (none before the halo is read)
        o = o0 + i - (K - 1)
        tl.store(out_row + tl.maximum(o, 0).to(tl.int64) * soh, new[0].to(out_ptr.dtype.element_ty),
                 mask=col_ok & (i_vec + i >= K - 1))
        accs = new[1:] + (zero,)


@triton.jit
def _mbp_bwd_sw_kernel(x_ptr, tw_ptr, g_ptr, ws_ptr,
                       C, T, H, W, T_out,
                       sxn, sxc, sxt, sxh, sxw, stc, stj, sgn, sgc, sgt, sgh, sgw,
                       stride, pad_t, ROWS, n_wblk, n_hblk,
                       K: tl.constexpr, REFLECT: tl.constexpr, TZERO: tl.constexpr,
                       BLOCK_W: tl.constexpr, IDX64: tl.constexpr, ACC: tl.constexpr):
    """ws[pid, a*K+b] = sum over this program's rows o and columns w of g[o,w] * pad_s(Y)[o+a, w+b].

    Streams the rows of Y as the forward does; the last K rows of g wait in a ring, and input row
    i meets gradient row o = i - a through tap row a."""
    R: tl.constexpr = (K - 1) // 2
    ZPAD: tl.constexpr = not REFLECT
    pid = tl.program_id(0)
    wblk, hblk, plane, t, nc, c, n = _plane_of(pid, n_wblk, n_hblk, T_out, C)
    cols = wblk * BLOCK_W + tl.arange(0, BLOCK_W)
    p0, p1, p2, tw0, tw1, tw2, ok0, ok1, ok2 = _plane_frames(
        x_ptr, tw_ptr, n, c, t, T, sxn, sxc, sxt, stc, stj, stride, pad_t, cols, 3, ACC)
    offs, inside = _column_taps(cols - R, W, sxw, K, REFLECT, IDX64)

    o0 = hblk.to(tl.int64) * ROWS  # row scalars in int64 (no int32 overflow checks in the interpreter)
    nrows = tl.minimum(ROWS, H - o0)
    col_ok = cols < W
    gcols = cols
    if IDX64:
        gcols = gcols.to(tl.int64)
    g_row = g_ptr + (n.to(tl.int64) * sgn + c.to(tl.int64) * sgc + t.to(tl.int64) * sgt) + gcols * sgw
    i_vec = cols.to(tl.int64) * 0
    zero = tl.zeros([BLOCK_W], ACC)
    parts = ((zero,) * K,) * K  # parts[a][b]
    ring = (zero,) * K  # ring[m]: gradient row o0 + i - (K-1) + m (zero outside the chunk)
    for i in range(nrows + K - 1):
        h = o0 - R + i
        if REFLECT:
            h = tl.where(h < 0, -h, h)
            h = tl.where(h >= H, 2 * H - 2 - h, h)
        row = tl.minimum(tl.maximum(h, 0), H - 1).to(tl.int64) * sxh
        if ZPAD:
            hv = i_vec + h
            row_ok = (hv >= 0) & (hv < H)
        q0, q1, q2 = p0 + row, p1 + row, p2 + row
        ys = ()  # as in _mbp_fwd_kernel (NF=3)
        for b in tl.static_range(K):
            if ZPAD:
                m = inside[b] & row_ok
                if TZERO:
                    m0, m1, m2 = m & ok0, m & ok1, m & ok2
                else:
                    m0, m1, m2 = m, m, m
            else:
                m0, m1, m2 = ok0, ok1, ok2
            if ZPAD or TZERO:
                v = tl.load(q0 + offs[b], mask=m0, other=0.0).to(ACC) * tw0
                v = tl.fma(tl.load(q1 + offs[b], mask=m1, other=0.0).to(ACC), tw1, v)
                v = tl.fma(tl.load(q2 + offs[b], mask=m2, other=0.0).to(ACC), tw2, v)
            else:
                v = tl.load(q0 + offs[b]).to(ACC) * tw0
                v = tl.fma(tl.load(q1 + offs[b]).to(ACC), tw1, v)
                v = tl.fma(tl.load(q2 + offs[b]).to(ACC), tw2, v)
            ys = ys + (v,)
        o = tl.minimum(o0 + i, H - 1)
        g = tl.load(g_row + o.to(tl.int64) * sgh, mask=col_ok & (i_vec + i < nrows), other=0.0).to(ACC)
        ring = ring[1:] + (g,)
        new = ()
        for a in tl.static_range(K):
            new_a = ()
            for b in tl.static_range(K):
                new_a = new_a + (tl.fma(ring[K - 1 - a], ys[b], parts[a][b]),)
            new = new + (new_a,)
        parts = new
    wsb = ws_ptr + pid.to(tl.int64) * (K * K)
    for a in tl.static_range(K):
        for b in tl.static_range(K):
            tl.store(wsb + a * K + b, tl.sum(parts[a][b], axis=0))


@triton.jit
def _mirror_lines(idx, n, R: tl.constexpr, STRIDE):
    """Along one axis of a Gp plane (stored with an offset of R): offsets STRIDE * (p + R) of the
    three padded positions p in {idx, -idx, 2(n-1)-idx} whose reflect source is idx, and where each
    exists (-idx for 1 <= idx <= R, 2(n-1)-idx for n-1-R <= idx <= n-2)."""
    offs = ((idx + R) * STRIDE, (R - idx) * STRIDE, (2 * (n - 1) + R - idx) * STRIDE)
    oks = (idx >= 0, (idx >= 1) & (idx <= R), (idx >= n - 1 - R) & (idx <= n - 2))
    return offs, oks


@triton.jit
def _mbp_bwd_x_kernel(gp_ptr, x_ptr, tw_ptr, gx_ptr, ws_ptr,
                      C, T, H, W, T_out, HP, WP,
                      sxn, sxc, sxt, sxh, sxw, stc, stj,
                      stride, pad_t, n_wblk, n_hblk,
                      R: tl.constexpr, REFLECT: tl.constexpr, NQ: tl.constexpr,
                      BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, IDX64: tl.constexpr,
                      ACC: tl.constexpr):
    """On one tile of input frame f: g_x = sum_{(t,j) reading f} tw[c,j] * gY[t] (gY the fold of
    Gp), and the tile's partial sums ws[pid, j] = sum gY[t(j)] * x[f] of g_tw.

    Frame f is padded frame q = f, and with "replicate" (NQ=3) also q = -1 when f = 0 and q = T
    when f = T-1. Output frame t reads padded frame q through tap j when s*t + j - p = q."""
    pid = tl.program_id(0)
    wblk, hblk, plane, f, nc, c, n = _plane_of(pid, n_wblk, n_hblk, T, C)
    h0 = hblk * BLOCK_H
    w0 = wblk * BLOCK_W
    hh = h0 + tl.arange(0, BLOCK_H)[:, None]
    ww = w0 + tl.arange(0, BLOCK_W)[None, :]
    if IDX64:
        hh = hh.to(tl.int64)
        ww = ww.to(tl.int64)
    m = (hh < H) & (ww < W)
    xb = x_ptr + (n.to(tl.int64) * sxn + c.to(tl.int64) * sxc + f.to(tl.int64) * sxt)
    xv = tl.load(xb + (hh * sxh + ww * sxw), mask=m, other=0.0).to(ACC)
    gp_nc = gp_ptr + nc.to(tl.int64) * T_out * HP * WP
    tw_c = tw_ptr + c.to(tl.int64) * stc
    # reflect: a pixel within R of an edge also receives the mirrored padded positions (up to 3
    # per axis); only tiles near an edge hold any
    rofs, roks = _mirror_lines(hh, H, R, WP)
    cofs, coks = _mirror_lines(ww, W, R, 1)
    near = (h0 <= R) | (h0 + BLOCK_H > H - 2 - R) | (w0 <= R) | (w0 + BLOCK_W > W - 2 - R)

    zero = tl.zeros([BLOCK_H, BLOCK_W], ACC)
    gx, gt0, gt1, gt2 = zero, zero, zero, zero
    for qi in tl.static_range(NQ):
        if qi == 0:
            q = f
            q_ok = f >= 0
        elif qi == 1:
            q = f * 0 - 1
            q_ok = f == 0
        else:
            q = f * 0 + T
            q_ok = f == T - 1
        for j in tl.static_range(3):
            num = q + pad_t - j
            num_c = tl.maximum(num, 0)  # // and % on non-negative numbers only (C vs Python rounding)
            tt = num_c // stride
            if q_ok & (num >= 0) & (num_c % stride == 0) & (tt < T_out):
                gpt = gp_nc + tt.to(tl.int64) * HP * WP
                g = tl.load(gpt + (rofs[0] + cofs[0]), mask=m, other=0.0).to(ACC)
                if REFLECT:
                    if near:
                        for u in tl.static_range(3):
                            for v in tl.static_range(3):
                                if u * 3 + v > 0:
                                    g += tl.load(gpt + (rofs[u] + cofs[v]), mask=m & roks[u] & coks[v],
                                                 other=0.0).to(ACC)
                gx = tl.fma(g, tl.load(tw_c + j * stj).to(ACC), gx)
                if j == 0:
                    gt0 = tl.fma(g, xv, gt0)
                elif j == 1:
                    gt1 = tl.fma(g, xv, gt1)
                else:
                    gt2 = tl.fma(g, xv, gt2)
    out = gx_ptr + plane.to(tl.int64) * H * W + (hh * W + ww)
    tl.store(out, gx.to(gx_ptr.dtype.element_ty), mask=m)
    wsb = ws_ptr + pid.to(tl.int64) * 3
    tl.store(wsb, tl.sum(tl.sum(gt0, axis=1), axis=0))
    tl.store(wsb + 1, tl.sum(tl.sum(gt1, axis=1), axis=0))
    tl.store(wsb + 2, tl.sum(tl.sum(gt2, axis=1), axis=0))


def _temporal_pad(temporal_padding: str) -> int:
    return 0 if temporal_padding == "valid" else 1


def _check_modes(spatial_padding, temporal_padding):
    if spatial_padding not in SPATIAL_PADDINGS:
        raise ValueError(f"spatial_padding must be one of {SPATIAL_PADDINGS}, got {spatial_padding!r}")
    if temporal_padding not in TEMPORAL_PADDINGS:
        raise ValueError(f"temporal_padding must be one of {TEMPORAL_PADDINGS}, got {temporal_padding!r}")


def _stencil(src, sw, tw, out, T_src, T_out, stride, pad_t, off, nf, reflect, tzero, block_w, rows):
    """Launch _mbp_fwd_kernel: out (N, C, T_out, OUT_H, OUT_W), W-contiguous."""
    N, C = src.shape[:2]
    H, W = src.shape[3:]
    OUT_H, OUT_W = out.shape[3:]
    K = sw.shape[-1]
    planes = N * C * T_out
    BW, nw, ROWS, n_wblk, n_hblk = row_config(planes, OUT_H, OUT_W, block_w, rows)
    _mbp_fwd_kernel[(_grid(planes * n_wblk * n_hblk),)](
        src, sw, tw, out, C, T_src, H, W, T_out, OUT_H, OUT_W, off,
        *src.stride(), *sw.stride(), *tw.stride(), *out.stride()[:4],
        stride, pad_t, ROWS, n_wblk, n_hblk,
        K=K, NF=nf, REFLECT=reflect, TZERO=tzero, BLOCK_W=BW, IDX64=needs_int64(src, out),
        ACC=_acc_dtype(src.dtype)[0], num_warps=nw)


# ---- launchers ------------------------------------------------------------------------------------

def forward(x, spatial_weight, temporal_weight, temporal_stride, spatial_padding, temporal_padding,
            *, block_w=None, rows=None):
    """out (N, C, T_out, H, W), contiguous in x's dtype; T_out = (T + 2p - 3) // s + 1.

    x (N, C, T, H, W) any strides; spatial_weight (C, k, k) odd k; temporal_weight (C, 3).
    block_w / rows override the launch configuration (tests)."""
    _check_modes(spatial_padding, temporal_padding)
    N, C, T, H, W = x.shape
    pad_t = _temporal_pad(temporal_padding)
    T_out = (T + 2 * pad_t - 3) // temporal_stride + 1
    out = torch.empty((N, C, max(T_out, 0), H, W), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    reflect = spatial_padding == "reflect"
    tzero = temporal_padding == "zeros"
    _stencil(x, spatial_weight, temporal_weight, out, T, T_out, temporal_stride, pad_t, 0, 3,
             reflect, tzero, block_w, rows)
    return out


def backward(grad, x, spatial_weight, temporal_weight, temporal_stride, spatial_padding,
             temporal_padding, *, block_w=None, rows=None, block_hw=None):
    """(grad_x, grad_spatial_weight, grad_temporal_weight) of `forward` for the output gradient
    `grad` (N, C, T_out, H, W). grad_x is contiguous in x's dtype, the weight gradients have the
    weights' shapes and dtypes. Deterministic."""
    _check_modes(spatial_padding, temporal_padding)
    N, C, T, H, W = x.shape
    K = spatial_weight.shape[-1]
    R = (K - 1) // 2
    pad_t = _temporal_pad(temporal_padding)
    T_out = grad.shape[2]
    acc_tl, acc_torch = _acc_dtype(x.dtype)
    gx = torch.empty((N, C, T, H, W), dtype=x.dtype, device=x.device)
    if gx.numel() == 0 or grad.numel() == 0:
        return (gx.zero_(), torch.zeros_like(spatial_weight, memory_format=torch.contiguous_format),
                torch.zeros_like(temporal_weight, memory_format=torch.contiguous_format))
    reflect = spatial_padding == "reflect"
    tzero = temporal_padding == "zeros"
    dev = x.device

    # 1. Gp: the transposed stencil of grad (correlation with the flipped kernel, zero-extended
    #    grad), on the padded domain when reflecting so that step 3 can fold the mirrored borders.
    off = R if reflect else 0
    HP, WP = H + 2 * off, W + 2 * off
    gp = torch.empty((N, C, T_out, HP, WP), dtype=acc_torch, device=dev)
    sw_flip = spatial_weight.flip((-2, -1))
    _stencil(grad, sw_flip, temporal_weight, gp, T_out, T_out, 1, 0, off, 1, False, False, block_w, rows)

    # 2. g_sw partial sums over (plane, row chunk, column strip), then a deterministic sum.
    planes = N * C * T_out
    BW, nw, ROWS, n_wblk, n_hblk = row_config(planes, H, W, block_w, rows)
    n_prog = planes * n_wblk * n_hblk
    ws_sw = torch.empty((n_prog, K * K), dtype=acc_torch, device=dev)
    _mbp_bwd_sw_kernel[(_grid(n_prog),)](
        x, temporal_weight, grad, ws_sw, C, T, H, W, T_out,
        *x.stride(), *temporal_weight.stride(), *grad.stride(),
        temporal_stride, pad_t, ROWS, n_wblk, n_hblk,
        K=K, REFLECT=reflect, TZERO=tzero, BLOCK_W=BW, IDX64=needs_int64(x, grad), ACC=acc_tl,
        num_warps=nw)
    g_sw = ws_sw.view(N, C, -1, K * K).sum((0, 2)).view(C, K, K)

    # 3. g_x per input frame (gathering the output frames that read it) and g_tw partial sums.
    BH, BW2, nw2 = tile_config(H, W, block_hw)
    n_wblk2, n_hblk2 = triton.cdiv(W, BW2), triton.cdiv(H, BH)
    n_prog2 = N * C * T * n_wblk2 * n_hblk2
    ws_tw = torch.empty((n_prog2, 3), dtype=acc_torch, device=dev)
    _mbp_bwd_x_kernel[(_grid(n_prog2),)](
        gp, x, temporal_weight, gx, ws_tw, C, T, H, W, T_out, HP, WP,
        *x.stride(), *temporal_weight.stride(), temporal_stride, pad_t, n_wblk2, n_hblk2,
        R=R if reflect else 0, REFLECT=reflect, NQ=3 if temporal_padding == "replicate" else 1,
        BLOCK_H=BH, BLOCK_W=BW2, IDX64=needs_int64(x, gp, gx), ACC=acc_tl, num_warps=nw2)
    g_tw = ws_tw.view(N, C, -1, 3).sum((0, 2))
    return gx, g_sw.to(spatial_weight.dtype), g_tw.to(temporal_weight.dtype)
