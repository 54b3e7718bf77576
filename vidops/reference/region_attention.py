"""Reference region attention (operators.md §5.1), as the RNL block of region-based-non-local-network
(ops/rnl.py) runs it: A = K^T Q (keys x queries, no 1/sqrt(d)), a column-wise normalisation
over the keys, y = V A, with bmm/softmax/bmm in the input dtype. It materialises the L x L
matrix: the oracle for small L (run it in float64) and the baseline of the benchmarks.

Layout: q, k (N, d, L), v (N, dv, L), y (N, dv, L); 5-D (N, C, T, H, W) inputs are flattened.
"""
from __future__ import annotations

from typing import Optional

import torch

MODES = ("softmax", "cosine_softmax", "relu", "dot", "cosine_relu")
SOFTMAX_MODES = ("softmax", "cosine_softmax")
COSINE_MODES = ("cosine_softmax", "cosine_relu")
# cos(k, q) = k.q / (max(|k|, eps) max(|q|, eps)): F.normalize's definition (the reference's
# use_norm=True path), so a zero vector has cosine 0 with everything instead of NaN.
COSINE_EPS = 1e-12


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2) if x.dim() == 5 else x


def normalize(x: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """x / max(|x|_2, eps) along dim 1 (channels), as F.normalize."""
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(eps)


def normalize_backward(g: torch.Tensor, x: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """Adjoint of `normalize`: with r = 1/max(|x|, eps) and xhat = r x,
    dx = r (g - [|x| > eps] xhat (xhat . g)). Written with the unit vector xhat rather than as
    r g - r^3 (x.g) x, whose r^3 underflows float32 for |x| >~ 1e13 (and overflows for tiny x)."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    r = 1.0 / norm.clamp_min(eps)
    xhat = x * r
    proj = torch.where(norm > eps, (xhat * g).sum(1, keepdim=True), torch.zeros_like(norm))
    return r * (g - proj * xhat)


def _weights(s: torch.Tensor, mode: str) -> torch.Tensor:
    """The attention weights a[n, i, j] (key i, query j) from the logits s (dim 1 = keys)."""
    L = s.shape[1]
    if mode in SOFTMAX_MODES:
        return torch.softmax(s, dim=1)
    if mode == "dot":
        return s / L
    return torch.relu(s) / L


def region_attention_with_stats(q, v, k=None, mode="softmax"):
    """(y, lse): lse[n, j] = logsumexp_i s_ij in the softmax modes (float32, float64 for float64
    inputs), an (N, 0) tensor otherwise."""
    q, v = _flat(q), _flat(v)
    k = q if k is None else _flat(k)
    if mode in COSINE_MODES:
        q, k = normalize(q), normalize(k)
    s = torch.bmm(k.transpose(1, 2), q)  # (N, L_key, L_query)
    y = torch.bmm(v, _weights(s, mode))
    stat_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    if mode in SOFTMAX_MODES:
        lse = torch.logsumexp(s.to(stat_dtype), dim=1)
    else:
        lse = s.new_empty((s.shape[0], 0), dtype=stat_dtype)
    return y, lse


def region_attention(q: torch.Tensor, v: torch.Tensor, k: Optional[torch.Tensor] = None,
                     mode: str = "softmax") -> torch.Tensor:
    """y[n, :, j] = sum_i a_ij v[n, :, i], a_ij the weight of key i for query j:

        softmax:        a_ij = exp(k_i.q_j) / sum_i' exp(k_i'.q_j)       (no 1/sqrt(d))
        cosine_softmax: the same on L2-normalised k_i, q_j
        relu:           a_ij = ReLU(k_i.q_j) / L
        dot:            a_ij = k_i.q_j / L
        cosine_relu:    a_ij = ReLU(cos(k_i, q_j)) / L

    k=None: the keys are the queries (RNL). Computed in the input dtype with the L x L matrix.
    """
    y, _ = region_attention_with_stats(q, v, k, mode)
    return y


def region_attention_backward(grad_y, q, v, k=None, mode="softmax"):
    """(grad_q, grad_k, grad_v) of `region_attention` by the explicit formulas (no autograd):

        gA = V^T gY, gV = gY A^T,
        gS = A * (gA - sum_i A gA)  (softmax modes) | [S > 0] gA / L (relu) | gA / L (dot),
        g(q) = K gS, g(k) = Q gS^T, then through the normalisation in the cosine modes.

    k=None: grad_k is None and grad_q holds both roles."""
    q, v, grad_y = _flat(q), _flat(v), _flat(grad_y)
    shared = k is None
    k = q if shared else _flat(k)
    qn, kn = (normalize(q), normalize(k)) if mode in COSINE_MODES else (q, k)
    s = torch.bmm(kn.transpose(1, 2), qn)
    a = _weights(s, mode)
    L = s.shape[1]
    ga = torch.bmm(v.transpose(1, 2), grad_y)
    gv = torch.bmm(grad_y, a.transpose(1, 2))
    if mode in SOFTMAX_MODES:
        gs = a * (ga - (a * ga).sum(1, keepdim=True))
    elif mode == "dot":
        gs = ga / L
    else:
        gs = torch.where(s > 0, ga, torch.zeros_like(ga)) / L
    gqn = torch.bmm(kn, gs)
    gkn = torch.bmm(qn, gs.transpose(1, 2))
    if shared:
        gq = gqn + gkn
        if mode in COSINE_MODES:
            gq = normalize_backward(gq, q)
        return gq, None, gv
    if mode in COSINE_MODES:
        gqn, gkn = normalize_backward(gqn, q), normalize_backward(gkn, k)
    return gqn, gkn, gv
