"""`vidops.temporal_relation`: PWTP's temporal relation descriptor (operators.md §3.1, thesis eq. 3.9).

    u[n, pair(t1, t2), i] = (1/C') sum_c f[n, c, t1, i] * f[n, c, t2, i],   t1 < t2 ascending

Backends: cpu (C++/OpenMP), cuda (CUDA C++), triton, reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks, _op
from ..reference.temporal_relation import temporal_relation as reference_forward
from ..reference.temporal_relation import temporal_relation_backward as reference_backward

OP_NAME = "temporal_relation"


def check_args(f, op=OP_NAME) -> None:
    _checks.tensor(op, "f", f, 5, "(N, C', T, h, w)")
    N, C, T, h, w = f.shape
    if C < 1:
        raise ValueError(f"vidops.{op}: f must have C' >= 1 channels, got shape {tuple(f.shape)}")
    if T < 2:
        raise ValueError(f"vidops.{op}: f must have T >= 2 frames (one pair at least), got T={T}")


def num_pairs(T: int) -> int:
    return T * (T - 1) // 2


def _fake(f):
    N, C, T, h, w = f.shape
    return f.new_empty((N, num_pairs(T), h, w))


OP = _op.Op(
    OP_NAME,
    "(Tensor f) -> Tensor u",
    check=check_args,
    fake=_fake,
    backends={
        "reference": _op.Impl(reference_forward, reference_backward),
        "cpu": _op.cpp("_temporal_relation"),
        "cuda": _op.cpp("_temporal_relation"),
        "triton": _op.triton("temporal_relation"),
    },
    post=lambda u, f: u.to(f.dtype),
    autocast=_op.keep_dtypes,   # half f read as is, accumulated in float32, u in f's dtype
)


def temporal_relation(f: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """Temporal relation descriptor of every position (operators.md §3.1, thesis eq. 3.9).

        u[n, pair(t1, t2), i] = (1/C') sum_c f[n, c, t1, i] * f[n, c, t2, i]

    for the P = T(T-1)/2 pairs t1 < t2 in ascending (t1, t2) order (torch.triu_indices(T, T, 1)).

    Args:
        f: (N, C', T, h, w) features (the PWTP module's strided conv output), any strides;
            float32/float64 (half read as is, accumulated in float32). T >= 2.
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available.

    Returns: u (N, T(T-1)/2, h, w) in f's dtype, a fresh contiguous tensor.
    """
    return OP(f, backend=backend)
