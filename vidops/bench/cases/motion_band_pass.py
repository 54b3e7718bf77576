"""Benchmark cases of `vidops.motion_band_pass` (operators.md §1.1): the worked example of a case module.

Shapes (N, C, T, H x W, k; spatial padding reflect everywhere):
  stem          N=8, C=3,    T=24, 224x224, k=9, temporal stride 3, "valid"      (the BQN stem)
  lateral_res2  N=8, C=256,  T=8,  56x56,   k=7, temporal stride 1, "replicate"  (BPLC in res2)
  lateral_res4  N=8, C=1024, T=8,  14x14,   k=7, temporal stride 1, "replicate"  (BPLC in res4)
On CPU (and with --quick) N=2 and the stem at 112x112: the shapes the CPU targets are stated on;
the full shapes take minutes per case on 2 cores. Smoke shapes are tiny, for tests only.

Providers:
  reference           vidops.reference.motion_band_pass.motion_band_pass: the authors' code as it
                      runs (pad + depthwise conv2d on every frame, permutes, temporal pad, conv1d);
  reference_compiled  the same under torch.compile;
  temporal_first      the best plain-PyTorch formulation (3-tap temporal filter on T_out frames,
                      then one depthwise conv2d);
  vidops_<backend>    vidops.motion_band_pass(..., backend=<backend>) for each available backend.

Traffic (`bytes`): fwd reads x once and writes the output once; fwd+bwd adds the backward's
minimum (read grad_out and x, write grad_x): 3|x| + 2|out| elements, plus the small weights.
FLOPs: the temporal-first count, 2*(k*k + 3) per output element forward; fwd+bwd counts 3x that
(grad_x and grad_spatial_weight each cost about one forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "motion_band_pass"
HALF = ("float16", "bfloat16")


@dataclass(frozen=True)
class Shape:
    label: str
    N: int
    C: int
    T: int
    H: int
    W: int
    k: int
    stride: int
    temporal_padding: str
    spatial_padding: str = "reflect"
    sigma: float = 1.1

    @property
    def T_out(self) -> int:
        p = 0 if self.temporal_padding == "valid" else 1
        return (self.T + 2 * p - 3) // self.stride + 1

    def name(self) -> str:
        return f"{self.label} N={self.N} C={self.C} T={self.T} {self.H}x{self.W} k={self.k}"

    def as_dict(self) -> dict:
        return {"N": self.N, "C": self.C, "T": self.T, "H": self.H, "W": self.W, "k": self.k,
                "temporal_stride": self.stride, "temporal_padding": self.temporal_padding,
                "spatial_padding": self.spatial_padding, "T_out": self.T_out}

    def args(self) -> tuple:
        return (self.stride, self.spatial_padding, self.temporal_padding)


def stem(size: str) -> Shape:
    N, HW, T = {"full": (8, 224, 24), "quick": (2, 112, 24), "smoke": (1, 16, 6)}[size]
    return Shape("stem", N, 3, T, HW, HW, 9, 3, "valid", sigma=1.1)


def shapes(size: str) -> list:
    """size: "full" (GPU), "quick" (CPU, and --quick) or "smoke" (tests)."""
    lat2 = {"full": (8, 256, 56), "quick": (2, 256, 56), "smoke": (1, 8, 12)}[size]
    lat4 = {"full": (8, 1024, 14), "quick": (2, 1024, 14), "smoke": (1, 16, 8)}[size]
    T = 4 if size == "smoke" else 8
    return [
        stem(size),
        Shape("lateral_res2", lat2[0], lat2[1], T, lat2[2], lat2[2], 7, 1, "replicate", sigma=0.9),
        Shape("lateral_res4", lat4[0], lat4[1], T, lat4[2], lat4[2], 7, 1, "replicate", sigma=0.9),
    ]


def size_of(quick: bool, options: CaseOptions | None) -> str:
    if options is not None and options.smoke:
        return "smoke"
    return "quick" if quick else "full"


def make_inputs(s: Shape, dtype: str, device: torch.device, seed: int = 0) -> dict:
    """x: standard normal clip; weights: the LoG / [-1, 2, -1]/3 initialisation with 1% per-channel
    noise (trained weights diverge across channels). Weights stay float32 for half-precision x."""
    from ...ops import log_kernel, temporal_band_pass_init

    g = torch.Generator().manual_seed(seed)
    dt = dtype_of(dtype)
    wdt = torch.float32 if dtype in HALF else dt
    x = torch.randn(s.N, s.C, s.T, s.H, s.W, generator=g).to(device=device, dtype=dt)
    sw = log_kernel(s.sigma, s.k).expand(s.C, s.k, s.k)
    sw = sw * (1 + 0.01 * torch.randn(s.C, s.k, s.k, generator=g))
    tw = temporal_band_pass_init().expand(s.C, 3) + 0.01 * torch.randn(s.C, 3, generator=g)
    return {"x": x, "sw": sw.to(device=device, dtype=wdt).contiguous(),
            "tw": tw.to(device=device, dtype=wdt).contiguous()}


def traffic(s: Shape, dtype: str, mode: str) -> int:
    es = itemsize(dtype)
    x = s.N * s.C * s.T * s.H * s.W
    out = s.N * s.C * s.T_out * s.H * s.W
    w = s.C * (s.k * s.k + 3) * (4 if dtype in HALF else es)
    if mode == "fwd":
        return es * (x + out) + w
    return es * (3 * x + 2 * out) + 2 * w


def flop_count(s: Shape, mode: str) -> int:
    fwd = s.N * s.C * s.T_out * s.H * s.W * 2 * (s.k * s.k + 3)
    return fwd if mode == "fwd" else 3 * fwd


def memory_allowance(s: Shape, dtype: str, outputs_elems: int) -> int:
    """The forward may allocate its output(s) and O(C) workspace: output bytes + 1 MiB + 1 KiB per
    channel (room for allocator rounding and per-channel weight copies)."""
    return itemsize(dtype) * outputs_elems + 2**20 + 1024 * s.C


def targets(s: Shape, mode: str, dtype: str, device: torch.device, out_elems: int) -> list:
    """The issue's goals for this case on this device (shown, never asserted)."""
    t = []
    issue = "issue: benchmark harness targets"
    if device.type == "cpu":
        if s.label == "stem":
            t.append(Target("speedup", 20 if mode == "fwd" else 10, "reference", source=issue))
        else:
            t.append(Target("speedup", 5, "reference", source=issue))
        t.append(Target("speedup", 1.5, "temporal_first", source=issue))
    else:
        if s.label == "stem":
            t.append(Target("speedup", 5, "reference", source=issue))
            if mode == "fwd" and dtype == "bfloat16":
                t.append(Target("copy_bw", 70, source=issue))
        else:
            t.append(Target("speedup", 3, "reference", source="perf-anchors.md 8 M2 (eager pair >= 3x)"))
    if mode == "fwd":
        t.append(Target("peak_memory", memory_allowance(s, dtype, out_elems),
                        source="issue: forward allocates its output and O(C) workspace only"))
    return t


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...reference.motion_band_pass import motion_band_pass as reference
    from ...reference.motion_band_pass import motion_band_pass_temporal_first as temporal_first

    options = options or CaseOptions()
    size = size_of(quick, options)
    out = []
    for s in shapes(size):
        args = s.args()

        def ref(x, sw, tw, _a=args):
            return reference(x, sw, tw, *_a)

        def tf(x, sw, tw, _a=args):
            return temporal_first(x, sw, tw, *_a)

        def make_vidops(backend, _a=args):
            from ... import motion_band_pass

            return lambda i: motion_band_pass(i["x"], i["sw"], i["tw"], *_a, backend=backend)

        for dtype in options.dtypes:
            for mode in options.modes:
                providers = {
                    "reference": lambda i, f=ref: f(i["x"], i["sw"], i["tw"]),
                    "reference_compiled": lambda i, f=compiled(ref): f(i["x"], i["sw"], i["tw"]),
                    "temporal_first": lambda i, f=tf: f(i["x"], i["sw"], i["tw"]),
                }
                providers.update(vidops_providers(OP, device, make_vidops))
                out_elems = s.N * s.C * s.T_out * s.H * s.W
                out.append(Case(
                    op=OP, name=s.name(), mode=mode, dtype=dtype,
                    setup=lambda s=s, dtype=dtype: make_inputs(s, dtype, device),
                    providers=providers,
                    bytes=traffic(s, dtype, mode), flops=flop_count(s, mode),
                    shape=s.as_dict(),
                    grad_inputs=("x", "sw", "tw") if mode == "fwd+bwd" else (),
                    targets=targets(s, mode, dtype, device, out_elems),
                    note=("CPU runs the N=2 shapes the CPU targets are stated on"
                          if size == "quick" and device.type == "cpu" else ""),
                ))
    return out
