"""Benchmark cases of `vidops.pixelwise_temporal_projection` (operators.md §3.2) and of the
PixelWiseTemporalProjection module (operators.md §3.3).

Shapes (x (N, C, T, H, W); basis (N, T*D, h, w), upsampled in the kernel):
  GPU (full):   N=64, C=3, T=8, 224x224, D=1 and D=3, basis 28x28 (x8)
  CPU (quick):  N=4,  C=3, T=8, 112x112, D=3, basis 14x14 (x8) (and D=1 for the op)
  smoke:        N=1,  C=3, T=4, 16x16,   D=1, basis 2x2
The module cases run the default module (config #7: k=9, stride 8, C'=24) on the same clips.

Providers (op):
  reference           vidops.reference: the formulation a user writes from the thesis:
                      F.interpolate the basis to (H, W), then torch.linalg.solve of the (regularised)
                      D x D normal equations per pixel, p = x - A y, mean and squared norm;
  reference_compiled  the same under torch.compile;
  pinv                the same with torch.linalg.pinv(A) per pixel (y = A^+ x, unregularised);
  vidops_<backend>    vidops.pixelwise_temporal_projection(..., backend=<backend>).
Providers (module): "reference" runs the module's parameters through plain PyTorch (conv, the
reference temporal relation, the MLP, the reference projection; autograd for fwd+bwd);
"reference_compiled" the same compiled; "vidops_<backend>" the module with that backend. The
module's fwd+bwd is a training step: backward to the module's parameters (the clip needs no grad).

Traffic (`bytes`): fwd reads x and the low-res basis once and writes pbar and enopr; fwd+bwd adds
the backward's reads (grad_pbar, x, basis) and writes (grad_x, grad_basis).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "pixelwise_temporal_projection"
ISSUE = "PWTP and TSP goals"


@dataclass(frozen=True)
class Shape:
    N: int
    C: int
    T: int
    H: int
    W: int
    D: int
    h: int
    w: int

    def name(self, prefix: str = "") -> str:
        return (f"{prefix}N={self.N} C={self.C} T={self.T} {self.H}x{self.W} D={self.D} "
                f"basis {self.h}x{self.w}")

    def as_dict(self) -> dict:
        return dict(N=self.N, C=self.C, T=self.T, H=self.H, W=self.W, D=self.D, h=self.h, w=self.w)


def shapes(size: str) -> list:
    if size == "full":
        return [Shape(64, 3, 8, 224, 224, 1, 28, 28), Shape(64, 3, 8, 224, 224, 3, 28, 28)]
    if size == "quick":
        return [Shape(4, 3, 8, 112, 112, 3, 14, 14), Shape(4, 3, 8, 112, 112, 1, 14, 14)]
    return [Shape(1, 3, 4, 16, 16, 1, 2, 2)]


def size_of(quick: bool, options) -> str:
    if options is not None and options.smoke:
        return "smoke"
    return "quick" if quick else "full"


def make_inputs(s: Shape, dtype: str, device: torch.device, seed: int = 0) -> dict:
    """x: standard normal clip; basis: a random basis around orthonormal DCT columns (the
    module's initialisation), so the Gram matrices are well conditioned as after training."""
    from ...nn.pixelwise_temporal_projection import dct_basis

    g = torch.Generator().manual_seed(seed)
    dt = dtype_of(dtype)
    bdt = torch.float32 if dt in (torch.float16, torch.bfloat16) else dt
    x = torch.randn(s.N, s.C, s.T, s.H, s.W, generator=g)
    basis = dct_basis(s.T, s.D).reshape(1, s.T * s.D, 1, 1) + 0.3 * torch.randn(s.N, s.T * s.D, s.h, s.w, generator=g)
    return {"x": x.to(device=device, dtype=dt), "basis": basis.to(device=device, dtype=bdt)}


def pinv_projection(x, basis):
    """pbar and enopr with y = pinv(A) x per pixel (the thesis's (A^T A)^-1 A^T x, unregularised)."""
    from ...reference.pixelwise_temporal_projection import compute_dtype, per_pixel_basis

    N, C, T, H, W = x.shape
    dt = compute_dtype(x.dtype)
    A = per_pixel_basis(basis.to(dt), T, H, W)           # (N, H, W, T, D)
    xs = x.to(dt).permute(0, 3, 4, 2, 1)                 # (N, H, W, T, C)
    p = xs - A @ (torch.linalg.pinv(A) @ xs)
    return p.mean(3).permute(0, 3, 1, 2).to(x.dtype), p.square().sum((1, 2, 3, 4)) / (H * W * C)


def traffic(s: Shape, dtype: str, mode: str) -> int:
    es = itemsize(dtype)
    bs = 4 if dtype in ("float16", "bfloat16") else es
    x = s.N * s.C * s.T * s.H * s.W
    basis = s.N * s.T * s.D * s.h * s.w
    pbar = s.N * s.C * s.H * s.W
    fwd = es * (x + pbar) + bs * basis
    if mode == "fwd":
        return fwd
    return fwd + es * (pbar + 2 * x) + 2 * bs * basis


def op_targets(s: Shape, mode: str, dtype: str, device: torch.device) -> list:
    t = []
    if device.type == "cpu" and dtype == "float32":
        t.append(Target("speedup", 10 if mode == "fwd" else 5, "reference", source=ISSUE))
    if mode == "fwd":
        out = itemsize(dtype) * s.N * s.C * s.H * s.W + 8 * s.N
        t.append(Target("peak_memory", out + 2**20, source=ISSUE + ": the forward allocates only its outputs"))
    return t


# ---- the module ---------------------------------------------------------------------------------

def reference_module(m, x):
    """The PWTP module's forward as plain PyTorch with the module's parameters (what a user writes
    from the thesis): conv on every frame, the temporal relation by products and means, the MLP,
    then interpolate + solve per pixel."""
    from ...reference.pixelwise_temporal_projection import pixelwise_temporal_projection as proj
    from ...reference.temporal_relation import temporal_relation as trel

    N, C, T, H, W = x.shape
    frames = x.transpose(1, 2).reshape(N * T, C, H, W)
    f = m.conv(frames)
    f = f.reshape(N, T, *f.shape[1:]).transpose(1, 2)
    basis = m.fc_out(m.blocks(F.gelu(m.fc_in(trel(f)))))
    return proj(x, basis, m.eps)


def _training_step(forward):
    """fwd+bwd of the module as it trains: the clip needs no gradient; the loss
    sum(pbar * g_pbar) + sum(enopr * g_enopr) (fixed random g) is backpropagated to the module's
    parameters, whose .grad is cleared first."""
    def run(i):
        for p in i["module"].parameters():
            p.grad = None
        pbar, enopr = forward(i)
        torch.autograd.backward((pbar, enopr), (i["g_pbar"], i["g_enopr"]))
        return pbar, enopr
    return run


def module_cases(size: str, device: torch.device, options: CaseOptions) -> list:
    from ...nn import PixelWiseTemporalProjection

    out = []
    for s in shapes(size)[:1]:
        for dtype in options.dtypes:
            if dtype not in ("float32", "float64"):
                continue
            for mode in options.modes:
                def setup(s=s, dtype=dtype):
                    torch.manual_seed(0)
                    m = PixelWiseTemporalProjection(in_channels=s.C, T=s.T, D=s.D)
                    m = m.to(device=device, dtype=dtype_of(dtype))
                    inputs = make_inputs(s, dtype, device)
                    inputs["module"] = m
                    g = torch.Generator().manual_seed(1)
                    dt = dtype_of(dtype)
                    inputs["g_pbar"] = torch.randn(s.N, s.C, s.H, s.W, generator=g).to(device=device, dtype=dt)
                    inputs["g_enopr"] = torch.randn(s.N, generator=g).to(device=device, dtype=dt)
                    return inputs

                def make_vidops(backend):
                    def run(i):
                        i["module"].backend = backend
                        return i["module"](i["x"])
                    return run

                ref = lambda i: reference_module(i["module"], i["x"])  # noqa: E731
                comp = lambda i, f=compiled(reference_module): f(i["module"], i["x"])  # noqa: E731
                providers = {"reference": ref, "reference_compiled": comp}
                providers.update(vidops_providers(OP, device, make_vidops))
                if mode == "fwd+bwd":
                    providers = {k: _training_step(f) for k, f in providers.items()}
                t = []
                if device.type == "cpu" and dtype == "float32":
                    t.append(Target("speedup", 3, "reference", source=ISSUE + ": the module"))
                out.append(Case(
                    op=OP, name=s.name("module config#7 "), mode=mode, dtype=dtype, setup=setup,
                    providers=providers, bytes=traffic(s, dtype, "fwd"), shape={**s.as_dict(), "module": True},
                    targets=t,
                    note=("fwd+bwd: a training step, gradients of the module's parameters (the clip needs none)"
                          if mode == "fwd+bwd" else ""),
                ))
    return out


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...reference.pixelwise_temporal_projection import pixelwise_temporal_projection as reference

    options = options or CaseOptions()
    size = size_of(quick, options)
    out = []
    for s in shapes(size):
        def make_vidops(backend):
            from ... import pixelwise_temporal_projection

            return lambda i: pixelwise_temporal_projection(i["x"], i["basis"], backend=backend)

        for dtype in options.dtypes:
            for mode in options.modes:
                providers = {
                    "reference": lambda i: reference(i["x"], i["basis"]),
                    "reference_compiled": lambda i, f=compiled(reference): f(i["x"], i["basis"]),
                    "pinv": lambda i: pinv_projection(i["x"], i["basis"]),
                }
                providers.update(vidops_providers(OP, device, make_vidops))
                out.append(Case(
                    op=OP, name=s.name(), mode=mode, dtype=dtype,
                    setup=lambda s=s, dtype=dtype: make_inputs(s, dtype, device),
                    providers=providers, bytes=traffic(s, dtype, mode), shape=s.as_dict(),
                    grad_inputs=("x", "basis") if mode == "fwd+bwd" else (),
                    targets=op_targets(s, mode, dtype, device),
                    note=("CPU runs the N=4 112x112 shapes the CPU targets are stated on"
                          if size == "quick" and device.type == "cpu" else ""),
                ))
    out.extend(module_cases(size, device, options))
    return out
