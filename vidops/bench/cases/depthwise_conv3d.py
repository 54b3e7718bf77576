"""Benchmark cases of `vidops.depthwise_conv3d` (spec 2): RNL's region conv and CPA's pyramid.

Shapes (N, C, T, H x W, kernel; float32):
  rnl_res3   N=8, C=256 (C' of layer2's RNL), T=8, 28x28, 3x7x7
  rnl_res4   N=8, C=512 (C' of layer3's RNL), T=8, 14x14, 3x3x3
  cpa_res3   N=8, C=1 (the channel mean), T=8, 28x28, 3x9x9 (the folded 1+3+7+9 pyramid)
On CPU (and with --quick) N=4: rnl_res3 is then the shape of the CPU target of issue #4
(fwd+bwd >= 8x PyTorch's grouped conv3d on 2 threads).

Providers:
  reference           F.conv3d(groups=C) (vidops.reference.depthwise_conv3d): plain PyTorch;
  reference_compiled  the same under torch.compile (inductor calls the same ATen conv);
  diagonalwise        the authors' DiagonalwiseRefactorization (grouped conv, 32 channels per
                      group, masked weight: 32x the FLOPs; CUDA only, hopeless on CPU);
  vidops_<backend>    vidops.depthwise_conv3d(..., backend=<backend>).
fwd+bwd providers run their own backward (gradients of x and weight).

Traffic: fwd reads x and writes y; fwd+bwd adds reading grad_out and x and writing grad_x.
FLOPs: 2*kt*kh*kw per output element forward, 3x that for fwd+bwd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import registry
from ..registry import Case

OP = "depthwise_conv3d"


@dataclass(frozen=True)
class Shape:
    label: str
    N: int
    C: int
    T: int
    H: int
    W: int
    k: tuple

    def name(self) -> str:
        return f"{self.label} N={self.N} C={self.C} T={self.T} {self.H}x{self.W} k={'x'.join(map(str, self.k))}"

    def as_dict(self) -> dict:
        return {"N": self.N, "C": self.C, "T": self.T, "H": self.H, "W": self.W, "kernel": list(self.k)}

    @property
    def numel(self) -> int:
        return self.N * self.C * self.T * self.H * self.W


def shapes(device: torch.device, quick: bool, smoke: bool = False) -> list:
    if smoke:
        return [Shape("smoke", 1, 4, 3, 6, 7, (3, 3, 3))]
    N = 4 if (quick or device.type != "cuda") else 8
    return [Shape("rnl_res3", N, 256, 8, 28, 28, (3, 7, 7)),
            Shape("rnl_res4", N, 512, 8, 14, 14, (3, 3, 3)),
            Shape("cpa_res3", N, 1, 8, 28, 28, (3, 9, 9))]


def make_inputs(s: Shape, dtype: torch.dtype, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s.N, s.C, s.T, s.H, s.W, generator=g).to(device=device, dtype=dtype)
    wdtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype  # fp32 master weights
    w = (torch.randn(s.C, *s.k, generator=g) * 0.05).to(device=device, dtype=wdtype)
    grad = torch.randn(s.N, s.C, s.T, s.H, s.W, generator=g).to(device=device, dtype=dtype)
    return {"x": x, "w": w, "grad": grad}


def _fwd_bwd(fn):
    """A provider that runs fn(x, w) and the backward for x and w (its own backward)."""

    def run(i):
        x = i["x"].detach().requires_grad_(True)
        w = i["w"].detach().requires_grad_(True)
        y = fn(x, w)
        y.backward(i["grad"])
        return y, x.grad, w.grad

    return run


def cases(device: torch.device, quick: bool, options=None) -> list:
    from ...ops.depthwise_conv3d import depthwise_conv3d
    from ...reference.depthwise_conv3d import depthwise_conv3d as reference
    from ...reference.depthwise_conv3d import diagonalwise_conv3d, diagonalwise_mask

    dtypes = tuple(getattr(options, "dtypes", ("float32",)))
    modes = tuple(getattr(options, "modes", ("fwd", "fwd+bwd")))
    smoke = bool(getattr(options, "smoke", False))
    compiled = getattr(registry, "compiled", None)
    Target = getattr(registry, "Target", None)
    backends = registry.vidops_backends(OP, device) if hasattr(registry, "vidops_backends") else \
        [b for b in ("cpu", "cuda", "triton") if _available(b, device)]

    out = []
    for s in shapes(device, quick, smoke):
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            if dtype in (torch.float16, torch.bfloat16) and device.type != "cuda":
                continue
            cpg = s.C // max(s.C // 32, 1)

            def diag(x, w, cpg=cpg, s=s):
                mask = diagonalwise_mask(s.C, cpg, s.k, w.dtype, w.device)
                full = torch.zeros(s.C, cpg, *s.k, dtype=w.dtype, device=w.device)
                o = torch.arange(s.C, device=w.device)
                full = full.index_put((o, o % cpg), w)
                return diagonalwise_conv3d(x, full, mask)

            fns = {"reference": reference}
            if compiled is not None:
                fns["reference_compiled"] = compiled(reference)
            if device.type == "cuda" and s.C % cpg == 0:
                fns["diagonalwise"] = diag
            for b in backends:
                fns[f"vidops_{b}"] = (lambda b: lambda x, w: depthwise_conv3d(x, w, backend=b))(b)
            taps = s.k[0] * s.k[1] * s.k[2]
            es = torch.empty((), dtype=dtype).element_size()
            for mode in ("fwd", "fwd+bwd"):
                if mode not in modes:
                    continue
                if mode == "fwd":
                    providers = {k: (lambda f: lambda i: f(i["x"], i["w"]))(f) for k, f in fns.items()}
                    traffic, flops = es * 2 * s.numel, 2 * taps * s.numel
                else:
                    providers = {k: _fwd_bwd(f) for k, f in fns.items()}
                    traffic, flops = es * 5 * s.numel, 6 * taps * s.numel
                kwargs = {}
                if Target is not None and device.type == "cpu" and mode == "fwd+bwd" and s.label == "rnl_res3":
                    kwargs["targets"] = [Target("speedup", 8.0, source="issue #4: CPU fwd+bwd >= 8x grouped conv3d")]
                out.append(Case(op=OP, name=s.name(), mode=mode, dtype=dtype_name,
                                setup=(lambda s=s, dtype=dtype: make_inputs(s, dtype, device)),
                                providers=providers, bytes=traffic + 4 * s.C * taps, flops=flops,
                                shape=s.as_dict(), **kwargs))
    return out


def _available(backend: str, device: torch.device) -> bool:
    from ... import _dispatch, _triton

    if backend == "triton" and device.type != "cuda" and _triton.interpreter():
        return False
    return _dispatch.reasons(OP, device).get(backend) is None
