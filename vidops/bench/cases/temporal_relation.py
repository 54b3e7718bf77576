"""Benchmark cases of `vidops.temporal_relation` (operators.md §3.1): the PWTP module's descriptor of its
strided-conv features f (N, C'=24, T=8, h, w).

Shapes: GPU (full) N=64, 28x28 (a 224x224 clip after the stride-8 conv); CPU (quick) N=4, 14x14
and a 56x56 map (stride 2 on 112x112); smoke N=1, 4x4.

Providers: "reference" (vidops.reference: f[:, :, t1] * f[:, :, t2] for all pairs, mean over
channels), "reference_compiled", "einsum" (the full T x T Gram matrix by einsum, then the upper
triangle), and "vidops_<backend>".
"""
from __future__ import annotations

import torch

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "temporal_relation"


def shapes(size: str) -> list:
    if size == "full":
        return [(64, 24, 8, 28, 28)]
    if size == "quick":
        return [(4, 24, 8, 14, 14), (4, 24, 8, 56, 56)]
    return [(1, 4, 4, 4, 4)]


def einsum_relation(f):
    """The full T x T Gram matrix per position by einsum, then its strict upper triangle."""
    N, C, T, h, w = f.shape
    g = torch.einsum("ncthw,ncshw->ntshw", f, f) / C
    t1, t2 = torch.triu_indices(T, T, 1, device=f.device)
    return g[:, t1, t2]


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...reference.temporal_relation import temporal_relation as reference

    options = options or CaseOptions()
    size = "smoke" if options.smoke else ("quick" if quick else "full")
    out = []
    for (N, C, T, h, w) in shapes(size):
        P = T * (T - 1) // 2

        def make_vidops(backend):
            from ... import temporal_relation

            return lambda i: temporal_relation(i["f"], backend=backend)

        for dtype in options.dtypes:
            for mode in options.modes:
                es = itemsize(dtype)
                fwd_bytes = es * (N * C * T * h * w + N * P * h * w)
                providers = {
                    "reference": lambda i: reference(i["f"]),
                    "reference_compiled": lambda i, fn=compiled(reference): fn(i["f"]),
                    "einsum": lambda i: einsum_relation(i["f"]),
                }
                providers.update(vidops_providers(OP, device, make_vidops))
                t = []
                if mode == "fwd":
                    t.append(Target("peak_memory", es * N * P * h * w + 2**20,
                                    source="operators.md §0: the forward allocates its output only"))
                out.append(Case(
                    op=OP, name=f"N={N} C'={C} T={T} {h}x{w}", mode=mode, dtype=dtype,
                    setup=lambda N=N, C=C, T=T, h=h, w=w, dtype=dtype: {
                        "f": torch.randn(N, C, T, h, w, generator=torch.Generator().manual_seed(0))
                        .to(device=device, dtype=dtype_of(dtype))},
                    providers=providers,
                    bytes=fwd_bytes if mode == "fwd" else 2 * fwd_bytes + es * N * C * T * h * w,
                    flops=2 * N * C * P * h * w * (1 if mode == "fwd" else 3),
                    shape=dict(N=N, C=C, T=T, h=h, w=w),
                    grad_inputs=("f",) if mode == "fwd+bwd" else (), targets=t,
                ))
    return out
