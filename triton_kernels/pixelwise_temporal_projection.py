"""Triton kernels of `vidops.pixelwise_temporal_projection`.

x (N, C, T, H, W), basis (N, T*D, h, w) bilinearly upsampled to (H, W) inside the kernel
(F.interpolate(size=(H, W), mode="bilinear", align_corners=False); never materialised). Per pixel
A (T, D) with A[t, d] = up(basis)[t*D + d], G = A^T A + lam I, lam = e trace(A^T A)/D (e for A = 0),
e = max(eps, 8 u) (see _linalg), and per channel y = G^{-1} A^T x_c, p = x_c - A y. Outputs
pbar = mean_t p (N, C, H, W) and ENoPR[n] = sum_{i,c} ||p||^2 / (H W C) (N,).

Forward, one pass over x: a program owns BLOCK pixels of one sample, builds A (D columns of
[BLOCK, T_PAD]) from the 4 bilinear neighbours, scales it per pixel by the power of two that
puts max |A| in [0.5, 1) (pow2_scale: the result does not depend on the basis's scale, and the
backward's grad_A is s times the scaled one), A^T A, factors G once (LDL^T, D <= 4 unrolled,
pivots floored at lam), then reads x[n, c, :, pixels] once per channel, solves y = G^{-1} A^T x_c
by substitution, forms p = x_c - A y explicitly (no x^T x - b^T y cancellation), writes
pbar = mean_t p and accumulates ||p||^2.
ENoPR: one partial sum per program, summed per sample by torch afterwards (deterministic).

Backward (per pixel, v_c = grad_pbar_c / T * 1 + 2 alpha p_c, alpha = grad_enopr / (H W C),
q_c = G^{-1} A^T v_c):
    grad_x_c = v_c - A q_c
    grad_A   = -sum_c (grad_x_c y_c^T + p_c q_c^T) + (2 e / D) (sum_c q_c . y_c) A
(the last term is the derivative of the trace regulariser). grad_A goes back through the
bilinear upsampling by atomic adds into a float32/float64 buffer of the low-resolution basis:
on a GPU the order of those adds, hence the last bits of grad_basis, is not deterministic.
"""
import torch
import triton
import triton.language as tl

from ._common import acc_dtype as acc_torch
from ._linalg import (acc_dtype, block_size, device_fn, effective_eps, join, ldl_factor, ldl_solve, next_pow2,
                      pow2_scale, regulariser, split_f64)

OP = "pixelwise_temporal_projection"
MAX_D = 4


@device_fn
def _source_index(dst, in_size, scale, ACC: tl.constexpr):
    """PyTorch's bilinear source index (align_corners=False, scale = in/out): i0, i1, weights."""
    src = (dst.to(ACC) + 0.5) * scale - 0.5
    src = tl.maximum(src, 0.0)
    i0 = tl.minimum(src.to(tl.int32), in_size - 1)
    i1 = tl.where(i0 < in_size - 1, i0 + 1, i0)
    lam1 = src - i0.to(ACC)
    lam0 = 1.0 - lam1
    return i0, i1, lam0, lam1


@device_fn
def _neighbours(pix, W, h_in, w_in, sh_hi, sh_lo, sw_hi, sw_lo, sbh, sbw, ACC: tl.constexpr):
    """Offsets ([BLOCK, 1], int64) of the 4 low-resolution neighbours of each pixel, and weights."""
    hh = pix // W
    ww = pix - hh * W
    y0, y1, ly0, ly1 = _source_index(hh, h_in, join(sh_hi, sh_lo, ACC), ACC)
    x0, x1, lx0, lx1 = _source_index(ww, w_in, join(sw_hi, sw_lo, ACC), ACC)
    r0 = y0.to(tl.int64) * sbh
    r1 = y1.to(tl.int64) * sbh
    q0 = x0.to(tl.int64) * sbw
    q1 = x1.to(tl.int64) * sbw
    o00 = (r0 + q0)[:, None]
    o01 = (r0 + q1)[:, None]
    o10 = (r1 + q0)[:, None]
    o11 = (r1 + q1)[:, None]
    c00 = (ly0 * lx0)[:, None]
    c01 = (ly0 * lx1)[:, None]
    c10 = (ly1 * lx0)[:, None]
    c11 = (ly1 * lx1)[:, None]
    return o00, o01, o10, o11, c00, c01, c10, c11


@device_fn
def _column(bp, o00, o01, o10, o11, c00, c01, c10, c11, mask, ACC: tl.constexpr):
    """Bilinearly upsampled basis column: [BLOCK, T_PAD]; bp the channel pointers [1, T_PAD]."""
    v = c00 * tl.load(bp + o00, mask=mask, other=0.0).to(ACC)
    v += c01 * tl.load(bp + o01, mask=mask, other=0.0).to(ACC)
    v += c10 * tl.load(bp + o10, mask=mask, other=0.0).to(ACC)
    v += c11 * tl.load(bp + o11, mask=mask, other=0.0).to(ACC)
    return v


@device_fn
def _prologue(b_ptr, n, pix, pm, tt, m2, W, h_in, w_in, sh_hi, sh_lo, sw_hi, sw_lo,
              sbn, sbc, sbh, sbw, eps,
              T: tl.constexpr, D: tl.constexpr, ACC: tl.constexpr):
    """The scaled columns A'_d = s A_d, the LDL^T factor of G and s ([BLOCK]) for BLOCK pixels."""
    o00, o01, o10, o11, c00, c01, c10, c11 = _neighbours(pix, W, h_in, w_in, sh_hi, sh_lo, sw_hi, sw_lo,
                                                         sbh, sbw, ACC)
    bp = b_ptr + n * sbn + (tt.to(tl.int64) * (D * sbc))[None, :]
    A0 = _column(bp, o00, o01, o10, o11, c00, c01, c10, c11, m2, ACC)
    A1 = A0
    A2 = A0
    A3 = A0
    m = tl.max(tl.abs(A0), axis=1)
    if D >= 2:
        A1 = _column(bp + sbc, o00, o01, o10, o11, c00, c01, c10, c11, m2, ACC)
        m = tl.maximum(m, tl.max(tl.abs(A1), axis=1))
    if D >= 3:
        A2 = _column(bp + 2 * sbc, o00, o01, o10, o11, c00, c01, c10, c11, m2, ACC)
        m = tl.maximum(m, tl.max(tl.abs(A2), axis=1))
    if D >= 4:
        A3 = _column(bp + 3 * sbc, o00, o01, o10, o11, c00, c01, c10, c11, m2, ACC)
        m = tl.maximum(m, tl.max(tl.abs(A3), axis=1))
    s = pow2_scale(m, ACC)
    A0 = A0 * s[:, None]
    A1 = A1 * s[:, None]
    A2 = A2 * s[:, None]
    A3 = A3 * s[:, None]
    g00 = tl.sum(A0 * A0, axis=1)
    zero = tl.full(g00.shape, 0.0, g00.dtype)
    g01 = zero
    g02 = zero
    g03 = zero
    g11 = zero
    g12 = zero
    g13 = zero
    g22 = zero
    g23 = zero
    g33 = zero
    if D >= 2:
        g01 = tl.sum(A0 * A1, axis=1)
        g11 = tl.sum(A1 * A1, axis=1)
    if D >= 3:
        g02 = tl.sum(A0 * A2, axis=1)
        g12 = tl.sum(A1 * A2, axis=1)
        g22 = tl.sum(A2 * A2, axis=1)
    if D >= 4:
        g03 = tl.sum(A0 * A3, axis=1)
        g13 = tl.sum(A1 * A3, axis=1)
        g23 = tl.sum(A2 * A3, axis=1)
        g33 = tl.sum(A3 * A3, axis=1)
    lam = regulariser(g00, g11, g22, g33, eps, D)
    l10, l20, l30, l21, l31, l32, i00, i11, i22, i33 = ldl_factor(
        g00, g01, g02, g03, g11, g12, g13, g22, g23, g33, lam, D)
    return A0, A1, A2, A3, l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, s


@device_fn
def _project(xv, A0, A1, A2, A3, l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, D: tl.constexpr):
    """y = G^{-1} A^T x and p = x - A y for x [BLOCK, T_PAD]."""
    b0 = tl.sum(A0 * xv, axis=1)
    b1 = b0
    b2 = b0
    b3 = b0
    if D >= 2:
        b1 = tl.sum(A1 * xv, axis=1)
    if D >= 3:
        b2 = tl.sum(A2 * xv, axis=1)
    if D >= 4:
        b3 = tl.sum(A3 * xv, axis=1)
    y0, y1, y2, y3 = ldl_solve(l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, b0, b1, b2, b3, D)
    p = xv - A0 * y0[:, None]
    if D >= 2:
        p -= A1 * y1[:, None]
    if D >= 3:
        p -= A2 * y2[:, None]
    if D >= 4:
        p -= A3 * y3[:, None]
    return y0, y1, y2, y3, p


@triton.jit
def _pwtp_fwd_kernel(x_ptr, b_ptr, pbar_ptr, part_ptr,
                     C, HW, W, h_in, w_in, n_tiles,
                     sxn, sxc, sxt, sxh, sxw, sbn, sbc, sbh, sbw,
                     sh_hi, sh_lo, sw_hi, sw_lo, eps_hi, eps_lo,
                     T: tl.constexpr, T_PAD: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr,
                     ACC: tl.constexpr):
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pix = tile * BLOCK + tl.arange(0, BLOCK)
    pm = pix < HW
    tt = tl.arange(0, T_PAD)
    m2 = pm[:, None] & (tt < T)[None, :]
    eps = join(eps_hi, eps_lo, ACC)
    A0, A1, A2, A3, l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, s = _prologue(
        b_ptr, n, pix, pm, tt, m2, W, h_in, w_in, sh_hi, sh_lo, sw_hi, sw_lo, sbn, sbc, sbh, sbw,
        eps, T, D, ACC)

    hh = pix // W
    ww = pix - hh * W
    xp = x_ptr + n * sxn + (hh.to(tl.int64) * sxh + ww.to(tl.int64) * sxw)[:, None] \
        + (tt.to(tl.int64) * sxt)[None, :]
    op = pbar_ptr + n * C * HW + pix
    acc = tl.full([BLOCK], 0.0, ACC)
    for _c in range(C):
        xv = tl.load(xp, mask=m2, other=0.0).to(ACC)
        y0, y1, y2, y3, p = _project(xv, A0, A1, A2, A3, l10, l20, l30, l21, l31, l32,
                                     i00, i11, i22, i33, D)
        tl.store(op, (tl.sum(p, axis=1) / T).to(pbar_ptr.dtype.element_ty), mask=pm)  # p = 0 for t >= T
        acc += tl.sum(p * p, axis=1)
        xp += sxc
        op += HW
    tl.store(part_ptr + n * n_tiles + tile, tl.sum(acc, axis=0))


@triton.jit
def _pwtp_bwd_kernel(gp_ptr, ge_ptr, x_ptr, b_ptr, gx_ptr, gb_ptr,
                     C, HW, W, h_in, w_in,
                     sgpn, sgpc, sgph, sgpw, sge,
                     sxn, sxc, sxt, sxh, sxw, sbn, sbc, sbh, sbw,
                     sh_hi, sh_lo, sw_hi, sw_lo, eps_hi, eps_lo,
                     T: tl.constexpr, T_PAD: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr,
                     HAS_GP: tl.constexpr, HAS_GE: tl.constexpr, ACC: tl.constexpr):
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pix = tile * BLOCK + tl.arange(0, BLOCK)
    pm = pix < HW
    tt = tl.arange(0, T_PAD)
    m2 = pm[:, None] & (tt < T)[None, :]
    eps = join(eps_hi, eps_lo, ACC)
    A0, A1, A2, A3, l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, s = _prologue(
        b_ptr, n, pix, pm, tt, m2, W, h_in, w_in, sh_hi, sh_lo, sw_hi, sw_lo, sbn, sbc, sbh, sbw,
        eps, T, D, ACC)

    hh = pix // W
    ww = pix - hh * W
    hh64 = hh.to(tl.int64)
    ww64 = ww.to(tl.int64)
    xp = x_ptr + n * sxn + (hh64 * sxh + ww64 * sxw)[:, None] + (tt.to(tl.int64) * sxt)[None, :]
    gxp = gx_ptr + n * C * T * HW + pix[:, None] + (tt.to(tl.int64) * HW)[None, :]
    gpp = gp_ptr + n * sgpn + hh64 * sgph + ww64 * sgpw
    two_alpha = tl.full([], 0.0, ACC)
    if HAS_GE:
        two_alpha = 2.0 * tl.load(ge_ptr + n * sge).to(ACC) / HW / C
    tmask = tl.where(m2, 1.0, 0.0).to(ACC)
    ga0 = tl.full([BLOCK, T_PAD], 0.0, ACC)
    ga1 = ga0
    ga2 = ga0
    ga3 = ga0
    qy = tl.full([BLOCK], 0.0, ACC)
    for _c in range(C):
        xv = tl.load(xp, mask=m2, other=0.0).to(ACC)
        y0, y1, y2, y3, p = _project(xv, A0, A1, A2, A3, l10, l20, l30, l21, l31, l32,
                                     i00, i11, i22, i33, D)
        v = two_alpha * p
        if HAS_GP:
            gpv = tl.load(gpp, mask=pm, other=0.0).to(ACC)
            v += (gpv / T)[:, None] * tmask
        q0, q1, q2, q3, gx = _project(v, A0, A1, A2, A3, l10, l20, l30, l21, l31, l32,
                                      i00, i11, i22, i33, D)
        tl.store(gxp, gx.to(gx_ptr.dtype.element_ty), mask=m2)
        ga0 -= gx * y0[:, None] + p * q0[:, None]
        qy += q0 * y0
        if D >= 2:
            ga1 -= gx * y1[:, None] + p * q1[:, None]
            qy += q1 * y1
        if D >= 3:
            ga2 -= gx * y2[:, None] + p * q2[:, None]
            qy += q2 * y2
        if D >= 4:
            ga3 -= gx * y3[:, None] + p * q3[:, None]
            qy += q3 * y3
        xp += sxc
        gxp += T * HW
        gpp += sgpc

    # back through the upsampling: each pixel adds its 4 weighted shares to the low-res basis
    k = (2.0 * eps / D) * qy[:, None]
    sc = s[:, None]  # grad_A = s grad_A'
    o00, o01, o10, o11, c00, c01, c10, c11 = _neighbours(pix, W, h_in, w_in, sh_hi, sh_lo, sw_hi, sw_lo,
                                                         w_in, 1, ACC)
    gbp = gb_ptr + n * (T * D) * h_in * w_in + (tt.to(tl.int64) * (D * h_in * w_in))[None, :]
    _scatter(gbp, (ga0 + k * A0) * sc, o00, o01, o10, o11, c00, c01, c10, c11, m2)
    if D >= 2:
        _scatter(gbp + h_in * w_in, (ga1 + k * A1) * sc, o00, o01, o10, o11, c00, c01, c10, c11, m2)
    if D >= 3:
        _scatter(gbp + 2 * h_in * w_in, (ga2 + k * A2) * sc, o00, o01, o10, o11, c00, c01, c10, c11, m2)
    if D >= 4:
        _scatter(gbp + 3 * h_in * w_in, (ga3 + k * A3) * sc, o00, o01, o10, o11, c00, c01, c10, c11, m2)


@device_fn
def _scatter(bp, g, o00, o01, o10, o11, c00, c01, c10, c11, mask):
    tl.atomic_add(bp + o00, c00 * g, mask=mask)
    tl.atomic_add(bp + o01, c01 * g, mask=mask)
    tl.atomic_add(bp + o10, c10 * g, mask=mask)
    tl.atomic_add(bp + o11, c11 * g, mask=mask)


# ---- launchers ---------------------------------------------------------------------------------

def _check(x, basis, D):
    if x.dim() != 5:
        raise ValueError(f"vidops.{OP} (triton): x must be (N, C, T, H, W), got shape {tuple(x.shape)}")
    if basis.dim() != 4:
        raise ValueError(f"vidops.{OP} (triton): basis must be (N, T*D, h, w), got shape {tuple(basis.shape)}")
    N, C, T, H, W = x.shape
    if not (isinstance(D, int) and 1 <= D <= MAX_D):
        raise ValueError(f"vidops.{OP} (triton): D must be an int in 1..{MAX_D}, got {D!r}")
    if basis.shape[0] != N or basis.shape[1] != T * D:
        raise ValueError(f"vidops.{OP} (triton): basis must be (N={N}, T*D={T * D}, h, w), "
                         f"got shape {tuple(basis.shape)}")
    if basis.device != x.device:
        raise ValueError(f"vidops.{OP} (triton): basis is on {basis.device} but x is on {x.device}")


def _compute_dtype(x):
    return acc_torch(x.dtype)


def _config(x, basis, D, eps):
    N, C, T, H, W = x.shape
    h_in, w_in = basis.shape[2], basis.shape[3]
    T_PAD = next_pow2(T)
    BLOCK = block_size(max(16, min(256, 1024 // T_PAD)), H * W, T_PAD)
    acc = acc_dtype(x)
    sh = split_f64(h_in / H) if H > 0 else (0.0, 0.0)
    sw = split_f64(w_in / W) if W > 0 else (0.0, 0.0)
    # 8 warps for D >= 3: the per-pixel A, grad_A and T-vectors of 128 pixels over 4 warps spill
    # (sm_90 bf16, T = 8: backward 152 B at D = 3, 672 B at D = 4; forward 72 B at D = 4)
    warps = 8 if D >= 3 else 4
    return dict(T=T, T_PAD=T_PAD, D=D, BLOCK=BLOCK, ACC=acc, num_warps=warps), \
        (sh[0], sh[1], sw[0], sw[1], *split_f64(effective_eps(eps, acc))), h_in, w_in


def forward(x, basis, D, eps):
    """(pbar (N, C, H, W) in x.dtype, contiguous; enopr (N,) in the compute dtype: float64 for
    float64 x, else float32, like the reference)."""
    _check(x, basis, D)
    N, C, T, H, W = x.shape
    HW = H * W
    pbar = torch.empty((N, C, H, W), dtype=x.dtype, device=x.device)
    if N == 0:
        return pbar, torch.empty((0,), dtype=_compute_dtype(x), device=x.device)
    meta, scal, h_in, w_in = _config(x, basis, D, eps)
    n_tiles = triton.cdiv(HW, meta["BLOCK"])
    part_dtype = torch.float64 if meta["ACC"] == tl.float64 else torch.float32
    part = torch.zeros((N, max(n_tiles, 1)), dtype=part_dtype, device=x.device)
    if n_tiles > 0 and C > 0:
        _pwtp_fwd_kernel[(n_tiles, N)](
            x, basis, pbar, part, C, HW, W, h_in, w_in, n_tiles,
            *x.stride(), *basis.stride(), *scal, **meta)
    enopr = part.sum(dim=1) / (HW * C) if HW * C > 0 else part.sum(dim=1) * float("nan")
    return pbar, enopr


def backward(grad_pbar, grad_enopr, x, basis, D, eps):
    """(grad_x (N, C, T, H, W) in x.dtype, grad_basis (N, T*D, h, w) in basis.dtype), contiguous.
    grad_pbar or grad_enopr may be None (zero)."""
    _check(x, basis, D)
    N, C, T, H, W = x.shape
    HW = H * W
    meta, scal, h_in, w_in = _config(x, basis, D, eps)
    gx = torch.zeros((N, C, T, H, W), dtype=x.dtype, device=x.device)
    acc_t = torch.float64 if meta["ACC"] == tl.float64 else torch.float32
    gb = torch.zeros((N, T * D, h_in, w_in), dtype=acc_t, device=x.device)
    n_tiles = triton.cdiv(HW, meta["BLOCK"])
    if N > 0 and n_tiles > 0 and C > 0 and (grad_pbar is not None or grad_enopr is not None):
        if grad_pbar is not None and tuple(grad_pbar.shape) != (N, C, H, W):
            raise ValueError(f"vidops.{OP} (triton): grad_pbar must be {(N, C, H, W)}, got {tuple(grad_pbar.shape)}")
        if grad_enopr is not None and tuple(grad_enopr.shape) != (N,):
            raise ValueError(f"vidops.{OP} (triton): grad_enopr must be ({N},), got {tuple(grad_enopr.shape)}")
        gp = grad_pbar if grad_pbar is not None else x
        ge = grad_enopr if grad_enopr is not None else x
        gp_strides = grad_pbar.stride() if grad_pbar is not None else (0, 0, 0, 0)
        ge_stride = grad_enopr.stride(0) if grad_enopr is not None else 0
        _pwtp_bwd_kernel[(n_tiles, N)](
            gp, ge, x, basis, gx, gb, C, HW, W, h_in, w_in,
            *gp_strides, ge_stride, *x.stride(), *basis.stride(), *scal,
            HAS_GP=grad_pbar is not None, HAS_GE=grad_enopr is not None, **meta)
    return gx, gb.to(basis.dtype)
