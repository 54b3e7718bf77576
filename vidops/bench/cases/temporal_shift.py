"""Benchmark cases of `vidops.temporal_shift`: TSM's shift of a ResNet-50 res2 activation
x (N*T, C=256, 56, 56) with T=8 segments, fold_div=8.

Shapes: GPU (full) N*T = 64 (8 clips of 8 frames); CPU (quick) N*T = 16 (2 clips); smoke
N*T = 4, C=16, 5x7 with T=2.

Providers: "reference" (the slice-copy form TSM's code runs: zeros_like and three slice copies,
vidops.reference.temporal_shift.temporal_shift_slice_copy), "reference_compiled", "cat" (the
out-of-place slices + torch.cat form, vidops's reference backend), and "vidops_<backend>".
"""
from __future__ import annotations

import torch

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "temporal_shift"


def shapes(size: str) -> list:
    """(N*T, C, H, W, T) per case."""
    if size == "full":
        return [(64, 256, 56, 56, 8)]
    if size == "quick":
        return [(16, 256, 56, 56, 8)]
    return [(4, 16, 5, 7, 2)]


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...reference.temporal_shift import temporal_shift as cat_shift
    from ...reference.temporal_shift import temporal_shift_slice_copy

    options = options or CaseOptions()
    size = "smoke" if options.smoke else ("quick" if quick else "full")
    fold_div = 8
    out = []
    for (NT, C, H, W, T) in shapes(size):

        def make_vidops(backend, T=T):
            from ... import temporal_shift

            return lambda i: temporal_shift(i["x"], T, fold_div, backend=backend)

        for dtype in options.dtypes:
            for mode in options.modes:
                es = itemsize(dtype)
                fwd_bytes = 2 * es * NT * C * H * W   # read x once, write out once
                providers = {
                    "reference": lambda i, T=T: temporal_shift_slice_copy(i["x"], T, fold_div),
                    "reference_compiled": lambda i, T=T, fn=compiled(temporal_shift_slice_copy):
                        fn(i["x"], T, fold_div),
                    "cat": lambda i, T=T: cat_shift(i["x"], T, fold_div),
                }
                providers.update(vidops_providers(OP, device, make_vidops))
                targets = [Target("copy_bw", 80, source="a shift is a copy: it should run near copy bandwidth")]
                if mode == "fwd":
                    targets.append(Target("peak_memory", es * NT * C * H * W + 2**20,
                                          source="the forward allocates its output only"))
                out.append(Case(
                    op=OP, name=f"N*T={NT} C={C} {H}x{W} T={T}", mode=mode, dtype=dtype,
                    setup=lambda NT=NT, C=C, H=H, W=W, dtype=dtype: {
                        "x": torch.randn(NT, C, H, W, generator=torch.Generator().manual_seed(0))
                        .to(device=device, dtype=dtype_of(dtype))},
                    providers=providers,
                    bytes=fwd_bytes if mode == "fwd" else 2 * fwd_bytes,
                    shape=dict(NT=NT, C=C, H=H, W=W, T=T, fold_div=fold_div),
                    grad_inputs=("x",) if mode == "fwd+bwd" else (), targets=targets,
                ))
    return out
