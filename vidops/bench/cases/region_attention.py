"""Benchmark cases of `vidops.region_attention` (operators.md §5.1): the attention of the RNL block.

Shapes (keys = queries as in RNL, d = dv = C/2; q, v in the block's (N, d, L) = flattened
(N, d, T, H, W) layout, logits of standard deviation ~1):
  res3      N=8, d=256, T=8,  28x28  (L=6272)
  res4      N=8, d=512, T=8,  14x14  (L=1568)
  res3_T16  N=8, d=256, T=16, 28x28  (L=12544)
  res4_T16  N=8, d=512, T=16, 14x14  (L=3136)
On CPU (and with --quick) res3 runs with N=1 and res4 with N=2, and the T=16 shapes are left out:
one res3 forward is ~40 GFLOP per sample, about a second on 2 cores, and the reference's L x L
fp32 map at T=16 is 629 MB per sample. Smoke shapes are tiny, for tests only.

Attention modes: "softmax" (every shape), "dot" (every shape; the O(L d^2) associativity path
against the authors' O(L^2 d) formula) and "relu" (res3).

Providers:
  reference           vidops.reference.region_attention: the authors' bmm -> softmax over keys ->
                      bmm in the input dtype (materialises L x L);
  reference_compiled  the same under torch.compile;
  sdpa                F.scaled_dot_product_attention(scale=1.0) on (N, 1, L, d) contiguous copies
                      (the copies from the block's layout are part of its cost); softmax only;
  vidops_<backend>    vidops.region_attention(..., backend=<backend>).

FLOPs: the attention's nominal count 2 L^2 (d + dv) per sample forward (4 L^2 d for d = dv), the
flash-attention convention of 2.5x that for the backward (fwd+bwd = 3.5x). "dot" reports the same
nominal count (an effective rate: its vidops path does 4 L d dv). Traffic: q, v read and y
written once forward; the backward adds reading dy, q, v, y and writing dq, dv.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "region_attention"
ISSUE = "region_attention goals"


@dataclass(frozen=True)
class Shape:
    label: str
    N: int
    d: int
    T: int
    H: int
    W: int

    @property
    def L(self) -> int:
        return self.T * self.H * self.W

    def name(self, mode: str) -> str:
        return f"{self.label} {mode} N={self.N} d={self.d} T={self.T} {self.H}x{self.W} L={self.L}"

    def as_dict(self, mode: str) -> dict:
        return {"N": self.N, "d": self.d, "dv": self.d, "T": self.T, "H": self.H, "W": self.W, "L": self.L,
                "attention": mode, "keys": "queries (k=None)"}


def shapes(size: str) -> list:
    """size: "full" (GPU), "quick" (CPU, and --quick) or "smoke" (tests)."""
    if size == "smoke":
        return [Shape("res3", 1, 16, 2, 4, 4), Shape("res4", 1, 32, 2, 3, 3)]
    if size == "quick":
        return [Shape("res3", 1, 256, 8, 28, 28), Shape("res4", 2, 512, 8, 14, 14)]
    return [Shape("res3", 8, 256, 8, 28, 28), Shape("res4", 8, 512, 8, 14, 14),
            Shape("res3_T16", 8, 256, 16, 28, 28), Shape("res4_T16", 8, 512, 16, 14, 14)]


def attention_modes(s: Shape) -> tuple:
    return ("softmax", "dot", "relu") if s.label == "res3" else ("softmax", "dot")


def size_of(quick: bool, options: CaseOptions | None) -> str:
    if options is not None and options.smoke:
        return "smoke"
    return "quick" if quick else "full"


def make_inputs(s: Shape, dtype: str, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    dt = dtype_of(dtype)
    q = torch.randn(s.N, s.d, s.L, generator=g) * s.d ** -0.25
    v = torch.randn(s.N, s.d, s.L, generator=g)
    return {"q": q.to(device=device, dtype=dt), "v": v.to(device=device, dtype=dt)}


def flop_count(s: Shape, mode: str) -> int:
    fwd = s.N * 2 * s.L * s.L * (s.d + s.d)
    return fwd if mode == "fwd" else int(3.5 * fwd)


def traffic(s: Shape, dtype: str, mode: str) -> int:
    es = itemsize(dtype)
    io = s.N * s.L * s.d
    return es * 3 * io if mode == "fwd" else es * 10 * io


def memory_allowance(s: Shape, dtype: str, device: torch.device) -> int:
    """O(L d): the output, per-query statistics and (CPU) fp32 working copies and one query-chunk
    logit block (2^23 logits); the reference's L x L fp32 maps are N L^2 4 bytes."""
    ops = importlib.import_module("vidops.ops.region_attention")
    io = s.N * s.L * s.d
    if device.type == "cuda":  # y (and, for "dot", one more y-sized GEMM output), stats
        return 2 * itemsize(dtype) * io + 16 * s.N * s.L + 2 ** 21
    return 4 * 6 * io + 4 * 2 * ops.CHUNK_ELEMENTS + 2 ** 21


def targets(s: Shape, att: str, mode: str, dtype: str, device: torch.device) -> list:
    """The issue's goals (shown, never asserted)."""
    t = []
    if att == "dot" and s.label == "res3":
        t.append(Target("speedup", 20, "reference", source=ISSUE + ' ("dot" >= 20x the reference at L=6272)'))
    if att == "softmax":
        if device.type == "cpu":
            t.append(Target("speedup", 1.0, "sdpa", source=ISSUE + " (CPU softmax not slower than SDPA)"))
        elif mode == "fwd" and dtype == "bfloat16" and s.label == "res3":
            t.append(Target("tflops", 400, source=ISSUE + " (bf16 d=256 L=6272 fwd >= 400 TFLOP/s)"))
            t.append(Target("speedup", 1.0, "sdpa", source=ISSUE + " (not slower than SDPA)"))
        elif mode == "fwd" and s.label == "res4":
            t.append(Target("speedup", 1.5, "sdpa", source=ISSUE + " (d=512 L=1568 fwd >= 1.5x SDPA)"))
            t.append(Target("speedup", 1.2, "reference", source=ISSUE + " (d=512 L=1568 fwd >= 1.2x reference)"))
    if mode == "fwd":
        t.append(Target("peak_memory", memory_allowance(s, dtype, device),
                        source="operators.md §5.1: never materialise L x L"))
    return t


def _sdpa(q, v):
    qt = q.transpose(1, 2).unsqueeze(1).contiguous()
    vt = v.transpose(1, 2).unsqueeze(1).contiguous()
    return F.scaled_dot_product_attention(qt, qt, vt, scale=1.0).squeeze(1).transpose(1, 2)


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...reference.region_attention import region_attention as reference

    options = options or CaseOptions()
    size = size_of(quick, options)
    out = []
    for s in shapes(size):
        for att in attention_modes(s):
            def ref(q, v, _att=att):
                return reference(q, v, None, _att)

            def make_vidops(backend, _att=att):
                from ... import region_attention

                return lambda i: region_attention(i["q"], i["v"], None, _att, backend=backend)

            for dtype in options.dtypes:
                for mode in options.modes:
                    providers = {
                        "reference": lambda i, f=ref: f(i["q"], i["v"]),
                        "reference_compiled": lambda i, f=compiled(ref): f(i["q"], i["v"]),
                    }
                    if att == "softmax":
                        providers["sdpa"] = lambda i: _sdpa(i["q"], i["v"])
                    providers.update(vidops_providers(OP, device, make_vidops))
                    out.append(Case(
                        op=OP, name=s.name(att), mode=mode, dtype=dtype,
                        setup=lambda s=s, dtype=dtype: make_inputs(s, dtype, device),
                        providers=providers,
                        bytes=traffic(s, dtype, mode), flops=flop_count(s, mode),
                        shape=s.as_dict(att),
                        grad_inputs=("q", "v") if mode == "fwd+bwd" else (),
                        targets=targets(s, att, mode, dtype, device),
                        note=("CPU: res3 with N=1, res4 with N=2, no T=16 (seconds per call on 2 cores)"
                              if size == "quick" and device.type == "cpu" else ""),
                    ))
    return out
