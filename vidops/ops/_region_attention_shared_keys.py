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

Diagonal blocks take the plain formulas with M = dS + dS^T. Memory: a few blocks of at most
CHUNK_ELEMENTS / 2 logits (all of L x L when that fits CHUNK_ELEMENTS), never L x L otherwise.
"""
from __future__ import annotations

import math

import torch


def pair_blocks(L: int, chunk_elements: int) -> list:
    """[(start, end)] of the position blocks: one block when L x L fits chunk_elements, else
    equal blocks of at most sqrt(chunk_elements / 2) and L / 3 positions (1568 at L=6272)."""
    if L * L <= chunk_elements:
        return [(0, L)]
    bmax = max(64, min(math.isqrt(chunk_elements // 2), L // 3))
    nb = -(-L // bmax)
    B = -(-L // nb)
    return [(i, min(L, i + B)) for i in range(0, L, B)]


def _pairs(L: int, chunk_elements: int):
    blocks = pair_blocks(L, chunk_elements)
    for i, a in enumerate(blocks):
        for b in blocks[i:]:
            yield slice(*a), slice(*b), a == b


def relu_forward(q: torch.Tensor, v: torch.Tensor, chunk_elements: int) -> torch.Tensor:
    """y_j = sum_i ReLU(q_i . q_j) v_i / L; q (N, d, L), v (N, dv, L) in the accumulation dtype."""
    N, _, L = q.shape
    y = v.new_zeros((N, v.shape[1], L))
    inv_l = 1.0 / L
    for n in range(N):
        qn, vn, yn = q[n], v[n], y[n]
        for a, b, diag in _pairs(L, chunk_elements):
            p = torch.mm(qn[:, a].t(), qn[:, b]).clamp_min_(0)          # (A, B): queries a, keys b
            yn[:, a].addmm_(vn[:, b], p.t(), alpha=inv_l)
            if not diag:
                yn[:, b].addmm_(vn[:, a], p, alpha=inv_l)                # queries b, keys a: p^T
            del p
    return y


def backward(grad_y: torch.Tensor, q: torch.Tensor, v: torch.Tensor, softmax: bool, chunk_elements: int,
             lse: torch.Tensor | None = None, y: torch.Tensor | None = None):
    """(dq, dv) for the shared keys (dq holds both roles). softmax needs lse (N, L) and y."""
    N, _, L = q.shape
    dq = torch.zeros_like(q)
    dv = torch.zeros_like(v)
    inv_l = 1.0 / L
    D = (grad_y * y).sum(1) if softmax else None                       # (N, L): rowsum(P o dP)
    for n in range(N):
        qn, vn, gn, dqn, dvn = q[n], v[n], grad_y[n], dq[n], dv[n]
        for a, b, diag in _pairs(L, chunk_elements):
            s = torch.mm(qn[:, a].t(), qn[:, b])                         # (A, B)
            dp1 = torch.mm(gn[:, a].t(), vn[:, b])                       # g_j . v_i, j in a, i in b
            dp2t = None if diag else torch.mm(vn[:, a].t(), gn[:, b])    # v_j . g_i
            if softmax:
                p2t = None if diag else torch.exp(s - lse[n, b].unsqueeze(0))
                p1 = s.sub_(lse[n, a].unsqueeze(-1)).exp_()
                ds1 = dp1.sub_(D[n, a].unsqueeze(-1)).mul_(p1)
                ds2t = None if diag else dp2t.sub_(D[n, b].unsqueeze(0)).mul_(p2t)
                scale = 1.0
            else:
                ds1 = torch.ops.aten.threshold_backward(dp1, s, 0)
                ds2t = None if diag else torch.ops.aten.threshold_backward(dp2t, s, 0)
                p1 = s.clamp_min_(0)
                p2t = p1
                scale = inv_l
            dvn[:, b].addmm_(gn[:, a], p1, alpha=scale)
            if diag:
                m = ds1 + ds1.t()
                dqn[:, a].addmm_(qn[:, a], m, alpha=scale)             # m is symmetric
            else:
                dvn[:, a].addmm_(gn[:, b], p2t.t(), alpha=scale)
                m = ds1.add_(ds2t)
                dqn[:, a].addmm_(qn[:, b], m.t(), alpha=scale)
                dqn[:, b].addmm_(qn[:, a], m, alpha=scale)
            del s, dp1, dp2t, p1, p2t, ds1, ds2t, m
    return dq, dv
