"""Benchmark cases of `vidops.depthwise_conv3d` (operators.md §2): RNL's region conv, CPA's pyramid
and X3D-M's channel-wise convolutions.

Shapes (N, C, T, H x W, kernel; float32):
  rnl_res3   N=8, C=256 (C' of layer2's RNL), T=8, 28x28, 3x7x7
  rnl_res4   N=8, C=512 (C' of layer3's RNL), T=8, 14x14, 3x3x3
  cpa_res3   N=8, C=1 (the channel mean), T=8, 28x28, 3x9x9 (the folded 1+3+7+9 pyramid)
On CPU (and with --quick) N=4: rnl_res3 is then the shape of the CPU target
(fwd+bwd >= 8x PyTorch's grouped conv3d on 2 threads).
  x3d_*      X3D-M's depthwise layers at 16 x 224^2, N=1 (CPU) / 8 (CUDA): 3x3x3 padding 1 at each
             stage's resolution (stride 1) and from the previous one (stride (1, 2, 2), the stage's
             first block): C 54 at 56^2 (112^2 -> 56^2), C 108 at 28^2 (56^2 -> 28^2), C 216 at
             14^2 (28^2 -> 14^2), C 432 at 7^2 (14^2 -> 7^2); the stem's 5x1x1 padding (2, 0, 0)
             at C 24, 112^2. Providers there: "reference" is nn.Conv3d(groups=C) on NCDHW x (as
             pytorchvideo runs it), "conv3d_cl3d" the same on channels_last_3d x; vidops_<backend>
             and vidops_<backend>_cl3d take x in those two layouts. CPU targets: forward >= 1.2x
             and fwd+bwd >= 4x both PyTorch layouts.

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
    stride: tuple = (1, 1, 1)
    padding: tuple = None  # None: "same"

    @property
    def pad(self) -> tuple:
        return self.padding if self.padding is not None else tuple((k - 1) // 2 for k in self.k)

    @property
    def out_size(self) -> tuple:
        return tuple((L + 2 * p - k) // s + 1 for L, k, s, p in zip((self.T, self.H, self.W), self.k, self.stride,
                                                                    self.pad))

    def name(self) -> str:
        s = f"{self.label} N={self.N} C={self.C} T={self.T} {self.H}x{self.W} k={'x'.join(map(str, self.k))}"
        if self.stride != (1, 1, 1):
            s += f" s={'x'.join(map(str, self.stride))}"
        if self.padding is not None:
            s += f" p={'x'.join(map(str, self.padding))}"
        return s

    def as_dict(self) -> dict:
        d = {"N": self.N, "C": self.C, "T": self.T, "H": self.H, "W": self.W, "kernel": list(self.k)}
        if self.stride != (1, 1, 1) or self.padding is not None:
            d.update(stride=list(self.stride), padding=list(self.pad))
        return d

    @property
    def x3d(self) -> bool:
        return self.label.startswith("x3d")

    @property
    def numel(self) -> int:
        return self.N * self.C * self.T * self.H * self.W

    @property
    def out_numel(self) -> int:
        To, Ho, Wo = self.out_size
        return self.N * self.C * To * Ho * Wo

    @property
    def taps(self) -> int:
        return self.k[0] * self.k[1] * self.k[2]


def shapes(device: torch.device, quick: bool, smoke: bool = False) -> list:
    if smoke:
        return [Shape("smoke", 1, 4, 3, 6, 7, (3, 3, 3))]
    N = 4 if (quick or device.type != "cuda") else 8
    return [Shape("rnl_res3", N, 256, 8, 28, 28, (3, 7, 7)),
            Shape("rnl_res4", N, 512, 8, 14, 14, (3, 3, 3)),
            Shape("cpa_res3", N, 1, 8, 28, 28, (3, 9, 9))] + x3d_shapes(1 if device.type != "cuda" else 8)


def x3d_shapes(N: int) -> list:
    """X3D-M's depthwise layers at 16 x 224^2 (see the module docstring)."""
    k3, s2 = (3, 3, 3), (1, 2, 2)
    out = [Shape("x3d_stem", N, 24, 16, 112, 112, (5, 1, 1), padding=(2, 0, 0))]
    for stage, C, size in ((2, 54, 56), (3, 108, 28), (4, 216, 14), (5, 432, 7)):
        out.append(Shape(f"x3d_res{stage}", N, C, 16, size, size, k3))
        out.append(Shape(f"x3d_res{stage}_s2", N, C, 16, 2 * size, 2 * size, k3, s2))
    return out


def make_inputs(s: Shape, dtype: str, device: torch.device, seed: int = 0) -> dict:
    """x standard normal; weight 0.05 * standard normal, float32 for half-precision x; the X3D
    cases also x_cl, the same x in channels_last_3d."""
    g = torch.Generator().manual_seed(seed)
    dt = dtype_of(dtype)
    wdt = torch.float32 if dtype in HALF else dt
    x = torch.randn(s.N, s.C, s.T, s.H, s.W, generator=g).to(device=device, dtype=dt)
    w = (0.05 * torch.randn(s.C, *s.k, generator=g)).to(device=device, dtype=wdt)
    if s.x3d:
        return {"x": x, "x_cl": x.clone(memory_format=torch.channels_last_3d), "w": w}
    return {"x": x, "w": w}


def traffic(s: Shape, dtype: str, mode: str) -> int:
    """fwd: x read, y written; fwd+bwd adds grad_y and x read, grad_x written."""
    es = itemsize(dtype)
    w = s.C * s.taps * (4 if dtype in HALF else es)
    fwd = es * (s.numel + s.out_numel) + w
    return fwd if mode == "fwd" else fwd + es * (2 * s.numel + s.out_numel) + w


def flop_count(s: Shape, mode: str) -> int:
    """2 * taps per output element forward; grad_x and grad_weight as much again each."""
    fwd = 2 * s.taps * s.out_numel
    return fwd if mode == "fwd" else 3 * fwd


def targets(s: Shape, mode: str, dtype: str, device: torch.device) -> list:
    t = []
    if s.x3d:
        if device.type == "cpu" and dtype == "float32":
            v = 1.2 if mode == "fwd" else 4
            src = f"CPU {mode} >= {v}x nn.Conv3d(groups=C), the faster of NCDHW and channels_last_3d (2 threads)"
            t += [Target("speedup", v, "reference", source=src), Target("speedup", v, "conv3d_cl3d", source=src)]
        elif device.type == "cuda":
            if mode == "fwd":
                t.append(Target("copy_bw", 70, source="GPU forward >= 70% of HBM bandwidth"))
            else:
                src = "GPU fwd+bwd >= 3x nn.Conv3d(groups=C), the faster of NCDHW and channels_last_3d"
                t += [Target("speedup", 3, "reference", source=src), Target("speedup", 3, "conv3d_cl3d", source=src)]
        return t
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

    def make_x3d(backend, key):
        from ... import depthwise_conv3d

        return lambda i, s: depthwise_conv3d(i[key], i["w"], None, s.stride, s.pad, backend=backend)

    def conv3d(key):
        # the weight in x's dtype: it is float32 for half x, and F.conv3d refuses the mix on GPUs
        return lambda i, s: torch.nn.functional.conv3d(i[key], i["w"].to(i[key].dtype).unsqueeze(1), None, s.stride,
                                                       s.pad, 1, s.C)

    out = []
    for s in shapes(device, quick, options.smoke):
        if s.x3d:
            for dtype in options.dtypes:
                for mode in options.modes:
                    fns = {"reference": conv3d("x"), "conv3d_cl3d": conv3d("x_cl")}
                    for b in vidops_providers(OP, device, lambda b: b):
                        fns[b] = make_x3d(b[len("vidops_"):], "x")
                        fns[b + "_cl3d"] = make_x3d(b[len("vidops_"):], "x_cl")
                    out.append(Case(
                        op=OP, name=s.name(), mode=mode, dtype=dtype,
                        setup=lambda s=s, dtype=dtype: make_inputs(s, dtype, device),
                        providers={n: (lambda i, f=f, s=s: f(i, s)) for n, f in fns.items()},
                        bytes=traffic(s, dtype, mode), flops=flop_count(s, mode), shape=s.as_dict(),
                        grad_inputs=("x", "x_cl", "w") if mode == "fwd+bwd" else (),
                        targets=targets(s, mode, dtype, device),
                        note="X3D-M layer; reference = nn.Conv3d(groups=C) on NCDHW x",
                        # the targets compare providers a few percent apart on a VM whose speed
                        # drifts by more than that between one provider's run and the next
                        interleave=True,
                    ))
            continue
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
