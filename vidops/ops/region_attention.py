"""`vidops.region_attention`: the attention of the region non-local block (operators.md §5.1).

    y_j = sum_i a_ij v_i,   a_ij the weight of key i for query j, s_ij = k_i . q_j (no 1/sqrt(d)):
        softmax         a_ij = exp(s_ij) / sum_i' exp(s_i'j)
        cosine_softmax  the same with s_ij = cos(k_i, q_j)
        relu            a_ij = ReLU(s_ij) / L
        dot             a_ij = s_ij / L                     (computed as Q (K^T V) / L, O(L d^2))
        cosine_relu     a_ij = ReLU(cos(k_i, q_j)) / L
    cos(k, q) = k.q / (max(|k|, 1e-12) max(|q|, 1e-12)) (F.normalize's eps: a zero vector has
    cosine 0 with everything).

q, k (N, d, L) or (N, d, T, H, W); v (N, dv, L) or (N, dv, T, H, W); k=None: the keys are the
queries (RNL). The L x L matrix is never stored by the cpu and triton backends. Backends: triton
(flash-style kernels), cpu (symmetric-logit blocks for shared keys, PyTorch's fused CPU flash
attention for the softmax modes with separate keys, query chunks otherwise), reference (the
authors' bmm/softmax/bmm).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _op
from . import _region_attention_shared_keys as shared_keys
from ..reference.region_attention import (COSINE_EPS, COSINE_MODES, MODES, SOFTMAX_MODES, normalize,
                                          normalize_backward, region_attention_backward,
                                          region_attention_with_stats)

OP_NAME = "region_attention"
# The cpu backend's query chunk (one sample) holds at most this many logits (32 MB in fp32), and at
# most a quarter of the L x L map when that map is larger; the backward keeps up to three such
# blocks alive, the forward one.
CHUNK_ELEMENTS = 1 << 23


def _spatial(t: torch.Tensor):
    return tuple(t.shape[2:])


def check_layout(q, v, k, op=OP_NAME):
    """The layouts before flattening: (N, d, L) or (N, d, T, H, W), one (T, H, W) for all."""
    for name, t in (("q", q), ("v", v), ("k", k)):
        if isinstance(t, torch.Tensor) and t.dim() not in (3, 5):
            ch = "dv" if name == "v" else "d"
            raise ValueError(f"vidops.{op}: {name} must be (N, {ch}, L) or (N, {ch}, T, H, W), got shape "
                             f"{tuple(t.shape)}")
    if isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and k.shape != q.shape:
        raise ValueError(f"vidops.{op}: k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if isinstance(q, torch.Tensor) and isinstance(v, torch.Tensor) and q.dim() == 5 and v.dim() == 5 \
            and q.shape[0] == v.shape[0] and _spatial(v) != _spatial(q):
        raise ValueError(f"vidops.{op}: v's (T, H, W) {_spatial(v)} differs from q's {_spatial(q)}")


def check_args(q, v, k, mode, op=OP_NAME):
    """The flattened (N, d, L) call: dtypes, devices, mode, batch and L."""
    _checks.tensor(op, "q", q, 3, "(N, d, L)")
    _checks.tensor(op, "v", v, 3, "(N, dv, L)")
    others = {"v": v}
    if k is not None:
        _checks.tensor(op, "k", k)
        if k.shape != q.shape:
            raise ValueError(f"vidops.{op}: k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
        others["k"] = k
    _checks.same_device(op, "q", q, **others)
    for name, t in others.items():
        if t.dtype != q.dtype:
            raise TypeError(f"vidops.{op}: {name} must have q's dtype {q.dtype}, got {t.dtype}")
    _checks.choice(op, "mode", mode, MODES)
    if v.shape[0] != q.shape[0]:
        raise ValueError(f"vidops.{op}: v has batch {v.shape[0]} but q has batch {q.shape[0]}")
    if v.shape[2] != q.shape[2]:
        raise ValueError(f"vidops.{op}: v has L={v.shape[2]} positions but q has L={q.shape[2]} "
                         f"(q {tuple(q.shape)}, v {tuple(v.shape)})")
    if q.shape[1] < 1 and q.shape[0] * q.shape[2] > 0:
        raise ValueError(f"vidops.{op}: q must have d >= 1 channels, got shape {tuple(q.shape)}")


def _numel(shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def _flat(x: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(N, C, T, H, W) -> (N, C, L): a view whenever T, H, W merge (contiguous, channels_last_3d)."""
    return x.flatten(2) if isinstance(x, torch.Tensor) and x.dim() == 5 else x


_acc = _op.acc_dtype


def _stats_shape(q: torch.Tensor, mode: str):
    return (q.shape[0], q.shape[2] if mode in SOFTMAX_MODES else 0)


# ---- plain-PyTorch building blocks (cpu backend; "dot" in every fused backend) ----------------

def _fast_half(t: torch.Tensor) -> bool:
    return t.is_cuda and t.dtype in (torch.float16, torch.bfloat16)


def _gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b (batched) accumulated and returned in fp32: half-precision operands straight into
    the tensor cores on CUDA (bmm's out_dtype), upcast copies otherwise."""
    if a.is_cuda and a.dtype in (torch.float16, torch.bfloat16):
        try:
            return torch.bmm(a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError):  # a torch without bmm(out_dtype=)
            pass
    return torch.bmm(a.float(), b.float())


def _apply(m: torch.Tensor, x: torch.Tensor, out_fp32: bool = False) -> torch.Tensor:
    """m (fp32, small) @ x (half, large) with m split into two half-precision terms hi + lo
    (m to ~2^-16 relative, never rounded to x's dtype): bf16/fp16 GEMMs with fp32 accumulation.
    Output in x's dtype (lo's product, 2^-8 of the total, enters as the GEMM's C input), or fp32."""
    hi = m.to(x.dtype)
    lo = (m - hi.to(m.dtype)).to(x.dtype)
    if out_fp32:
        return _gram(hi, x) + _gram(lo, x)
    return torch.baddbmm(torch.bmm(lo, x), hi, x)


def dot_forward(q, v, k, fast: Optional[bool] = None):
    """y = V (K^T Q) / L by associativity (M = V K^T / L is dv x d): O(L d dv).
    fp32 (fp64) for full-precision inputs; for half-precision CUDA inputs (fast) M comes from a
    tensor-core GEMM with fp32 output and is applied as a hi + lo pair of half GEMMs."""
    acc = _acc(q.dtype)
    L = q.shape[2]
    k = q if k is None else k
    if _fast_half(q) if fast is None else fast:
        return _apply(_gram(v, k.transpose(1, 2)) / L, q)
    m = torch.bmm(v.to(acc), k.to(acc).transpose(1, 2)).div_(L)
    return torch.bmm(m, q.to(acc)).to(q.dtype)


def dot_backward(grad_y, q, v, k, fast: Optional[bool] = None):
    """gq = M^T g, gM = g Q^T / L, gv = gM K, gk = gM^T V (M = V K^T / L); k=None: gq + gk."""
    acc = _acc(q.dtype)
    L = q.shape[2]
    shared = k is None
    if _fast_half(q) if fast is None else fast:
        k_ = q if shared else k
        m = _gram(v, k_.transpose(1, 2)) / L
        gm = _gram(grad_y.to(q.dtype), q.transpose(1, 2)) / L
        gv = _apply(gm, k_)
        if shared:
            gq = _apply(m.transpose(1, 2), grad_y.to(q.dtype), True) + _apply(gm.transpose(1, 2), v, True)
            return gq.to(q.dtype), None, gv
        return _apply(m.transpose(1, 2), grad_y.to(q.dtype)), _apply(gm.transpose(1, 2), v), gv
    qa, va, ga = q.to(acc), v.to(acc), grad_y.to(acc)
    ka = qa if shared else k.to(acc)
    m = torch.bmm(va, ka.transpose(1, 2))               # (N, dv, d)
    gq = torch.bmm(m.transpose(1, 2), ga) / L           # (N, d, L)
    gm = torch.bmm(ga, qa.transpose(1, 2)) / L          # (N, dv, d)
    gv = torch.bmm(gm, ka)                              # (N, dv, L)
    gk = torch.bmm(gm.transpose(1, 2), va)              # (N, d, L)
    if shared:
        return (gq + gk).to(q.dtype), None, gv.to(v.dtype)
    return gq.to(q.dtype), gk.to(k.dtype), gv.to(v.dtype)


def query_chunk(L: int) -> int:
    """Queries per chunk of one sample: all L when the sample's L x L logits fit CHUNK_ELEMENTS
    (L <= 2896: at most 32 MB), else at most CHUNK_ELEMENTS // L and L // 4 rows (1337 at L=6272,
    668 at 12544, 1024 at 4096), so the chunk never holds more than a quarter of a large L x L
    map. Per sample, so the GEMMs stay large whatever the batch: on 2 cores, chunks of a few
    hundred rows ran ~1.5-2x slower than whole samples or chunks of 1000-2700 rows."""
    if L * L <= CHUNK_ELEMENTS:
        return max(1, L)
    return max(64, min(CHUNK_ELEMENTS // L, L // 4))


def chunked_forward(q, v, k, softmax: bool):
    """(y, lse) with the logits formed for a chunk of queries of one sample at a time (memory
    O(chunk L)). q, k (N, d, L), v (N, dv, L) in the accumulation dtype."""
    N, d, L = q.shape
    dv = v.shape[1]
    y = v.new_empty((N, dv, L))
    lse = q.new_empty((N, L if softmax else 0))
    C = query_chunk(L)
    for n in range(N):
        qn, kn, vn = q[n], k[n], v[n]
        for j0 in range(0, L, C):
            j1 = min(L, j0 + C)
            s = torch.mm(qn[:, j0:j1].t(), kn)              # (C, L): queries x keys
            if softmax:
                m = s.amax(-1, keepdim=True)
                p = s.sub_(m).exp_()                          # in place: one (C, L) block alive
                l = p.sum(-1, keepdim=True)
                lse[n, j0:j1] = (m + l.log()).squeeze(-1)
                y[n, :, j0:j1] = torch.mm(vn, p.t()).div_(l.t())
            else:
                p = s.clamp_min_(0)
                y[n, :, j0:j1] = torch.mm(vn, p.t()).mul_(1.0 / L)
            del s, p
    return y, lse


def chunked_backward(grad_y, q, v, k, softmax: bool, lse=None, y=None):
    """(dq, dk, dv) w.r.t. the (possibly normalised) q, k and v by recomputing the logits per
    query chunk of one sample: P = exp(S - lse) (lse from the forward, else recomputed),
    dS = P (dP - D) with D_j = sum_i P_ij dP_ij = g_j . y_j (softmax; rowsum(P dP) without y) or
    [S > 0] dP / L. Accumulation dtype. Shared keys with y and lse take the symmetric path of
    _region_attention_shared_keys instead."""
    N, d, L = q.shape
    dq = torch.empty_like(q)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    C = query_chunk(L)
    inv_l = 1.0 / L
    have_lse = lse is not None and lse.shape[-1] == L
    D = (grad_y * y).sum(1) if softmax and y is not None else None   # (N, L): rowsum(P dP)
    for n in range(N):
        qn, kn, vn, gn = q[n], k[n], v[n], grad_y[n]
        for j0 in range(0, L, C):
            j1 = min(L, j0 + C)
            qc = qn[:, j0:j1]                                # (d, C)
            gc = gn[:, j0:j1]                                # (dv, C)
            s = torch.mm(qc.t(), kn)                         # (C, L)
            dp = torch.mm(gc.t(), vn)                        # (C, L)
            if softmax:
                if have_lse:
                    p = s.sub_(lse[n, j0:j1].unsqueeze(-1).to(s.dtype)).exp_()
                else:
                    p = torch.softmax(s, -1)
                del s
                if D is not None:
                    ds = dp.sub_(D[n, j0:j1].unsqueeze(-1)).mul_(p)    # in place: P (dP - D)
                else:
                    ds = torch.ops.aten._softmax_backward_data(dp, p, -1, p.dtype)
                del dp
                dv[n].addmm_(gc, p)                          # dv_i += sum_j a_ij g_j
                scale = 1.0
            else:
                ds = torch.ops.aten.threshold_backward(dp, s, 0)  # [S > 0] dP
                del dp
                p = s.clamp_min_(0)
                dv[n].addmm_(gc, p, alpha=inv_l)             # a = ReLU(S) / L
                scale = inv_l
            dq[n, :, j0:j1] = torch.mm(kn, ds.t()).mul_(scale)  # dq_j = sum_i ds_ji k_i
            dk[n].addmm_(qc, ds, alpha=scale)                # dk_i += sum_j ds_ji q_j
            del p, ds                                        # before the next chunk's blocks
    return dq, dk, dv


_HAS_CPU_FLASH = hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")


def _flash_cpu(q, v, k):
    """PyTorch's fused CPU flash attention with scale 1 (d == dv): (y, lse)."""
    k = q if k is None else k
    qt = q.transpose(1, 2).unsqueeze(1).contiguous()   # its strided path is ~6x slower
    kt = qt if k is q else k.transpose(1, 2).unsqueeze(1).contiguous()
    vt = v.transpose(1, 2).unsqueeze(1).contiguous()
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(qt, kt, vt, scale=1.0)
    return out.squeeze(1).transpose(1, 2).contiguous(), lse.squeeze(1).contiguous()


# ---- backends --------------------------------------------------------------------------------

class _Reference:
    @staticmethod
    def forward(q, v, k, mode):
        y, stats = region_attention_with_stats(q, v, k, mode)
        return y.contiguous(), stats

    @staticmethod
    def backward(grad_y, q, v, k, y, stats, mode):
        return region_attention_backward(grad_y, q, v, k, mode)


class _Cpu:
    """Forward: with the keys = the queries (RNL) every mode on the symmetric logits (one GEMM per
    pair of position blocks, see _region_attention_shared_keys; the softmax modes as an online
    softmax, 3 block GEMMs per pair where a flash kernel runs 4, ~1.15x SDPA on 2 cores); separate
    keys in torch's fused CPU flash attention (softmax modes, scale 1, d == dv; what SDPA runs);
    the rest in query chunks of MKL GEMMs. Backward: shared keys on the symmetric logits with the
    forward's logsumexp and D = g . y (7 block GEMMs per block pair instead of 10), else query
    chunks."""

    @staticmethod
    def forward(q, v, k, mode):
        if mode == "dot":
            return dot_forward(q, v, k), q.new_empty(_stats_shape(q, mode), dtype=_acc(q.dtype))
        acc = _acc(q.dtype)
        qa, va = q.to(acc), v.to(acc)
        ka = None if k is None else k.to(acc)
        if mode in COSINE_MODES:
            qa = normalize(qa, COSINE_EPS)
            ka = None if ka is None else normalize(ka, COSINE_EPS)
        softmax = mode in SOFTMAX_MODES
        if softmax and ka is None:
            y, lse = shared_keys.softmax_forward(qa, va, CHUNK_ELEMENTS)
        elif softmax and q.shape[1] == v.shape[1] and _HAS_CPU_FLASH:
            y, lse = _flash_cpu(qa, va, ka)
        elif not softmax and ka is None:
            y, lse = shared_keys.relu_forward(qa, va, CHUNK_ELEMENTS), qa.new_empty((q.shape[0], 0))
        else:
            y, lse = chunked_forward(qa, va, qa if ka is None else ka, softmax)
        return y.to(q.dtype), lse.to(acc)

    @staticmethod
    def backward(grad_y, q, v, k, y, stats, mode):
        if mode == "dot":
            return dot_backward(grad_y, q, v, k)
        acc = _acc(q.dtype)
        shared = k is None
        qa, va, ga = q.to(acc), v.to(acc), grad_y.to(acc)
        ka = qa if shared else k.to(acc)
        cosine = mode in COSINE_MODES
        qn = normalize(qa) if cosine else qa
        kn = qn if shared else (normalize(ka) if cosine else ka)
        # D = g . y needs y as accurate as the accumulation (a half-precision y is not)
        ya = y.to(acc) if y is not None and y.dtype in (torch.float32, torch.float64) else None
        softmax = mode in SOFTMAX_MODES
        if shared and (not softmax or (ya is not None and stats.shape[-1] == q.shape[-1])):
            dq, dv = shared_keys.backward(ga, qn, va, softmax, CHUNK_ELEMENTS, stats.to(acc), ya)
            dk = None
        else:
            dq, dk, dv = chunked_backward(ga, qn, va, kn, softmax, stats, ya)
            if shared:
                dq, dk = dq + dk, None
        if shared:
            if cosine:
                dq = normalize_backward(dq, qa)
            return dq.to(q.dtype), None, dv.to(v.dtype)
        if cosine:
            dq, dk = normalize_backward(dq, qa), normalize_backward(dk, ka)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class _Triton:
    @staticmethod
    def forward(q, v, k, mode):
        if mode == "dot":  # O(L d^2) by associativity: plain GEMMs (cuBLAS) beat any fused kernel
            return dot_forward(q, v, k), q.new_empty(_stats_shape(q, mode), dtype=_acc(q.dtype))
        from .._triton import kernels
        return kernels(OP_NAME).forward(q, v, k, mode)

    @staticmethod
    def backward(grad_y, q, v, k, y, stats, mode):
        if mode == "dot":
            return dot_backward(grad_y, q, v, k)
        from .._triton import kernels
        return kernels(OP_NAME).backward(grad_y, q, v, k, y, stats, mode)


def autocast_rule(args, device_type, dtype):
    """Under autocast on CUDA float32 operands are taken in the autocast dtype (bf16/fp16 tensor
    core GEMMs; the softmax, its statistics and the accumulation stay float32); on the CPU the
    operands are taken as they come (a half operand is computed in float32). Operands of
    different dtypes meet in their promoted dtype."""
    q, v, k, mode = args
    ts = [t for t in (q, v, k) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if device_type == "cuda":
        ts_dtype = [dtype if t.dtype == torch.float32 else t.dtype for t in ts]
    else:
        ts_dtype = [t.dtype for t in ts]
    if not ts_dtype:
        return args
    common = ts_dtype[0]
    for d in ts_dtype[1:]:
        common = torch.promote_types(common, d)

    def cast(t):
        return t.to(common) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    return cast(q), cast(v), cast(k), mode


def _fake(q, v, k, mode):
    N, d, L = q.shape
    return q.new_empty((N, v.shape[1], L)), q.new_empty(_stats_shape(q, mode), dtype=_acc(q.dtype))


def _save(q, v, k, mode, outputs):
    """The backward's inputs after grad_y: y only for the softmax modes (D = g . y)."""
    y, stats = outputs
    return q, v, k, (y if mode in SOFTMAX_MODES else None), stats, mode


OP = _op.Op(
    OP_NAME,
    "(Tensor q, Tensor v, Tensor? k, str mode) -> (Tensor y, Tensor stats)",
    check=check_args,
    fake=_fake,
    backends={
        "reference": _op.Impl(_Reference.forward, _Reference.backward),
        "cpu": _op.Impl(_Cpu.forward, _Cpu.backward),
        "triton": _op.Impl(_Triton.forward, _Triton.backward, module=OP_NAME),
    },
    preference={"cpu": ("cpu", "reference"), "cuda": ("triton", "reference")},
    nondifferentiable=("stats",),   # the per-query logsumexp (softmax modes), saved for the backward
    backward="(Tensor grad_y, Tensor q, Tensor v, Tensor? k, Tensor? y, Tensor stats, str mode) "
             "-> (Tensor grad_q, Tensor grad_k, Tensor grad_v)",
    save=_save,
    grads_of=("q", "k", "v"),       # with k=None grad_q holds both roles and grad_k is empty (0,)
    autocast=autocast_rule,
)


def region_attention(q: torch.Tensor, v: torch.Tensor, k: Optional[torch.Tensor] = None,
                     mode: str = "softmax", *, backend: Optional[str] = None) -> torch.Tensor:
    """Region attention of the RNL block (operators.md §5.1).

        y_j = sum_i a_ij v_i,  s_ij = k_i . q_j (no 1/sqrt(d) scaling)
        softmax:        a_ij = exp(s_ij) / sum_i' exp(s_i'j)   (== SDPA with scale=1.0)
        cosine_softmax: a_ij = exp(c_ij) / sum_i' exp(c_i'j),  c_ij = cos(k_i, q_j)
        relu:           a_ij = ReLU(s_ij) / L
        dot:            a_ij = s_ij / L                         (run as Q (K^T V) / L)
        cosine_relu:    a_ij = ReLU(c_ij) / L
        cos(k, q) = k.q / (max(|k|, 1e-12) max(|q|, 1e-12))    (zero vectors: cos = 0, no NaN)

    Args:
        q: queries (N, d, L) or (N, d, T, H, W) (L = T*H*W), any strides (read in place).
        v: values (N, dv, L) or (N, dv, T, H, W).
        k: keys, q's shape; None: the keys are the queries (RNL); q's gradient then sums both roles.
        mode: "softmax" (the reference RNL), "cosine_softmax" (its use_norm=True), "relu" (its
            activation="relu"), "dot" (thesis eq. 4.6) or "cosine_relu" (thesis eq. 4.7).
        backend: "triton", "cpu" or "reference"; None picks the fastest available (see
            vidops.use_backend and VIDOPS_BACKEND).

    The softmax subtracts the running maximum in float32 (unscaled logits of 1e3 are fine);
    half-precision inputs are accumulated in float32. Under torch.autocast on CUDA float32
    operands are read in the autocast dtype (the softmax and its statistics stay float32); on the
    CPU they are taken as they come. Memory is O(L (d + dv)) per sample except on
    the reference backend (L x L).

    Returns: y, (N, dv, L) or (N, dv, T, H, W) following q's layout, a fresh contiguous tensor.
    """
    check_layout(q, v, k)
    y, _ = OP(_flat(q), _flat(v), _flat(k), mode, backend=backend)
    if q.dim() == 5:
        y = y.view(q.shape[0], v.shape[1], *q.shape[2:])
    return y
