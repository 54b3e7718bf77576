"""Triton kernels of `vidops.temporal_relation` (operators.md §3.1).

f (N, C', T, h, w) -> u (N, T(T-1)/2, h, w),
    u[n, pair(t1, t2), i] = (1/C') sum_c f[n, c, t1, i] f[n, c, t2, i],  t1 < t2 ascending,
    pair(t1, t2) = t1 (2T - t1 - 1) / 2 + (t2 - t1 - 1).

Forward: a program owns BLOCK pixels of one sample and accumulates the T x T Gram matrix of every
pixel ([T_PAD, T_PAD, BLOCK]) over the channels, reading f once; it stores the strict upper
triangle. Backward: grad_f[c, t] = (1/C') sum_{t2 != t} grad_u[pair(t, t2)] f[c, t2]; the program
gathers grad_u into a symmetric [T_PAD, T_PAD, BLOCK] tile once and applies it to every channel.
Deterministic (no atomics).
"""
import torch
import triton
import triton.language as tl

from ._linalg import acc_dtype, block_size, device_fn, next_pow2

OP = "temporal_relation"


@device_fn
def _pair_index(t1, t2, T: tl.constexpr):
    """pair(min, max) of two index tensors (any order), and whether the pair is valid (t1 != t2 < T)."""
    a = tl.minimum(t1, t2)
    b = tl.maximum(t1, t2)
    idx = a * (2 * T - a - 1) // 2 + (b - a - 1)
    return idx, (a != b) & (b < T)


@triton.jit
def _relation_fwd_kernel(f_ptr, u_ptr, C, HW, W,
                         sfn, sfc, sft, sfh, sfw,
                         T: tl.constexpr, T_PAD: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pix = tile * BLOCK + tl.arange(0, BLOCK)
    pm = pix < HW
    tt = tl.arange(0, T_PAD)
    m2 = (tt < T)[:, None] & pm[None, :]
    hh = pix // W
    ww = pix - hh * W
    fp = f_ptr + n * sfn + (tt.to(tl.int64) * sft)[:, None] \
        + (hh.to(tl.int64) * sfh + ww.to(tl.int64) * sfw)[None, :]
    g = tl.full([T_PAD, T_PAD, BLOCK], 0.0, ACC)
    for _c in range(C):
        fv = tl.load(fp, mask=m2, other=0.0).to(ACC)
        g += fv[:, None, :] * fv[None, :, :]
        fp += sfc
    g = g / C
    t1 = tt[:, None, None]
    t2 = tt[None, :, None]
    idx = t1 * (2 * T - t1 - 1) // 2 + (t2 - t1 - 1)
    up = u_ptr + n * (T * (T - 1) // 2) * HW + idx.to(tl.int64) * HW + pix[None, None, :]
    mask = (t1 < t2) & (t2 < T) & pm[None, None, :]
    tl.store(up, g.to(u_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _relation_bwd_kernel(gu_ptr, f_ptr, gf_ptr, C, HW, W,
                         sgn, sgp, sgh, sgw, sfn, sfc, sft, sfh, sfw,
                         T: tl.constexpr, T_PAD: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pix = tile * BLOCK + tl.arange(0, BLOCK)
    pm = pix < HW
    tt = tl.arange(0, T_PAD)
    m2 = (tt < T)[:, None] & pm[None, :]
    hh = pix // W
    ww = pix - hh * W
    sp = (hh.to(tl.int64) * sgh + ww.to(tl.int64) * sgw)[None, None, :]
    idx, valid = _pair_index(tt[:, None, None], tt[None, :, None], T)
    gmask = valid & pm[None, None, :]
    gu = tl.load(gu_ptr + n * sgn + idx.to(tl.int64) * sgp + sp, mask=gmask, other=0.0).to(ACC) / C
    fp = f_ptr + n * sfn + (tt.to(tl.int64) * sft)[:, None] \
        + (hh.to(tl.int64) * sfh + ww.to(tl.int64) * sfw)[None, :]
    op = gf_ptr + n * C * T * HW + (tt.to(tl.int64) * HW)[:, None] + pix[None, :]
    for _c in range(C):
        fv = tl.load(fp, mask=m2, other=0.0).to(ACC)
        gf = tl.sum(gu * fv[None, :, :], axis=1)
        tl.store(op, gf.to(gf_ptr.dtype.element_ty), mask=m2)
        fp += sfc
        op += T * HW


def _check(f):
    if f.dim() != 5:
        raise ValueError(f"vidops.{OP} (triton): f must be (N, C', T, h, w), got shape {tuple(f.shape)}")


def _meta(f):
    T = f.shape[2]
    T_PAD = next_pow2(T)
    BLOCK = block_size(max(8, min(128, 4096 // (T_PAD * T_PAD))), f.shape[3] * f.shape[4], T_PAD * T_PAD)
    return dict(T=T, T_PAD=T_PAD, BLOCK=BLOCK, ACC=acc_dtype(f))


def forward(f):
    """u (N, T(T-1)/2, h, w) in f.dtype, contiguous."""
    _check(f)
    N, C, T, H, W = f.shape
    P = T * (T - 1) // 2
    HW = H * W
    if C == 0:
        return torch.full((N, P, H, W), float("nan"), dtype=f.dtype, device=f.device)
    u = torch.empty((N, P, H, W), dtype=f.dtype, device=f.device)
    if u.numel() == 0:
        return u
    meta = _meta(f)
    _relation_fwd_kernel[(triton.cdiv(HW, meta["BLOCK"]), N)](f, u, C, HW, W, *f.stride(), **meta)
    return u


def backward(grad_u, f):
    """grad_f (N, C', T, h, w) in f.dtype, contiguous."""
    _check(f)
    N, C, T, H, W = f.shape
    P = T * (T - 1) // 2
    if tuple(grad_u.shape) != (N, P, H, W):
        raise ValueError(f"vidops.{OP} (triton): grad_u must be {(N, P, H, W)}, got {tuple(grad_u.shape)}")
    gf = torch.empty((N, C, T, H, W), dtype=f.dtype, device=f.device)
    if gf.numel() == 0:
        return gf
    if P == 0:
        return gf.zero_()
    HW = H * W
    meta = _meta(f)
    _relation_bwd_kernel[(triton.cdiv(HW, meta["BLOCK"]), N)](grad_u, f, gf, C, HW, W,
                                                               *grad_u.stride(), *f.stride(), **meta)
    return gf
