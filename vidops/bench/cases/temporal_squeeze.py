"""Benchmark cases of `vidops.temporal_squeeze` (operators.md §4) and the TemporalSqueezePooling module.

Shapes (x (N, C, K, H, W), basis (N, K, D)): GPU (full) N=32, C=3, K=10, 224x224, D=3 (the TSP
paper's input layer) and an in-network N=32, C=64, K=10, 56x56, D=3; CPU (quick) N=4, C=3, K=10,
112x112, D=3; smoke N=1, C=3, K=4, 8x8, D=1.

Providers: "reference" (vidops.reference: torch.linalg.solve of the regularised normal equations
per sample, y = G^-1 A^T X, residual norms), "reference_compiled", "pinv" (y = pinv(A) X), and
"vidops_<backend>"; the module rows time TemporalSqueezePooling with the reference backend as
"reference" (the squeeze/excitation MLP is the same plain PyTorch for every provider).
"""
from __future__ import annotations

import torch

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "temporal_squeeze"


def shapes(size: str) -> list:
    if size == "full":
        return [(32, 3, 10, 224, 224, 3), (32, 64, 10, 56, 56, 3)]
    if size == "quick":
        return [(4, 3, 10, 112, 112, 3)]
    return [(1, 3, 4, 8, 8, 1)]


def pinv_squeeze(x, basis):
    N, C, K, H, W = x.shape
    xs = x.transpose(1, 2).reshape(N, K, -1)
    y = torch.linalg.pinv(basis) @ xs
    l_proj = (xs - basis @ y).norm(dim=1).mean(1)
    return y.reshape(N, -1, C, H, W).transpose(1, 2), l_proj


def make_inputs(N, C, K, H, W, D, dtype, device):
    from ...nn.temporal_squeeze import tent_basis

    g = torch.Generator().manual_seed(0)
    dt = dtype_of(dtype)
    bdt = torch.float32 if dt in (torch.float16, torch.bfloat16) else dt
    basis = tent_basis(K, D).expand(N, K, D) + 0.1 * torch.randn(N, K, D, generator=g)
    return {"x": torch.randn(N, C, K, H, W, generator=g).to(device=device, dtype=dt),
            "basis": basis.to(device=device, dtype=bdt)}


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...nn import TemporalSqueezePooling
    from ...reference.temporal_squeeze import temporal_squeeze as reference

    options = options or CaseOptions()
    size = "smoke" if options.smoke else ("quick" if quick else "full")
    out = []
    for (N, C, K, H, W, D) in shapes(size):
        def make_vidops(backend):
            from ... import temporal_squeeze

            return lambda i: temporal_squeeze(i["x"], i["basis"], backend=backend)

        for dtype in options.dtypes:
            for mode in options.modes:
                es = itemsize(dtype)
                x, y = N * C * K * H * W, N * C * D * H * W
                fwd_bytes = es * (x + y)
                providers = {
                    "reference": lambda i: reference(i["x"], i["basis"]),
                    "reference_compiled": lambda i, fn=compiled(reference): fn(i["x"], i["basis"]),
                    "pinv": lambda i: pinv_squeeze(i["x"], i["basis"]),
                }
                providers.update(vidops_providers(OP, device, make_vidops))
                t = []
                if mode == "fwd":
                    t.append(Target("peak_memory", es * y + 2**20,
                                    source="operators.md §0: the forward allocates its outputs only"))
                shape = dict(N=N, C=C, K=K, H=H, W=W, D=D)
                out.append(Case(
                    op=OP, name=f"N={N} C={C} K={K} {H}x{W} D={D}", mode=mode, dtype=dtype,
                    setup=lambda s=(N, C, K, H, W, D), dtype=dtype: make_inputs(*s, dtype, device),
                    providers=providers,
                    bytes=fwd_bytes if mode == "fwd" else fwd_bytes + es * (y + 2 * x),
                    shape=shape, grad_inputs=("x", "basis") if mode == "fwd+bwd" else (), targets=t,
                ))
                if dtype not in ("float32", "float64") or size == "full" and C > 3:
                    continue

                def setup_module(s=(N, C, K, H, W, D), dtype=dtype):
                    torch.manual_seed(0)
                    i = make_inputs(*s, dtype, device)
                    i["module"] = TemporalSqueezePooling(K=s[2], D=s[5]).to(device=device, dtype=dtype_of(dtype))
                    return i

                def make_module(backend):
                    def run(i):
                        i["module"].backend = backend
                        return i["module"](i["x"])
                    return run

                mproviders = {"reference": make_module("reference")}
                mproviders.update(vidops_providers(OP, device, make_module))
                out.append(Case(
                    op=OP, name=f"module N={N} C={C} K={K} {H}x{W} D={D}", mode=mode, dtype=dtype,
                    setup=setup_module, providers=mproviders,
                    bytes=fwd_bytes if mode == "fwd" else fwd_bytes + es * (y + 2 * x),
                    shape={**shape, "module": True}, grad_inputs=("x",) if mode == "fwd+bwd" else (),
                ))
    return out
