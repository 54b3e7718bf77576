"""Triton kernels of `vidops.region_attention` (operators.md §5.1): flash-style attention with queries,
keys and values read in the block's (N, C, L) layout (any strides: d-major NCTHW, channels_last,
slices), no 1/sqrt(d), and the L x L matrix never stored.

Notation: s_ij = k_i . q_j (key i, query j), times rk_i rq_j in the cosine modes (rq, rk the
inverse norms 1/max(|x|, eps), so the kernels read the raw vectors and no normalised copy is made).

Forward `_fwd_kernel`, grid (cdiv(L, BLOCK_M), N, cdiv(dv, BLOCK_O)): a program owns BLOCK_M
queries and BLOCK_O output channels and walks the keys in blocks of BLOCK_N:
    S = Q^T K over the head dim in D_CHUNKS chunks of BLOCK_D (Q tile kept across the key loop
        when one chunk holds the whole head dim; re-read per key block otherwise, from L2),
    softmax modes: online softmax in fp32 (running max m, sum l, accumulator rescaled by
        exp(m_old - m_new)), y = acc / l, and the per-query logsumexp m + log l is stored;
    relu modes: acc += ReLU(S) V, y = acc / L (no normaliser).
A head dim of 512 is handled by the D-loop for S and by splitting the output channels over
programs (BLOCK_O = 256: two programs per query block, each recomputing S; the accumulator
stays 64 x 256 fp32).

Backward (recomputation, no L x L stored), with D_j = sum_c dy_cj y_cj (torch, fp32):
    P = exp(S - lse) | dP = dY^T V | dS = P (dP - D) (softmax) or [S > 0] dP / L (relu)
  `_bwd_dq_kernel`, grid (cdiv(L, BLOCK_M), N, cdiv(d, BLOCK_O)): dQ_j = sum_i dS_ij k_i.
  `_bwd_kv_kernel`, grid (cdiv(L, BLOCK_N), N, chunks): per key block, dV_i = sum_j P_ij dy_j and
    dK_i = sum_j dS_ij q_j; both in one program for small head dims, or dV programs and dK
    programs launched separately (each over BLOCK_O columns) for large ones.
  In the cosine modes the kernels return the gradients w.r.t. the normalised vectors (dS scaled
  by rk or rq) and torch applies the normalisation's adjoint.
Gradients are accumulated in fp32 (fp64 for fp64 inputs) and stored to fp32 buffers; k=None sums
the query and key roles before the cast to the input dtype.

Dots: bf16/fp16 operands with fp32 accumulation on GPU (P and dS rounded to the input dtype for
their dot, as flash attention does), "ieee" fp32 for fp32 inputs, fp64 for fp64; under the
interpreter every operand is upcast to fp32 (its bf16 dot is wrong). No autotune (the interpreter
cannot run multi-config autotune): `config_for` picks the tiles; VIDOPS_RA_CONFIG overrides them.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._common import acc_dtype, tl_acc

OP = "region_attention"
SOFTMAX_MODES = ("softmax", "cosine_softmax")
COSINE_MODES = ("cosine_softmax", "cosine_relu")
MODES = SOFTMAX_MODES + ("relu", "cosine_relu")
COSINE_EPS = 1e-12


# ---- device helpers ------------------------------------------------------------------------

@triton.jit
def _tile(base, offs_r, stride_r, offs_c, stride_c, mask_r, mask_c):
    """Masked [R, C] tile at base + r * stride_r + c * stride_c (zeros outside)."""
    return tl.load(base + offs_r[:, None] * stride_r + offs_c[None, :] * stride_c,
                   mask=mask_r[:, None] & mask_c[None, :], other=0.0)


@triton.jit
def _mma(a, b, acc, UPCAST: tl.constexpr):
    """acc + a @ b: half-precision operands as they are (tensor cores, fp32 accumulation); fp32 and
    fp64 operands in full precision ("ieee": no TF32); UPCAST (interpreter) multiplies in fp32."""
    if UPCAST:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif a.dtype.is_fp32():
        acc = tl.dot(a, b, acc, input_precision="ieee")
    elif a.dtype.is_fp64():
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def _chunked_dot(acc, a_base, offs_a, sa_r, sa_k, mask_a, b_base, offs_b, sb_k, sb_c, mask_b, K,
                 BLOCK_K: tl.constexpr, K_CHUNKS: tl.constexpr, UPCAST: tl.constexpr):
    """acc += A[rows, :K] @ B[:K, cols], the shared dim in K_CHUNKS chunks of BLOCK_K."""
    for c in tl.static_range(K_CHUNKS):
        kk = c * BLOCK_K + tl.arange(0, BLOCK_K)
        mk = kk < K
        a = _tile(a_base, offs_a, sa_r, kk, sa_k, mask_a, mk)
        b = _tile(b_base, kk, sb_k, offs_b, sb_c, mk, mask_b)
        acc = _mma(a, b, acc, UPCAST)
    return acc


# ---- forward -------------------------------------------------------------------------------

@triton.jit
def _fwd_kernel(Q, K, V, Y, LSE, RQ, RK,
                sq_n, sq_d, sq_l, sk_n, sk_d, sk_l, sv_n, sv_d, sv_l, sy_n, sy_d, sy_l,
                L, D, DV,
                SOFTMAX: tl.constexpr, SCALED: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                D_CHUNKS: tl.constexpr, BLOCK_O: tl.constexpr,
                UPCAST: tl.constexpr, INT64: tl.constexpr, ACC: tl.constexpr):
    pid_m = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pid_o = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < L
    mask_o = offs_o < DV
    if INT64:
        offs_m = offs_m.to(tl.int64)
        offs_o = offs_o.to(tl.int64)
    q_base = Q + n * sq_n
    k_base = K + n * sk_n
    v_base = V + n * sv_n

    rq = tl.zeros([BLOCK_M], ACC)
    if SCALED:
        rq = tl.load(RQ + n * L + offs_m, mask=mask_m, other=0.0).to(ACC)
    q_tile = tl.zeros([BLOCK_M, BLOCK_D], Q.dtype.element_ty)
    if D_CHUNKS == 1:  # the whole head dim fits one tile: read Q once
        q_tile = _tile(q_base, offs_m, sq_l, offs_d, sq_d, mask_m, offs_d < D)

    m_i = tl.full([BLOCK_M], float("-inf"), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_O], ACC)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < L
        if INT64:
            offs_n = offs_n.to(tl.int64)
        s = tl.zeros([BLOCK_M, BLOCK_N], ACC)
        if D_CHUNKS == 1:
            k_tile = _tile(k_base, offs_d, sk_d, offs_n, sk_l, offs_d < D, mask_n)
            s = _mma(q_tile, k_tile, s, UPCAST)
        else:
            s = _chunked_dot(s, q_base, offs_m, sq_l, sq_d, mask_m, k_base, offs_n, sk_d, sk_l, mask_n,
                             D, BLOCK_D, D_CHUNKS, UPCAST)
        if SCALED:
            rk = tl.load(RK + n * L + offs_n, mask=mask_n, other=0.0).to(ACC)
            s = s * rq[:, None] * rk[None, :]
        v_tile = _tile(v_base, offs_n, sv_l, offs_o, sv_d, mask_n, mask_o)
        if SOFTMAX:
            s = tl.where(mask_n[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
            m_i = m_new
        else:
            p = tl.where(mask_n[None, :], tl.maximum(s, 0.0), 0.0)
        acc = _mma(p.to(V.dtype.element_ty), v_tile, acc, UPCAST)

    if SOFTMAX:
        acc = acc / l_i[:, None]
        if pid_o == 0:
            tl.store(LSE + n * L + offs_m, (m_i + tl.log(l_i)).to(LSE.dtype.element_ty), mask=mask_m)
    else:
        acc = acc / L  # (an fp32 1/L argument would cost fp64 its precision)
    y_ptr = Y + n * sy_n + offs_m[:, None] * sy_l + offs_o[None, :] * sy_d
    tl.store(y_ptr, acc.to(Y.dtype.element_ty), mask=mask_m[:, None] & mask_o[None, :])


# ---- backward: dQ --------------------------------------------------------------------------

@triton.jit
def _bwd_dq_kernel(Q, K, V, DY, LSE, DELTA, RQ, RK, DQ,
                   sq_n, sq_d, sq_l, sk_n, sk_d, sk_l, sv_n, sv_d, sv_l, sg_n, sg_d, sg_l,
                   so_n, so_d, so_l,
                   L, D, DV,
                   SOFTMAX: tl.constexpr, SCALED: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   D_CHUNKS: tl.constexpr, BLOCK_E: tl.constexpr, E_CHUNKS: tl.constexpr,
                   BLOCK_O: tl.constexpr,
                   UPCAST: tl.constexpr, INT64: tl.constexpr, ACC: tl.constexpr):
    pid_m = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pid_o = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_E)
    mask_m = offs_m < L
    mask_o = offs_o < D
    if INT64:
        offs_m = offs_m.to(tl.int64)
        offs_o = offs_o.to(tl.int64)
    q_base = Q + n * sq_n
    k_base = K + n * sk_n
    v_base = V + n * sv_n
    g_base = DY + n * sg_n

    rq = tl.zeros([BLOCK_M], ACC)
    if SCALED:
        rq = tl.load(RQ + n * L + offs_m, mask=mask_m, other=0.0).to(ACC)
    lse = tl.zeros([BLOCK_M], ACC)
    delta = tl.zeros([BLOCK_M], ACC)
    if SOFTMAX:
        lse = tl.load(LSE + n * L + offs_m, mask=mask_m, other=0.0).to(ACC)
        delta = tl.load(DELTA + n * L + offs_m, mask=mask_m, other=0.0).to(ACC)
    q_tile = tl.zeros([BLOCK_M, BLOCK_D], Q.dtype.element_ty)
    if D_CHUNKS == 1:
        q_tile = _tile(q_base, offs_m, sq_l, offs_d, sq_d, mask_m, offs_d < D)
    g_tile = tl.zeros([BLOCK_M, BLOCK_E], DY.dtype.element_ty)
    if E_CHUNKS == 1:
        g_tile = _tile(g_base, offs_m, sg_l, offs_e, sg_d, mask_m, offs_e < DV)

    acc = tl.zeros([BLOCK_M, BLOCK_O], ACC)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        mask_n = offs_n < L
        if INT64:
            offs_n = offs_n.to(tl.int64)
        s = tl.zeros([BLOCK_M, BLOCK_N], ACC)
        if D_CHUNKS == 1:
            k_tile = _tile(k_base, offs_d, sk_d, offs_n, sk_l, offs_d < D, mask_n)
            s = _mma(q_tile, k_tile, s, UPCAST)
        else:
            s = _chunked_dot(s, q_base, offs_m, sq_l, sq_d, mask_m, k_base, offs_n, sk_d, sk_l, mask_n,
                             D, BLOCK_D, D_CHUNKS, UPCAST)
        rk = tl.zeros([BLOCK_N], ACC)
        if SCALED:
            rk = tl.load(RK + n * L + offs_n, mask=mask_n, other=0.0).to(ACC)
            s = s * rq[:, None] * rk[None, :]
        dp = tl.zeros([BLOCK_M, BLOCK_N], ACC)
        if E_CHUNKS == 1:
            v_tile = _tile(v_base, offs_e, sv_d, offs_n, sv_l, offs_e < DV, mask_n)
            dp = _mma(g_tile, v_tile, dp, UPCAST)
        else:
            dp = _chunked_dot(dp, g_base, offs_m, sg_l, sg_d, mask_m, v_base, offs_n, sv_d, sv_l, mask_n,
                              DV, BLOCK_E, E_CHUNKS, UPCAST)
        valid = mask_m[:, None] & mask_n[None, :]
        if SOFTMAX:
            p = tl.exp(tl.where(valid, s, float("-inf")) - lse[:, None])
            ds = p * (dp - delta[:, None])
        else:
            ds = tl.where(valid & (s > 0), dp / L, 0.0)
        if SCALED:
            ds = ds * rk[None, :]
        k_out = _tile(k_base, offs_n, sk_l, offs_o, sk_d, mask_n, mask_o)
        acc = _mma(ds.to(K.dtype.element_ty), k_out, acc, UPCAST)

    o_ptr = DQ + n * so_n + offs_m[:, None] * so_l + offs_o[None, :] * so_d
    tl.store(o_ptr, acc.to(DQ.dtype.element_ty), mask=mask_m[:, None] & mask_o[None, :])


# ---- backward: dK and dV -------------------------------------------------------------------

@triton.jit
def _bwd_kv_kernel(Q, K, V, DY, LSE, DELTA, RQ, RK, DK, DVG,
                   sq_n, sq_d, sq_l, sk_n, sk_d, sk_l, sv_n, sv_d, sv_l, sg_n, sg_d, sg_l,
                   sdk_n, sdk_d, sdk_l, sdv_n, sdv_d, sdv_l,
                   L, D, DV,
                   SOFTMAX: tl.constexpr, SCALED: tl.constexpr, DO_DV: tl.constexpr, DO_DK: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   D_CHUNKS: tl.constexpr, BLOCK_E: tl.constexpr, E_CHUNKS: tl.constexpr,
                   BLOCK_OV: tl.constexpr, BLOCK_OK: tl.constexpr,
                   UPCAST: tl.constexpr, INT64: tl.constexpr, ACC: tl.constexpr):
    """Rows are keys (BLOCK_N of them), columns queries; dV over BLOCK_OV value channels and/or
    dK over BLOCK_OK key channels starting at program_id(2) * BLOCK_O*."""
    pid_n = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pid_o = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_ov = pid_o * BLOCK_OV + tl.arange(0, BLOCK_OV)
    offs_ok = pid_o * BLOCK_OK + tl.arange(0, BLOCK_OK)
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, BLOCK_E)
    mask_n = offs_n < L
    mask_ov = offs_ov < DV
    mask_ok = offs_ok < D
    if INT64:
        offs_n = offs_n.to(tl.int64)
        offs_ov = offs_ov.to(tl.int64)
        offs_ok = offs_ok.to(tl.int64)
    q_base = Q + n * sq_n
    k_base = K + n * sk_n
    v_base = V + n * sv_n
    g_base = DY + n * sg_n

    rk = tl.zeros([BLOCK_N], ACC)
    if SCALED:
        rk = tl.load(RK + n * L + offs_n, mask=mask_n, other=0.0).to(ACC)
    k_tile = tl.zeros([BLOCK_N, BLOCK_D], K.dtype.element_ty)
    if D_CHUNKS == 1:
        k_tile = _tile(k_base, offs_n, sk_l, offs_d, sk_d, mask_n, offs_d < D)
    v_tile = tl.zeros([BLOCK_N, BLOCK_E], V.dtype.element_ty)
    if DO_DK:
        if E_CHUNKS == 1:
            v_tile = _tile(v_base, offs_n, sv_l, offs_e, sv_d, mask_n, offs_e < DV)

    acc_v = tl.zeros([BLOCK_N, BLOCK_OV], ACC)
    acc_k = tl.zeros([BLOCK_N, BLOCK_OK], ACC)
    for start_m in range(0, L, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        mask_m = offs_m < L
        if INT64:
            offs_m = offs_m.to(tl.int64)
        st = tl.zeros([BLOCK_N, BLOCK_M], ACC)  # st[i, j] = s_ij
        if D_CHUNKS == 1:
            q_tile = _tile(q_base, offs_d, sq_d, offs_m, sq_l, offs_d < D, mask_m)
            st = _mma(k_tile, q_tile, st, UPCAST)
        else:
            st = _chunked_dot(st, k_base, offs_n, sk_l, sk_d, mask_n, q_base, offs_m, sq_d, sq_l, mask_m,
                              D, BLOCK_D, D_CHUNKS, UPCAST)
        rq = tl.zeros([BLOCK_M], ACC)
        if SCALED:
            rq = tl.load(RQ + n * L + offs_m, mask=mask_m, other=0.0).to(ACC)
            st = st * rk[:, None] * rq[None, :]
        valid = mask_n[:, None] & mask_m[None, :]
        lse = tl.zeros([BLOCK_M], ACC)
        if SOFTMAX:
            lse = tl.load(LSE + n * L + offs_m, mask=mask_m, other=0.0).to(ACC)
            pt = tl.exp(tl.where(valid, st, float("-inf")) - lse[None, :])
        else:
            pt = tl.where(valid, tl.maximum(st, 0.0), 0.0) / L
        if DO_DV:
            g_out = _tile(g_base, offs_m, sg_l, offs_ov, sg_d, mask_m, mask_ov)
            acc_v = _mma(pt.to(DY.dtype.element_ty), g_out, acc_v, UPCAST)
        if DO_DK:
            dpt = tl.zeros([BLOCK_N, BLOCK_M], ACC)
            if E_CHUNKS == 1:
                g_t = _tile(g_base, offs_e, sg_d, offs_m, sg_l, offs_e < DV, mask_m)
                dpt = _mma(v_tile, g_t, dpt, UPCAST)
            else:
                dpt = _chunked_dot(dpt, v_base, offs_n, sv_l, sv_d, mask_n, g_base, offs_m, sg_d, sg_l,
                                   mask_m, DV, BLOCK_E, E_CHUNKS, UPCAST)
            if SOFTMAX:
                delta = tl.load(DELTA + n * L + offs_m, mask=mask_m, other=0.0).to(ACC)
                dst = pt * (dpt - delta[None, :])
            else:
                dst = tl.where(valid & (st > 0), dpt / L, 0.0)
            if SCALED:
                dst = dst * rq[None, :]
            q_out = _tile(q_base, offs_m, sq_l, offs_ok, sq_d, mask_m, mask_ok)
            acc_k = _mma(dst.to(Q.dtype.element_ty), q_out, acc_k, UPCAST)

    if DO_DV:
        ptr = DVG + n * sdv_n + offs_n[:, None] * sdv_l + offs_ov[None, :] * sdv_d
        tl.store(ptr, acc_v.to(DVG.dtype.element_ty), mask=mask_n[:, None] & mask_ov[None, :])
    if DO_DK:
        ptr = DK + n * sdk_n + offs_n[:, None] * sdk_l + offs_ok[None, :] * sdk_d
        tl.store(ptr, acc_k.to(DK.dtype.element_ty), mask=mask_n[:, None] & mask_ok[None, :])


# ---- host side -----------------------------------------------------------------------------

def _p2(x: int) -> int:
    return max(16, triton.next_power_of_2(int(x)))


def _interpreting(device: torch.device) -> bool:
    return device.type != "cuda"


def _capability(device: torch.device) -> int:
    """The SM version Triton compiles for (90 = H100/H200, 80 = A100): its active driver's target
    (the ahead-of-time kernel report installs one per target); 90 when no GPU driver is active."""
    try:
        from triton.runtime import driver

        target = driver.active.get_current_target()
        return int(target.arch) if target.backend == "cuda" else 90
    except Exception:
        return 90


# Forward keys: BLOCK_M (queries), BLOCK_N (keys), BLOCK_D (head-dim chunk), BLOCK_O (output
# channels per program), num_warps, num_stages. Backward keys (their own, because the backward
# holds more tiles live than the forward and needs smaller ones): BWD_BLOCK_M, BWD_BLOCK_N,
# BWD_BLOCK_D, BWD_BLOCK_E (value-dim chunk), BLOCK_OQ / BLOCK_OV / BLOCK_OK (dQ / dV / dK
# columns per program), KV_FUSED, BWD_num_warps, BWD_num_stages.
def config_for(d: int, dv: int, device: torch.device, dtype: torch.dtype, capability=None) -> dict:
    """Tile sizes for head dims d, dv. The 16-bit GPU configs for head dims 256 and 512 were chosen
    from ahead-of-time compiles (`python -m vidops.kernel_report`: registers, spills, shared memory
    against 227 KiB on sm_90 and 163 KiB on sm_80); the others are unmeasured starting points.
    VIDOPS_RA_CONFIG="key=value,..." overrides any key (e.g. "BLOCK_M=64,BWD_num_stages=2")."""
    dp, ep = _p2(d), _p2(dv)
    big = max(dp, ep)
    if _interpreting(device):
        # small tiles, and head dims > 64 chunked so the interpreter tests run every path
        def chunk(p):  # 100 -> 2 x 64, 256 -> 2 x 128, 512 -> 2 x 256
            return p if p <= 64 else p // 2

        def out(p):  # 512 -> 2 x 256
            return min(p, 256)

        cfg = dict(BLOCK_M=32, BLOCK_N=32, BLOCK_D=chunk(dp), BLOCK_O=out(ep), num_warps=4, num_stages=1,
                   BWD_BLOCK_M=32, BWD_BLOCK_N=32, BWD_BLOCK_D=chunk(dp), BWD_BLOCK_E=chunk(ep),
                   BLOCK_OQ=out(dp), BLOCK_OV=out(ep), BLOCK_OK=out(dp), KV_FUSED=dp <= 64 and ep <= 64,
                   BWD_num_warps=4, BWD_num_stages=1)
    elif dtype == torch.float64 or dtype == torch.float32:  # 4- and 8-byte operands: small tiles
        warps = 4 if big <= 64 else 8
        cfg = dict(BLOCK_M=64, BLOCK_N=32, BLOCK_D=min(dp, 64), BLOCK_O=min(ep, 128), num_warps=warps,
                   num_stages=2, BWD_BLOCK_M=32, BWD_BLOCK_N=32, BWD_BLOCK_D=min(dp, 64),
                   BWD_BLOCK_E=min(ep, 64), BLOCK_OQ=min(dp, 128), BLOCK_OV=min(ep, 128),
                   BLOCK_OK=min(dp, 128), KV_FUSED=dp <= 64 and ep <= 64, BWD_num_warps=warps,
                   BWD_num_stages=2)
        if big >= 256:
            # fp32 at head dims 256/512 (sm_90, triton 3.9): 64 query rows spilled 168-352 B in the
            # forward; the two-stage backward with 128-wide outputs needed 276 KiB of shared memory
            # and spilled 432-544 B. 32 rows, one stage and 64-wide outputs compile clean
            cfg.update(BLOCK_M=32, BWD_num_stages=1, BLOCK_OQ=min(dp, 64), BLOCK_OV=min(ep, 64),
                       BLOCK_OK=min(dp, 64))
    else:
        sm = _capability(device) if capability is None else capability
        if big <= 128:
            warps, stages = (4, 3) if big <= 64 else (8, 3)
            cfg = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_D=dp, BLOCK_O=ep, num_warps=warps, num_stages=stages,
                       BWD_BLOCK_M=64, BWD_BLOCK_N=64, BWD_BLOCK_D=dp, BWD_BLOCK_E=ep, BLOCK_OQ=dp,
                       BLOCK_OV=ep, BLOCK_OK=dp, KV_FUSED=True, BWD_num_warps=warps, BWD_num_stages=stages)
        else:
            # forward: the 128 x 256 fp32 accumulator fits sm_90's wgmma (operands from shared memory)
            # without spilling; sm_80's mma.sync holds its operands in registers, so 64 query rows
            if big <= 256:
                cfg = dict(BLOCK_M=128 if sm >= 90 else 64, BLOCK_N=64, BLOCK_D=min(dp, 256))
            else:
                # 32-key blocks on sm_90 too: with 64 the two-stage K/V buffers need 256 KiB of shared
                # memory under triton 3.6 (227 KiB available; 208 KiB under 3.9); 32 needs 160 / 112
                cfg = dict(BLOCK_M=64, BLOCK_N=32, BLOCK_D=128)
            cfg.update(BLOCK_O=min(ep, 256), num_warps=8, num_stages=2)
            # backward: S, dP, P, dS (64 x 64 fp32) stay live beside the gradient accumulator, so
            # 64-wide head-dim chunks and output tiles and one stage (no prefetch buffers); on sm_80
            # at d=256 also 32-key blocks (64 spilled 8-24 B there; d=512 does not spill with 64)
            bwd_n = 32 if sm < 90 and big <= 256 else 64
            cfg.update(BWD_BLOCK_M=64, BWD_BLOCK_N=bwd_n, BWD_BLOCK_D=64, BWD_BLOCK_E=64, BLOCK_OQ=64,
                       BLOCK_OV=min(ep, 128), BLOCK_OK=64, KV_FUSED=False, BWD_num_warps=8,
                       BWD_num_stages=1)
    override = os.environ.get("VIDOPS_RA_CONFIG", "").strip()
    if override:
        for item in override.split(","):
            key, _, value = item.partition("=")
            key = key.strip()
            if key not in cfg:
                raise ValueError(f"VIDOPS_RA_CONFIG: unknown key {key!r} (known: {sorted(cfg)})")
            cfg[key] = value.strip().lower() in ("1", "true") if key == "KV_FUSED" else int(value)
    return cfg


_acc_dtype = acc_dtype
_tl_acc = tl_acc


def _needs_int64(*tensors) -> bool:
    """Whether an offset inside one sample can reach 2^31 (the batch offset is always 64-bit)."""
    for t in tensors:
        if t is None or t.dim() < 2:
            continue
        if sum((s - 1) * abs(st) for s, st in zip(t.shape[1:], t.stride()[1:]) if s > 0) >= 2 ** 31 - 1:
            return True
    return False


def _upcast(device: torch.device, dtype: torch.dtype) -> bool:
    return _interpreting(device) and dtype in (torch.float16, torch.bfloat16)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"vidops.triton_kernels.{OP}: mode must be one of {MODES} "
                         f"(\"dot\" runs as matmuls, not here), got {mode!r}")


def inverse_norms(x: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """(N, L) 1 / max(|x_j|, eps) in the accumulation dtype."""
    return 1.0 / torch.linalg.vector_norm(x, dim=1, dtype=_acc_dtype(x.dtype)).clamp_min(eps)


def _normalize_backward(g: torch.Tensor, x: torch.Tensor, r: torch.Tensor, eps: float = COSINE_EPS):
    """Adjoint of x -> r x (r = 1/max(|x|, eps)), with xhat = r x: r (g - [|x| > eps] xhat (xhat . g)),
    in g's dtype (the unit vector keeps every factor O(1): r^3 (x.g) x underflows for |x| >~ 1e13)."""
    r = r.unsqueeze(1)
    xhat = x.to(g.dtype) * r
    big = (1.0 / r) > eps  # |x| > eps
    proj = torch.where(big, (xhat * g).sum(1, keepdim=True), torch.zeros_like(r))
    return r * (g - proj * xhat)


# configs that had to shrink (compile-time OutOfResources), by (kind, device, d, dv, dtype, mode)
_SHRUNK: dict = {}


def _shrink(cfg: dict, kind: str):
    """The next smaller config after an OutOfResources, or None: fewer pipeline stages, then smaller
    row tiles, then narrower output tiles, then narrower head-dim chunks (of `kind`'s own keys)."""
    cfg = dict(cfg)
    if kind == "fwd":
        stages, groups = "num_stages", (("BLOCK_M", "BLOCK_N"), ("BLOCK_O",), ("BLOCK_D",))
    else:
        stages, groups = "BWD_num_stages", (("BWD_BLOCK_M", "BWD_BLOCK_N"), ("BLOCK_OQ", "BLOCK_OV", "BLOCK_OK"),
                                            ("BWD_BLOCK_D", "BWD_BLOCK_E"))
    if cfg[stages] > 1:
        cfg[stages] = 1
        return cfg
    for keys in groups:
        big = max(cfg[key] for key in keys)
        if big > 16:
            for key in keys:
                if cfg[key] == big:
                    cfg[key] //= 2
            return cfg
    return None


def _with_fallback(kind: str, launch, cfg: dict, q: torch.Tensor, d: int, dv: int, mode: str) -> None:
    """launch(cfg); on a compile-time OutOfResources (shared memory or registers; raised before the
    kernel runs) retry with smaller tiles and remember the config that fits."""
    from triton.runtime.errors import OutOfResources

    key = (kind, str(q.device), d, dv, q.dtype, mode, tuple(sorted(cfg.items())))
    cfg = _SHRUNK.get(key, cfg)
    while True:
        try:
            launch(cfg)
            return
        except OutOfResources:
            smaller = _shrink(cfg, kind)
            if smaller is None:
                raise
            cfg = _SHRUNK[key] = smaller


def forward(q: torch.Tensor, v: torch.Tensor, k=None, mode: str = "softmax", config=None):
    """y (N, dv, L) in the input dtype and stats (N, L) (the per-query logsumexp in the softmax
    modes; (N, 0) otherwise), for q, k (N, d, L) and v (N, dv, L) with any strides."""
    _check_mode(mode)
    k_ = q if k is None else k
    N, d, L = q.shape
    dv = v.shape[1]
    acc = _acc_dtype(q.dtype)
    softmax = mode in SOFTMAX_MODES
    y = torch.empty((N, dv, L), device=q.device, dtype=q.dtype)
    stats = torch.empty((N, L if softmax else 0), device=q.device, dtype=acc)
    if N == 0 or L == 0:
        return y, stats
    scaled = mode in COSINE_MODES
    dummy = torch.zeros(1, device=q.device, dtype=acc)  # for pointer arguments a mode does not read
    rq = inverse_norms(q) if scaled else dummy
    rk = (rq if k is None else inverse_norms(k_)) if scaled else dummy
    lse = stats if softmax else dummy

    def launch(cfg):
        grid = (triton.cdiv(L, cfg["BLOCK_M"]), N, triton.cdiv(dv, cfg["BLOCK_O"]))
        _fwd_kernel[grid](
            q, k_, v, y, lse, rq, rk,
            *q.stride(), *k_.stride(), *v.stride(), *y.stride(),
            L, d, dv,
            SOFTMAX=softmax, SCALED=scaled,
            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_D=cfg["BLOCK_D"],
            D_CHUNKS=triton.cdiv(d, cfg["BLOCK_D"]), BLOCK_O=cfg["BLOCK_O"],
            UPCAST=_upcast(q.device, q.dtype), INT64=_needs_int64(q, k_, v, y), ACC=_tl_acc(q.dtype),
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])

    _with_fallback("fwd", launch, config or config_for(d, dv, q.device, q.dtype), q, d, dv, mode)
    return y, stats


def backward(grad_y: torch.Tensor, q: torch.Tensor, v: torch.Tensor, k, y: torch.Tensor,
             stats: torch.Tensor, mode: str = "softmax", config=None):
    """(grad_q, grad_k, grad_v) in the input dtype; grad_k is None when k is None (grad_q then
    holds the query and key roles). y and stats are the forward's outputs (softmax modes; y may
    be None otherwise)."""
    _check_mode(mode)
    shared = k is None
    k_ = q if shared else k
    N, d, L = q.shape
    dv = v.shape[1]
    acc = _acc_dtype(q.dtype)
    softmax = mode in SOFTMAX_MODES
    scaled = mode in COSINE_MODES
    # every element is written by exactly one program
    dq = torch.empty((N, d, L), device=q.device, dtype=acc)
    dk = torch.empty((N, d, L), device=q.device, dtype=acc)
    dvg = torch.empty((N, dv, L), device=q.device, dtype=acc)
    if N == 0 or L == 0:
        return dq.to(q.dtype), (None if shared else dk.to(k_.dtype)), dvg.to(v.dtype)
    if softmax and stats.shape[-1] != L:  # no logsumexp from the forward: recompute it
        y, stats = forward(q, v, k, mode, config)
    dummy = torch.zeros(1, device=q.device, dtype=acc)  # for pointer arguments a mode does not read
    lse = stats if softmax else dummy
    delta = (grad_y.to(acc) * y.to(acc)).sum(1) if softmax else dummy
    rq = inverse_norms(q) if scaled else dummy
    rk = (rq if shared else inverse_norms(k_)) if scaled else dummy
    args = (q, k_, v, grad_y, lse, delta, rq, rk)
    strides = (*q.stride(), *k_.stride(), *v.stride(), *grad_y.stride())

    def launch(cfg):
        common = dict(SOFTMAX=softmax, SCALED=scaled, BLOCK_M=cfg["BWD_BLOCK_M"], BLOCK_N=cfg["BWD_BLOCK_N"],
                      BLOCK_D=cfg["BWD_BLOCK_D"], D_CHUNKS=triton.cdiv(d, cfg["BWD_BLOCK_D"]),
                      BLOCK_E=cfg["BWD_BLOCK_E"], E_CHUNKS=triton.cdiv(dv, cfg["BWD_BLOCK_E"]),
                      UPCAST=_upcast(q.device, q.dtype), INT64=_needs_int64(q, k_, v, grad_y, dq, dvg),
                      ACC=_tl_acc(q.dtype), num_warps=cfg["BWD_num_warps"],
                      num_stages=cfg["BWD_num_stages"])
        grid = (triton.cdiv(L, cfg["BWD_BLOCK_M"]), N, triton.cdiv(d, cfg["BLOCK_OQ"]))
        _bwd_dq_kernel[grid](*args, dq, *strides, *dq.stride(), L, d, dv, BLOCK_O=cfg["BLOCK_OQ"], **common)
        kv_rows = triton.cdiv(L, cfg["BWD_BLOCK_N"])
        kv_args = (*args, dk, dvg, *strides, *dk.stride(), *dvg.stride(), L, d, dv)
        if cfg["KV_FUSED"] and cfg["BLOCK_OV"] >= dv and cfg["BLOCK_OK"] >= d:
            _bwd_kv_kernel[(kv_rows, N, 1)](*kv_args, DO_DV=True, DO_DK=True, BLOCK_OV=cfg["BLOCK_OV"],
                                            BLOCK_OK=cfg["BLOCK_OK"], **common)
        else:
            _bwd_kv_kernel[(kv_rows, N, triton.cdiv(dv, cfg["BLOCK_OV"]))](
                *kv_args, DO_DV=True, DO_DK=False, BLOCK_OV=cfg["BLOCK_OV"], BLOCK_OK=16, **common)
            _bwd_kv_kernel[(kv_rows, N, triton.cdiv(d, cfg["BLOCK_OK"]))](
                *kv_args, DO_DV=False, DO_DK=True, BLOCK_OV=16, BLOCK_OK=cfg["BLOCK_OK"], **common)

    _with_fallback("bwd", launch, config or config_for(d, dv, q.device, q.dtype), q, d, dv, mode)
    if shared:
        dq += dk
        if scaled:
            dq = _normalize_backward(dq, q, rq)
        return dq.to(q.dtype), None, dvg.to(v.dtype)
    if scaled:
        dq = _normalize_backward(dq, q, rq)
        dk = _normalize_backward(dk, k_, rk)
    return dq.to(q.dtype), dk.to(k_.dtype), dvg.to(v.dtype)
