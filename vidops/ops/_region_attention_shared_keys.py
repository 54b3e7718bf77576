"""The cpu backend of `vidops.region_attention` when the keys are the queries (RNL, k=None).

The logits S = P^T P are then symmetric: s_ji = p_j . p_i = s_ij. The sample's positions are cut
into blocks; for each pair of blocks (a, b) with a <= b, one GEMM forms S_ab (queries a, keys b)
and it serves both the (queries a, keys b) and the (queries b, keys a) attention blocks. Per pair
of off-diagonal blocks the backward then runs 7 block GEMMs where two query chunks run 10
(S twice, dP, dV, dQ and dK each twice), and the ReLU forward 3 where they run 4:

  softmax backward (lse per query from the forward, D_j = g_j . y_j):
    P1  = exp(S_ab - lse_a)           queries a, keys b       dS1  = P1  o (G_a^T V_b - D_a)
    P2T = exp(S_ab - lse_b^T)         (queries b, keys a)^T   dS2T = P2T o (V_a^T G_b - D_b^T)
    dV_b += G_a P1,  dV_a += G_b P2T^T
    M = dS1 + dS2T:  dP_a += P_b M^T,  dP_b += P_a M          (dP: both roles of p together)
  relu (a = ReLU(s) / L): P2T = P1, dS1 = [S > 0] dP1 / L, likewise dS2T.
  Dominant weights (P > DOMINANT_P) take dS = P g_j . (v_i - y_j) instead of P (dP - D): exactly
  0 when the attention is one-hot (y_j = v_i), where dP - D is the difference of two rounded dots.
The softmax's elementwise part (P1, P2T and M from S, the two dP blocks, lse and D) is one pass
of a C++ kernel (softmax_block_grad_torch is its plain-PyTorch twin).

Diagonal blocks take the plain formulas with M = dS + dS^T. Memory: a few blocks of at most
CHUNK_ELEMENTS / 2 logits (all of L x L when that fits CHUNK_ELEMENTS), never L x L otherwise.

The softmax forward is an online softmax over the block pairs (flash-style running maximum m and
sum l per query, accumulators rescaled when m grows): per off-diagonal pair one GEMM forms S_ab,
one update (a C++ kernel, softmax_block_update_torch without the extension) turns it into
P1 = exp(S_ab - m_a) and P2T = exp(S_ab - m_b^T), and two GEMMs add V_b P1^T to queries a and
V_a P2T to queries b: 3 block GEMMs where SDPA's flash kernel runs 4, and the output is written
in the op's (dv, L) layout directly. Blocks of FORWARD_BLOCK positions (in L2/L3 with the update).

Every block GEMM is gemm_nt(x, w) = x w^T with both operands dense blocks (rows of the
position-major copies q^T, v^T, g^T, or column blocks of q, v, g copied once per sample, or a
logit block or its transpose): float32 runs it on oneDNN's matmul, float64 on torch.mm.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .. import _ext


def _onednn_matmul():
    """torch's oneDNN linear (x w^T) when this build has it and it computes one right, else None.
    On 2 cores (fp32), timed in alternation with the former MKL addmm_ on the (d, L) tensors'
    column blocks: res3 (N=2, d=256, L=6272) forward 388 -> 369 ms, backward 966 -> 919 ms (90%
    of it in these GEMMs, ~180 GFLOP/s); res4 (one block of L=1568) unchanged."""
    fn = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if fn is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        x, w = torch.arange(6.0).view(2, 3), torch.arange(12.0).view(4, 3)
        ok = torch.equal(fn(x, w, None, "none", [], ""), x @ w.t()) and \
            torch.equal(fn(x, w.t().contiguous().t(), None, "none", [], ""), x @ w.t())
    except (RuntimeError, TypeError):
        return None
    return fn if ok else None


_ONEDNN = _onednn_matmul()


def gemm_nt(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (M, K) @ w (N, K)^T as a new (M, N) tensor: oneDNN for float32 when x is contiguous and
    w is contiguous or a transposed contiguous tensor (the layouts it reads without a copy), else
    torch.mm."""
    if (_ONEDNN is not None and x.dtype == torch.float32 and x.is_contiguous() and x.numel() and w.numel()
            and (w.is_contiguous() or w.t().is_contiguous())):
        return _ONEDNN(x, w, None, "none", [], "")
    return torch.mm(x, w.t())

# Least positions per block of the softmax forward: large enough for efficient GEMMs (d >= 256),
# small enough that L = 1568 (res4) splits into blocks (a single block has no symmetry to exploit).
# On 2 cores (min of 12 runs, fp32): res3 (d=256, L=6272) 211 ms with 784, 233-238 ms with 1046
# or 1568, SDPA 238 ms; res4 (N=2, d=512, L=1568) 61 ms with 784, SDPA 71 ms. Longer sequences
# use L / 8 (L=12544: 856 ms with 1568, 952 ms with 784, SDPA 981 ms).
FORWARD_BLOCK = 784


def _equal_blocks(L: int, bmax: int) -> list:
    """[(start, end)] of the fewest equal blocks of at most bmax positions covering [0, L)."""
    nb = max(1, -(-L // bmax))
    B = -(-L // nb)
    return [(i, min(L, i + B)) for i in range(0, L, B)]


def pair_blocks(L: int, chunk_elements: int) -> list:
    """[(start, end)] of the position blocks: one block when L x L fits chunk_elements, else
    equal blocks of at most sqrt(chunk_elements / 2) and L / 3 positions (1568 at L=6272)."""
    if L * L <= chunk_elements:
        return [(0, L)]
    return _equal_blocks(L, max(64, min(math.isqrt(chunk_elements // 2), L // 3)))


def _pairs(blocks: list):
    """(i, j, slice of block i, slice of block j) for every pair i <= j."""
    for i, a in enumerate(blocks):
        for j in range(i, len(blocks)):
            yield i, j, slice(*a), slice(*blocks[j])


def _column_blocks(t: torch.Tensor, blocks: list) -> list:
    """The (rows, end - start) column blocks of a 2-D tensor, each contiguous."""
    return [t[:, a0:a1].contiguous() for a0, a1 in blocks]


def forward_block(L: int, chunk_elements: int) -> int:
    """Positions per block of the softmax forward: FORWARD_BLOCK, or L / 8 for long sequences,
    at most sqrt(chunk_elements / 2) (the update holds two B x B blocks)."""
    return max(16, min(math.isqrt(chunk_elements // 2), max(FORWARD_BLOCK, -(-L // 8))))




def softmax_block_update_torch(s: torch.Tensor, p2t: Optional[torch.Tensor], m_a: torch.Tensor,
                               l_a: torch.Tensor, m_b: Optional[torch.Tensor], l_b: Optional[torch.Tensor]):
    """The plain-PyTorch twin of the C++ kernel vidops::_region_attention_softmax_block: online
    softmax update of the logit block s (queries a x keys b) in place, for the rows (s <- exp(s -
    m_a')) and, when p2t is given, the columns (p2t <- exp(s - m_b'^T)). Updates m, l in place and
    returns the rescale factors (alpha_a, alpha_b) = (exp(m_a - m_a'), exp(m_b - m_b'))."""
    alpha_b = None
    if p2t is not None:
        mb_new = torch.maximum(m_b, s.amax(0))
        alpha_b = torch.exp(m_b - mb_new)
        torch.sub(s, mb_new, out=p2t).exp_()
        l_b.mul_(alpha_b).add_(p2t.sum(0))
        m_b.copy_(mb_new)
    ma_new = torch.maximum(m_a, s.amax(1))
    alpha_a = torch.exp(m_a - ma_new)
    s.sub_(ma_new.unsqueeze(-1)).exp_()
    l_a.mul_(alpha_a).add_(s.sum(1))
    m_a.copy_(ma_new)
    return alpha_a, alpha_b


# Attention weights above this are "dominant" in the softmax backward: their dS is formed as
# P g_j . (v_i - y_j) (see softmax_block_grad_torch); at most 1 / DOMINANT_P of them per query.
DOMINANT_P = 0.125


def _dominant_entries(ds: torch.Tensor, p: torch.Tensor, queries_on_rows: bool, a0: int, b0: int,
                      g_t: torch.Tensor, v_t: torch.Tensor, y_t: torch.Tensor) -> None:
    """ds[r, c] <- p[r, c] g_j . (v_i - y_j) where p > DOMINANT_P, (j, i) = (a0 + r, b0 + c) when
    the block's rows are its queries, else (b0 + c, a0 + r)."""
    r, c = (p > DOMINANT_P).nonzero(as_tuple=True)
    if r.numel() == 0:
        return
    j, i = (a0 + r, b0 + c) if queries_on_rows else (b0 + c, a0 + r)
    e = (g_t[j] * (v_t[i] - y_t[j])).sum(1)
    ds[r, c] = p[r, c] * e


def softmax_block_grad_torch(s: torch.Tensor, dp1: torch.Tensor, dp2t: Optional[torch.Tensor], lse_a: torch.Tensor,
                             lse_b: Optional[torch.Tensor], delta_a: torch.Tensor, delta_b: Optional[torch.Tensor],
                             g_t: Optional[torch.Tensor] = None, v_t: Optional[torch.Tensor] = None,
                             y_t: Optional[torch.Tensor] = None, a0: int = 0, b0: int = 0):
    """The plain-PyTorch twin of vidops::_region_attention_softmax_block_grad, in place:
    s <- P1 = exp(s - lse_a), dp2t <- P2T = exp(s - lse_b^T) and
    dp1 <- P1 o (dp1 - delta_a) + P2T o (dp2t - delta_b^T) (the second term off the diagonal).

    With the sample's g, v and y position-major (g_t, v_t, y_t: (L, dv)) and the blocks' first
    positions a0 (rows) and b0 (columns), a dominant entry (P > DOMINANT_P; query j, key i) takes
    dS = P g_j . (v_i - y_j) instead: the same number in exact arithmetic (delta_j = g_j . y_j),
    but dP_ji - delta_j subtracts two rounded dots of size |g||v| whose exact difference is
    ~(1 - P) |g||v|, so in saturated attention (P one-hot: y_j = v_i) it left noise of eps |g||v|
    where the true dS is 0; v_i - y_j is exactly 0 there."""
    fix = g_t is not None
    if dp2t is not None:
        p2t = torch.exp(s - lse_b)
        dp2t.sub_(delta_b).mul_(p2t)
        if fix:
            _dominant_entries(dp2t, p2t, False, a0, b0, g_t, v_t, y_t)
    p1 = s.sub_(lse_a.unsqueeze(-1)).exp_()
    dp1.sub_(delta_a.unsqueeze(-1)).mul_(p1)
    if fix:
        _dominant_entries(dp1, p1, True, a0, b0, g_t, v_t, y_t)
    if dp2t is not None:
        dp1.add_(dp2t)
        dp2t.copy_(p2t)


def _kernel_or_twin(name: str, twin):
    """The C++ kernel vidops::<name> when the extension built it, else its plain-PyTorch twin."""
    return getattr(torch.ops.vidops, name) if _ext.has_kernel(name, "CPU") else twin


def softmax_forward(q: torch.Tensor, v: torch.Tensor, chunk_elements: int, block: Optional[int] = None,
                    update=None):
    """(y, lse): y_j = sum_i exp(q_i . q_j) v_i / sum_i exp(q_i . q_j) and lse_j = log of that
    sum, by the online softmax over symmetric block pairs. q (N, d, L), v (N, dv, L) in the
    accumulation dtype (float32 or float64); y (N, dv, L), lse (N, L). block: positions per block
    (default forward_block); update: the block update (default the C++ kernel when built)."""
    N, _, L = q.shape
    if update is None:
        update = _kernel_or_twin("_region_attention_softmax_block", softmax_block_update_torch)
    block = forward_block(L, chunk_elements) if block is None else block
    y = v.new_zeros((N, v.shape[1], L))
    m = q.new_full((N, L), -math.inf)
    l = q.new_zeros((N, L))
    blocks = _equal_blocks(L, block)
    bmax = blocks[0][1] - blocks[0][0]
    p2t_buf = q.new_empty(bmax * bmax)
    for n in range(N):
        yn, mn, ln = y[n], m[n], l[n]
        q_t, v_blocks = q[n].t().contiguous(), _column_blocks(v[n], blocks)
        for i, j, a, b in _pairs(blocks):
            s = gemm_nt(q_t[a], q_t[b])                                   # (A, B): queries a, keys b
            if i == j:
                alpha_a, _ = update(s, None, mn[a], ln[a], None, None)
            else:
                p2t = p2t_buf[: s.numel()].view(s.shape)
                alpha_a, alpha_b = update(s, p2t, mn[a], ln[a], mn[b], ln[b])
                yn[:, b].mul_(alpha_b).add_(gemm_nt(v_blocks[i], p2t.t()))  # queries b, keys a: V_a P2T
            yn[:, a].mul_(alpha_a).add_(gemm_nt(v_blocks[j], s))              # V_b P1^T
    y.div_(l.unsqueeze(1))
    return y, l.log_().add_(m)


def relu_forward(q: torch.Tensor, v: torch.Tensor, chunk_elements: int) -> torch.Tensor:
    """y_j = sum_i ReLU(q_i . q_j) v_i / L; q (N, d, L), v (N, dv, L) in the accumulation dtype."""
    N, _, L = q.shape
    y = v.new_zeros((N, v.shape[1], L))
    inv_l = 1.0 / L
    blocks = pair_blocks(L, chunk_elements)
    for n in range(N):
        yn = y[n]
        q_t, v_blocks = q[n].t().contiguous(), _column_blocks(v[n], blocks)
        for i, j, a, b in _pairs(blocks):
            p = gemm_nt(q_t[a], q_t[b]).clamp_min_(0)                   # (A, B): queries a, keys b
            yn[:, a].add_(gemm_nt(v_blocks[j], p), alpha=inv_l)
            if i != j:
                yn[:, b].add_(gemm_nt(v_blocks[i], p.t()), alpha=inv_l)  # queries b, keys a: p^T
            del p
    return y


def backward(grad_y: torch.Tensor, q: torch.Tensor, v: torch.Tensor, softmax: bool, chunk_elements: int,
             lse: torch.Tensor | None = None, y: torch.Tensor | None = None, grad_step=None):
    """(dq, dv) for the shared keys (dq holds both roles). softmax needs lse (N, L) and y;
    grad_step: the softmax's elementwise block step (default the C++ kernel when built)."""
    N, _, L = q.shape
    dq = torch.zeros_like(q)
    dv = torch.zeros_like(v)
    inv_l = 1.0 / L
    D = (grad_y * y).sum(1) if softmax else None                       # (N, L): rowsum(P o dP)
    if softmax and grad_step is None:
        grad_step = _kernel_or_twin("_region_attention_softmax_block_grad", softmax_block_grad_torch)
    blocks = pair_blocks(L, chunk_elements)
    for n in range(N):
        dqn, dvn = dq[n], dv[n]
        # position-major copies (the GEMMs' row blocks; g_t, v_t, y_t also serve the dominant
        # entries' g_j . (v_i - y_j)) and contiguous column blocks of q and g
        q_t, g_t, v_t = q[n].t().contiguous(), grad_y[n].t().contiguous(), v[n].t().contiguous()
        y_t = y[n].t().contiguous() if softmax else None
        q_blocks, g_blocks = _column_blocks(q[n], blocks), _column_blocks(grad_y[n], blocks)
        for i, j, a, b in _pairs(blocks):
            diag = i == j
            s = gemm_nt(q_t[a], q_t[b])                                  # (A, B)
            dp1 = gemm_nt(g_t[a], v_t[b])                                # g_j . v_i, j in a, i in b
            dp2t = None if diag else gemm_nt(v_t[a], g_t[b])             # v_j . g_i
            if softmax:
                # one pass: s <- P1, dp2t <- P2T, dp1 <- M = dS1 + dS2T (dS1 on the diagonal)
                grad_step(s, dp1, dp2t, lse[n, a], None if diag else lse[n, b], D[n, a],
                          None if diag else D[n, b], g_t, v_t, y_t, a.start, b.start)
                p1, p2t, m, scale = s, dp2t, dp1, 1.0
            else:
                # relu: a = ReLU(S) / L, P2T = P1
                m = torch.ops.aten.threshold_backward(dp1, s, 0)
                if not diag:
                    m.add_(torch.ops.aten.threshold_backward(dp2t, s, 0))
                p1, scale = s.clamp_min_(0), inv_l
                p2t = p1
            dvn[:, b].add_(gemm_nt(g_blocks[i], p1.t()), alpha=scale)    # G_a P1
            if diag:
                dqn[:, a].add_(gemm_nt(q_blocks[i], m + m.t()), alpha=scale)   # symmetric
            else:
                dvn[:, a].add_(gemm_nt(g_blocks[j], p2t), alpha=scale)     # G_b P2T^T
                dqn[:, a].add_(gemm_nt(q_blocks[j], m), alpha=scale)       # Q_b M^T
                dqn[:, b].add_(gemm_nt(q_blocks[i], m.t()), alpha=scale)   # Q_a M
            del s, dp1, dp2t, p1, p2t, m
    return dq, dv
