"""Triton kernels of `vidops.temporal_squeeze`.

x (N, C, K, H, W), basis A (N, K, D) shared by every (c, h, w) of a sample,
G = A^T A + lam I, lam = e_r trace(A^T A)/D (e_r for A = 0), e_r = max(eps, 8 u) (see _linalg),
y = G^{-1} A^T x -> (N, C, D, H, W), r = x - A y, l_proj[n] = mean over (c, h, w) of ||r||_2.
The kernels work with A' = s A (s = pow2_scale of max |A|, per sample): y = s y',
dL/dy' = s dL/dy, grad_A = s grad_A'.

Each program owns BLOCK rows (c, h, w) of one sample. It first builds Q = G^{-1} A^T (D x K) from
the sample's basis (the LDL^T factor is one scalar set per program; solving it against A's rows
gives Q's rows as [K_PAD] vectors), then y_d = Q_d . x and r = x - A y per row. l_proj and
grad_basis are reduced per program into partial buffers that torch sums afterwards
(deterministic, no atomics).

Backward (beta = grad_l / (C H W), v = beta r / ||r|| (0 where ||r|| = 0), g~ = G^{-1} grad_y,
q = G^{-1} A^T v, e = g~ - q):
    grad_x = v + A e
    grad_A = sum_rows (r e^T - grad_x y^T) - (2 e_r / D) (sum_rows e . y) A
"""
import torch
import triton
import triton.language as tl

from ._linalg import (acc_dtype, block_size, device_fn, effective_eps, join, ldl_factor, ldl_solve, next_pow2,
                      pow2_scale, regulariser, split_f64)

OP = "temporal_squeeze"
MAX_D = 4


@device_fn
def _setup(b_ptr, n, kk, km, sbn, sbk, sbd, eps,
           D: tl.constexpr, ACC: tl.constexpr):
    """The sample's scaled basis columns A'_d = s A_d and Q_d = (G^{-1} A'^T)_d as [K_PAD] vectors,
    G's factor and s."""
    bp = b_ptr + n * sbn + kk.to(tl.int64) * sbk
    A0 = tl.load(bp, mask=km, other=0.0).to(ACC)
    A1 = A0
    A2 = A0
    A3 = A0
    m = tl.max(tl.abs(A0), axis=0)
    if D >= 2:
        A1 = tl.load(bp + sbd, mask=km, other=0.0).to(ACC)
        m = tl.maximum(m, tl.max(tl.abs(A1), axis=0))
    if D >= 3:
        A2 = tl.load(bp + 2 * sbd, mask=km, other=0.0).to(ACC)
        m = tl.maximum(m, tl.max(tl.abs(A2), axis=0))
    if D >= 4:
        A3 = tl.load(bp + 3 * sbd, mask=km, other=0.0).to(ACC)
        m = tl.maximum(m, tl.max(tl.abs(A3), axis=0))
    s = pow2_scale(m, ACC)
    A0 = A0 * s
    A1 = A1 * s
    A2 = A2 * s
    A3 = A3 * s
    g00 = tl.sum(A0 * A0, axis=0)
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
        g01 = tl.sum(A0 * A1, axis=0)
        g11 = tl.sum(A1 * A1, axis=0)
    if D >= 3:
        g02 = tl.sum(A0 * A2, axis=0)
        g12 = tl.sum(A1 * A2, axis=0)
        g22 = tl.sum(A2 * A2, axis=0)
    if D >= 4:
        g03 = tl.sum(A0 * A3, axis=0)
        g13 = tl.sum(A1 * A3, axis=0)
        g23 = tl.sum(A2 * A3, axis=0)
        g33 = tl.sum(A3 * A3, axis=0)
    lam = regulariser(g00, g11, g22, g33, eps, D)
    l10, l20, l30, l21, l31, l32, i00, i11, i22, i33 = ldl_factor(
        g00, g01, g02, g03, g11, g12, g13, g22, g23, g33, lam, D)
    Q0, Q1, Q2, Q3 = ldl_solve(l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, A0, A1, A2, A3, D)
    return A0, A1, A2, A3, Q0, Q1, Q2, Q3, l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, s


@device_fn
def _rows(tile, HW, W, M, BLOCK: tl.constexpr):
    j = tile * BLOCK + tl.arange(0, BLOCK)
    rm = j < M
    c = j // HW
    hw = j - c * HW
    hh = hw // W
    ww = hw - hh * W
    return rm, c.to(tl.int64), hw, hh.to(tl.int64), ww.to(tl.int64)


@device_fn
def _squeeze(xv, A0, A1, A2, A3, Q0, Q1, Q2, Q3, D: tl.constexpr):
    """y_d = Q_d . x per row and r = x - A y ([BLOCK, K_PAD])."""
    y0 = tl.sum(xv * Q0[None, :], axis=1)
    y1 = tl.full(y0.shape, 0.0, y0.dtype)
    y2 = y1
    y3 = y1
    r = xv - y0[:, None] * A0[None, :]
    if D >= 2:
        y1 = tl.sum(xv * Q1[None, :], axis=1)
        r -= y1[:, None] * A1[None, :]
    if D >= 3:
        y2 = tl.sum(xv * Q2[None, :], axis=1)
        r -= y2[:, None] * A2[None, :]
    if D >= 4:
        y3 = tl.sum(xv * Q3[None, :], axis=1)
        r -= y3[:, None] * A3[None, :]
    return y0, y1, y2, y3, r


@triton.jit
def _tsp_fwd_kernel(x_ptr, b_ptr, y_ptr, part_ptr,
                    C, HW, W, M, n_tiles,
                    sxn, sxc, sxk, sxh, sxw, sbn, sbk, sbd,
                    eps_hi, eps_lo,
                    K: tl.constexpr, K_PAD: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr,
                    ACC: tl.constexpr):
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    kk = tl.arange(0, K_PAD)
    km = kk < K
    A0, A1, A2, A3, Q0, Q1, Q2, Q3, l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, s = _setup(
        b_ptr, n, kk, km, sbn, sbk, sbd, join(eps_hi, eps_lo, ACC), D, ACC)
    rm, c, hw, hh, ww = _rows(tile, HW, W, M, BLOCK)
    m2 = rm[:, None] & km[None, :]
    xv = tl.load(x_ptr + n * sxn + (c * sxc + hh * sxh + ww * sxw)[:, None] + (kk.to(tl.int64) * sxk)[None, :],
                 mask=m2, other=0.0).to(ACC)
    y0, y1, y2, y3, r = _squeeze(xv, A0, A1, A2, A3, Q0, Q1, Q2, Q3, D)
    yp = y_ptr + (n * C + c) * D * HW + hw
    ty = y_ptr.dtype.element_ty
    tl.store(yp, (y0 * s).to(ty), mask=rm)
    if D >= 2:
        tl.store(yp + HW, (y1 * s).to(ty), mask=rm)
    if D >= 3:
        tl.store(yp + 2 * HW, (y2 * s).to(ty), mask=rm)
    if D >= 4:
        tl.store(yp + 3 * HW, (y3 * s).to(ty), mask=rm)
    nr = tl.sqrt(tl.sum(r * r, axis=1))
    tl.store(part_ptr + n * n_tiles + tile, tl.sum(nr, axis=0))


@triton.jit
def _tsp_bwd_kernel(gy_ptr, gl_ptr, x_ptr, b_ptr, gx_ptr, part_ptr,
                    C, HW, W, M, n_tiles,
                    sgyn, sgyc, sgyd, sgyh, sgyw, sgl,
                    sxn, sxc, sxk, sxh, sxw, sbn, sbk, sbd,
                    eps_hi, eps_lo,
                    K: tl.constexpr, K_PAD: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr,
                    HAS_GY: tl.constexpr, HAS_GL: tl.constexpr, ACC: tl.constexpr):
    tile = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    kk = tl.arange(0, K_PAD)
    km = kk < K
    eps = join(eps_hi, eps_lo, ACC)
    A0, A1, A2, A3, Q0, Q1, Q2, Q3, l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, s = _setup(
        b_ptr, n, kk, km, sbn, sbk, sbd, eps, D, ACC)
    rm, c, hw, hh, ww = _rows(tile, HW, W, M, BLOCK)
    m2 = rm[:, None] & km[None, :]
    xv = tl.load(x_ptr + n * sxn + (c * sxc + hh * sxh + ww * sxw)[:, None] + (kk.to(tl.int64) * sxk)[None, :],
                 mask=m2, other=0.0).to(ACC)
    y0, y1, y2, y3, r = _squeeze(xv, A0, A1, A2, A3, Q0, Q1, Q2, Q3, D)

    # v = beta r / ||r||, and q = G^{-1} A^T v
    v = tl.full(r.shape, 0.0, r.dtype)
    if HAS_GL:
        beta = tl.load(gl_ptr + n * sgl).to(ACC) / HW / C
        nr = tl.sqrt(tl.sum(r * r, axis=1))
        scale = tl.where(nr > 0.0, beta / tl.where(nr > 0.0, nr, 1.0), 0.0)
        v = r * scale[:, None]
    a0 = tl.sum(v * A0[None, :], axis=1)
    a1 = a0
    a2 = a0
    a3 = a0
    if D >= 2:
        a1 = tl.sum(v * A1[None, :], axis=1)
    if D >= 3:
        a2 = tl.sum(v * A2[None, :], axis=1)
    if D >= 4:
        a3 = tl.sum(v * A3[None, :], axis=1)
    q0, q1, q2, q3 = ldl_solve(l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, a0, a1, a2, a3, D)
    e0 = -q0
    e1 = -q1
    e2 = -q2
    e3 = -q3
    if HAS_GY:
        gyp = gy_ptr + n * sgyn + c * sgyc + hh * sgyh + ww * sgyw
        b0 = tl.load(gyp, mask=rm, other=0.0).to(ACC) * s    # dL/dy' = s dL/dy
        b1 = b0
        b2 = b0
        b3 = b0
        if D >= 2:
            b1 = tl.load(gyp + sgyd, mask=rm, other=0.0).to(ACC) * s
        if D >= 3:
            b2 = tl.load(gyp + 2 * sgyd, mask=rm, other=0.0).to(ACC) * s
        if D >= 4:
            b3 = tl.load(gyp + 3 * sgyd, mask=rm, other=0.0).to(ACC) * s
        g0, g1, g2, g3 = ldl_solve(l10, l20, l30, l21, l31, l32, i00, i11, i22, i33, b0, b1, b2, b3, D)
        e0 += g0
        e1 += g1
        e2 += g2
        e3 += g3

    gx = v + e0[:, None] * A0[None, :]
    if D >= 2:
        gx += e1[:, None] * A1[None, :]
    if D >= 3:
        gx += e2[:, None] * A2[None, :]
    if D >= 4:
        gx += e3[:, None] * A3[None, :]
    gx = tl.where(m2, gx, 0.0)
    tl.store(gx_ptr + ((n * C + c) * K * HW + hw)[:, None] + (kk.to(tl.int64) * HW)[None, :],
             gx.to(gx_ptr.dtype.element_ty), mask=m2)

    # this program's share of grad_A, (K, D) row-major
    k2 = 2.0 * eps / D
    ey = tl.sum(e0 * y0, axis=0)
    ga = tl.sum(r * e0[:, None] - gx * y0[:, None], axis=0)
    if D >= 2:
        ey += tl.sum(e1 * y1, axis=0)
    if D >= 3:
        ey += tl.sum(e2 * y2, axis=0)
    if D >= 4:
        ey += tl.sum(e3 * y3, axis=0)
    pp = part_ptr + (n * n_tiles + tile) * K * D + kk * D   # grad_A = s grad_A'
    tl.store(pp, (ga - k2 * ey * A0) * s, mask=km)
    if D >= 2:
        tl.store(pp + 1, (tl.sum(r * e1[:, None] - gx * y1[:, None], axis=0) - k2 * ey * A1) * s, mask=km)
    if D >= 3:
        tl.store(pp + 2, (tl.sum(r * e2[:, None] - gx * y2[:, None], axis=0) - k2 * ey * A2) * s, mask=km)
    if D >= 4:
        tl.store(pp + 3, (tl.sum(r * e3[:, None] - gx * y3[:, None], axis=0) - k2 * ey * A3) * s, mask=km)


# ---- launchers ---------------------------------------------------------------------------------

def _check(x, basis):
    if x.dim() != 5:
        raise ValueError(f"vidops.{OP} (triton): x must be (N, C, K, H, W), got shape {tuple(x.shape)}")
    if basis.dim() != 3 or basis.shape[0] != x.shape[0] or basis.shape[1] != x.shape[2]:
        raise ValueError(f"vidops.{OP} (triton): basis must be (N={x.shape[0]}, K={x.shape[2]}, D), "
                         f"got shape {tuple(basis.shape)}")
    if not 1 <= basis.shape[2] <= MAX_D:
        raise ValueError(f"vidops.{OP} (triton): D must be in 1..{MAX_D}, got basis shape {tuple(basis.shape)}")
    if basis.device != x.device:
        raise ValueError(f"vidops.{OP} (triton): basis is on {basis.device} but x is on {x.device}")


def _meta(x, basis):
    K = x.shape[2]
    K_PAD = next_pow2(K)
    acc = acc_dtype(x)
    rows = x.shape[1] * x.shape[3] * x.shape[4]
    return dict(K=K, K_PAD=K_PAD, D=basis.shape[2], BLOCK=block_size(max(16, min(256, 2048 // K_PAD)), rows, K_PAD),
                ACC=acc)


def forward(x, basis, eps):
    """(y (N, C, D, H, W) in x.dtype, contiguous; l_proj (N,) in the compute dtype: float64 for
    float64 inputs, else float32, like the reference)."""
    _check(x, basis)
    N, C, K, H, W = x.shape
    D = basis.shape[2]
    HW = H * W
    M = C * HW
    y = torch.empty((N, C, D, H, W), dtype=x.dtype, device=x.device)
    meta = _meta(x, basis)
    n_tiles = triton.cdiv(M, meta["BLOCK"])
    part_t = torch.float64 if meta["ACC"] == tl.float64 else torch.float32
    part = torch.zeros((N, max(n_tiles, 1)), dtype=part_t, device=x.device)
    if N > 0 and n_tiles > 0:
        _tsp_fwd_kernel[(n_tiles, N)](x, basis, y, part, C, HW, W, M, n_tiles,
                                      *x.stride(), *basis.stride(), *split_f64(effective_eps(eps, meta["ACC"])),
                                      **meta)
    l_proj = part.sum(dim=1) / M if M > 0 else part.sum(dim=1) * float("nan")
    return y, l_proj


def backward(grad_y, grad_l, x, basis, eps):
    """(grad_x (N, C, K, H, W) in x.dtype, grad_basis (N, K, D) in basis.dtype), contiguous.
    grad_y or grad_l may be None (zero)."""
    _check(x, basis)
    N, C, K, H, W = x.shape
    D = basis.shape[2]
    HW = H * W
    M = C * HW
    meta = _meta(x, basis)
    n_tiles = triton.cdiv(M, meta["BLOCK"])
    part_t = torch.float64 if meta["ACC"] == tl.float64 else torch.float32
    gx = torch.zeros((N, C, K, H, W), dtype=x.dtype, device=x.device)
    part = torch.zeros((N, max(n_tiles, 1), K, D), dtype=part_t, device=x.device)
    if N > 0 and n_tiles > 0 and (grad_y is not None or grad_l is not None):
        if grad_y is not None and tuple(grad_y.shape) != (N, C, D, H, W):
            raise ValueError(f"vidops.{OP} (triton): grad_y must be {(N, C, D, H, W)}, got {tuple(grad_y.shape)}")
        if grad_l is not None and tuple(grad_l.shape) != (N,):
            raise ValueError(f"vidops.{OP} (triton): grad_l must be ({N},), got {tuple(grad_l.shape)}")
        gy = grad_y if grad_y is not None else x
        gl = grad_l if grad_l is not None else x
        gy_strides = grad_y.stride() if grad_y is not None else (0, 0, 0, 0, 0)
        gl_stride = grad_l.stride(0) if grad_l is not None else 0
        _tsp_bwd_kernel[(n_tiles, N)](gy, gl, x, basis, gx, part, C, HW, W, M, n_tiles,
                                      *gy_strides, gl_stride, *x.stride(), *basis.stride(),
                                      *split_f64(effective_eps(eps, meta["ACC"])),
                                      HAS_GY=grad_y is not None, HAS_GL=grad_l is not None, **meta)
    return gx, part.sum(dim=1).to(basis.dtype)
