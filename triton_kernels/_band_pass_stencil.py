"""The band-pass stencil's device functions and launch sizes, shared by the motion band-pass
kernels (motion_band_pass.py) and the busy-quiet split (busy_quiet.py), which runs the same
stencil as the stem.

Interpreter constraints the code is written around (triton 3.9):
- device functions are called once per program, never inside the row loops: under the
  interpreter every device-function call re-patches triton.language (milliseconds);
- scalar conditions enter masks as vectors (`vec * 0 + scalar` compared): the interpreter splats
  a scalar boolean into an int32 mask, which loads and stores reject;
- row scalars are int64: the interpreter checks every int32 add/mul for overflow, slowly.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ._common import TARGET_PROGRAMS, interpreter


@triton.jit
def column_taps(cols, W, sxw, K: tl.constexpr, REFLECT: tl.constexpr, IDX64: tl.constexpr):
    """For each tap column b < K: element offsets of the source of padded column cols + b
    (mirrored without repeating the edge for REFLECT, valid for an overhang < W; then clamped so
    that masked-off and tail lanes stay inside the tensor), int32 unless IDX64; and whether
    cols + b lies inside [0, W) (zero padding reads zero elsewhere)."""
    offs = ()
    inside = ()
    for b in tl.static_range(K):
        cb = cols + b
        src = cb
        if REFLECT:
            src = tl.where(src < 0, -src, src)
            src = tl.where(src >= W, 2 * W - 2 - src, src)
        src = tl.minimum(tl.maximum(src, 0), W - 1)
        if IDX64:
            src = src.to(tl.int64)
        offs = offs + (src * sxw,)
        inside = inside + ((cb >= 0) & (cb < W),)
    return offs, inside


@triton.jit
def spatial_weights(swb, ssa, ssb, K: tl.constexpr, BLOCK_W: tl.constexpr, ACC: tl.constexpr):
    """The K x K taps of one channel kept in registers, wts[a][b], broadcast to [BLOCK_W] (free on
    the GPU, one value per thread; it spares the interpreter a splat per FMA). Nested tuples: a
    flat K*K tuple built by appends costs O(K^4) type bookkeeping under the interpreter."""
    wts = ()
    for a in tl.static_range(K):
        row = ()
        for b in tl.static_range(K):
            row = row + (tl.broadcast_to(tl.load(swb + a * ssa + b * ssb).to(ACC), [BLOCK_W]),)
        wts = wts + (row,)
    return wts


@triton.jit
def plane_frames(x_ptr, tw_ptr, n, c, t, T, sxn, sxc, sxt, stc, stj, stride, pad_t, cols,
                  NF: tl.constexpr, ACC: tl.constexpr):
    """Pointers to the frames output frame t reads (NF=3: frames s*t + j - p, clamped, which is
    "replicate"), their temporal weights (broadcast like cols), and masks like cols that are False
    on a frame outside the clip (read as zero with temporal_padding="zeros"). NF=1: frame t
    itself, weight 1."""
    xb = x_ptr + (n.to(tl.int64) * sxn + c.to(tl.int64) * sxc)
    if NF == 3:
        f = t * stride - pad_t
        p0 = xb + tl.minimum(tl.maximum(f, 0), T - 1).to(tl.int64) * sxt
        p1 = xb + tl.minimum(tl.maximum(f + 1, 0), T - 1).to(tl.int64) * sxt
        p2 = xb + tl.minimum(tl.maximum(f + 2, 0), T - 1).to(tl.int64) * sxt
        fv = cols * 0 + f  # frame validity, as vectors
        ok0 = (fv >= 0) & (fv < T)
        ok1 = (fv >= -1) & (fv < T - 1)
        ok2 = (fv >= -2) & (fv < T - 2)
        twb = tw_ptr + c.to(tl.int64) * stc
        tw0 = tl.broadcast_to(tl.load(twb).to(ACC), cols.shape)
        tw1 = tl.broadcast_to(tl.load(twb + stj).to(ACC), cols.shape)
        tw2 = tl.broadcast_to(tl.load(twb + 2 * stj).to(ACC), cols.shape)
    else:
        p0 = xb + t.to(tl.int64) * sxt
        p1, p2 = p0, p0
        ok0 = cols >= -(1 << 30)
        ok1, ok2 = ok0, ok0
        tw0 = tl.full(cols.shape, 1.0, ACC)
        tw1, tw2 = tw0, tw0
    return p0, p1, p2, tw0, tw1, tw2, ok0, ok1, ok2


@triton.jit
def plane_of(pid, n_wblk, n_hblk, T_planes, C):
    """Program id -> (column strip, row chunk, plane, t, n*C + c, c, n); strips vary fastest so
    that neighbouring programs share their halos in L2."""
    wblk = pid % n_wblk
    hblk = (pid // n_wblk) % n_hblk
    plane = pid // (n_wblk * n_hblk)
    t = plane % T_planes
    nc = plane // T_planes
    return wblk, hblk, plane, t, nc, nc % C, nc // C


def row_config(planes: int, out_h: int, out_w: int, block_w=None, rows=None):
    """(BLOCK_W, num_warps, ROWS, n_wblk, n_hblk) of the row-streaming kernels.

    One column per thread (BLOCK_W = 32 * num_warps, up to 128) keeps the k accumulators, the k
    tap-column offsets and the k^2 weights in registers. ROWS trades the k-1 halo rows each chunk
    re-reads against parallelism: 64, halved (down to 16, where the halo of k = 9 is already half
    the rows) while that leaves fewer than TARGET_PROGRAMS programs.
    Under the interpreter, whose cost is per operation rather than per element, one program per
    plane of up to 64 columns (tests pass block_w / rows to exercise the tiling)."""
    if block_w is None:
        cap = 64 if interpreter() else 128
        block_w = max(16, min(cap, triton.next_power_of_2(out_w)))
    num_warps = max(1, min(4, block_w // 32))
    n_wblk = triton.cdiv(out_w, block_w)
    if rows is None:
        if interpreter():
            rows = out_h
        else:
            rows = 64
            while rows > 16 and planes * n_wblk * triton.cdiv(out_h, rows) < TARGET_PROGRAMS:
                rows //= 2
    rows = max(1, min(rows, out_h))
    return block_w, num_warps, rows, n_wblk, triton.cdiv(out_h, rows)


def tile_config(H: int, W: int, block_hw=None):
    """(BLOCK_H, BLOCK_W, num_warps) of the element-wise tile kernels."""
    if block_hw is not None:
        return block_hw[0], block_hw[1], 4
    if interpreter():
        return min(32, triton.next_power_of_2(H)), min(64, triton.next_power_of_2(W)), 1
    return 16, 64, 4
