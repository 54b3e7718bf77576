"""Benchmark cases of `vidops.depthwise_conv3d` (operators.md §2): RNL's region conv and CPA's pyramid.

Shapes (N, C, T, H x W, kernel; float32):
  rnl_res3   N=8, C=256 (C' of layer2's RNL), T=8, 28x28, 3x7x7
  rnl_res4   N=8, C=512 (C' of layer3's RNL), T=8, 14x14, 3x3x3
  cpa_res3   N=8, C=1 (the channel mean), T=8, 28x28, 3x9x9 (the folded 1+3+7+9 pyramid)
On CPU (and with --quick) N=4: rnl_res3 is then the shape of the CPU target
(fwd+bwd >= 8x PyTorch's grouped conv3d on 2 threads).

Providers:
  reference           F.conv3d(groups=C) (vidops.reference.depthwise_conv3d): plain PyTorch;
  reference_compiled  the same under torch.compile (inductor calls the same ATen conv);
  diagonalwise        the authors' DiagonalwiseRefactorization (grouped conv, 32 channels per
                      group, masked weight: 32x the FLOPs; CUDA only, hopeless on CPU);
  vidops_<backend>    vidops.depthwise_conv3d(..., backend=<backend>).
fwd+bwd: the harness runs the backward for x and weight (grad_inputs).

Traffic: fwd reads x and writes y; fwd+bwd adds reading grad_out and x and writing grad_x.
FLOPs: 2*kt*kh*kw per output element forward, 3x that for fwd+bwd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "depthwise_conv3d"
HALF = ("float16", "bfloat16")


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

    @property
    def taps(self) -> int:
        return self.k[0] * self.k[1] * self.k[2]


def shapes(device: torch.device, quick: bool, smoke: bool = False) -> list:
    if smoke:
        return [Shape("smoke", 1, 4, 3, 6, 7, (3, 3, 3))]
    N = 4 if (quick or device.type != "cuda") else 8
    return [Shape("rnl_res3", N, 256, 8, 28, 28, (3, 7, 7)),
            Shape("rnl_res4", N, 512, 8, 14, 14, (3, 3, 3)),
            Shape("cpa_res3", N, 1, 8, 28, 28, (3, 9, 9))]


def make_inputs(s: Shape, dtype: str, device: torch.device, seed: int = 0) -> dict:
    """x standard normal; weight 0.05 * standard normal, float32 for half-precision x."""
    g = torch.Generator().manual_seed(seed)
    dt = dtype_of(dtype)
    wdt = torch.float32 if dtype in HALF else dt
    x = torch.randn(s.N, s.C, s.T, s.H, s.W, generator=g).to(device=device, dtype=dt)
    w = (0.05 * torch.randn(s.C, *s.k, generator=g)).to(device=device, dtype=wdt)
    return {"x": x, "w": w}


def traffic(s: Shape, dtype: str, mode: str) -> int:
    es = itemsize(dtype)
    w = s.C * s.taps * (4 if dtype in HALF else es)
    return es * 2 * s.numel + w if mode == "fwd" else es * 5 * s.numel + 2 * w


def flop_count(s: Shape, mode: str) -> int:
    fwd = 2 * s.taps * s.numel
    return fwd if mode == "fwd" else 3 * fwd


def targets(s: Shape, mode: str, dtype: str, device: torch.device) -> list:
    t = []
    if device.type == "cpu" and mode == "fwd+bwd" and s.label == "rnl_res3":
        t.append(Target("speedup", 8, "reference", source="CPU fwd+bwd >= 8x grouped conv3d (2 threads)"))
    if mode == "fwd":
        t.append(Target("peak_memory", itemsize(dtype) * s.numel + 2**20 + 1024 * s.C,
                        source="the forward allocates its output and O(C) workspace only"))
    return t


def diagonalwise(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The authors' DiagonalwiseRefactorization: grouped conv, cpg = C // max(C // 32, 1)."""
    from ...nn.region_non_local import depthwise_to_diagonalwise
    from ...reference.depthwise_conv3d import diagonalwise_conv3d

    mask, full = depthwise_to_diagonalwise(w)
    return diagonalwise_conv3d(x, full.to(x.dtype), mask.to(x.dtype))


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...reference.depthwise_conv3d import depthwise_conv3d as reference

    options = options or CaseOptions()

    def make_vidops(backend):
        from ... import depthwise_conv3d

        return lambda i: depthwise_conv3d(i["x"], i["w"], backend=backend)

    out = []
    for s in shapes(device, quick, options.smoke):
        for dtype in options.dtypes:
            for mode in options.modes:
                providers = {
                    "reference": lambda i: reference(i["x"], i["w"]),
                    "reference_compiled": lambda i, f=compiled(reference): f(i["x"], i["w"]),
                }
                if device.type == "cuda" and s.C % (s.C // max(s.C // 32, 1)) == 0:
                    providers["diagonalwise"] = lambda i: diagonalwise(i["x"], i["w"])
                providers.update(vidops_providers(OP, device, make_vidops))
                out.append(Case(
                    op=OP, name=s.name(), mode=mode, dtype=dtype,
                    setup=lambda s=s, dtype=dtype: make_inputs(s, dtype, device),
                    providers=providers,
                    bytes=traffic(s, dtype, mode), flops=flop_count(s, mode),
                    shape=s.as_dict(),
                    grad_inputs=("x", "w") if mode == "fwd+bwd" else (),
                    targets=targets(s, mode, dtype, device),
                    note=("CPU runs N=4, the shape of the issue's CPU target"
                          if device.type == "cpu" and not options.smoke else ""),
                ))
    return out
