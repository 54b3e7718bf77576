"""Benchmark cases of the whole region non-local block (`vidops.nn.RegionNonLocal`, operators.md §5.2).

The block z = BN(W0 y + b0) + x with y = region_attention(P, V), V = theta(x), P = F_theta(V).

Shapes (the TSM-ResNet-50 stages the thesis puts RNL blocks in, C' = C / 2):
  res3  N=8, C=512,  T=8, 28x28, region kernel 3x7x7  (L=6272, d=256)
  res4  N=8, C=1024, T=8, 14x14, region kernel 3x3x3  (L=1568, d=512)
On CPU (and with --quick) res3 runs with N=1 and res4 with N=2 (as the region_attention cases).

Providers:
  reference           the authors' ops/rnl.py block as it runs: theta conv, the "diagonalwise"
                      region conv (a grouped conv with a 0/1 mask, groups = C'/32), bmm -> softmax
                      over keys -> bmm, W conv + BN, residual;
  reference_compiled  the same under torch.compile;
  vidops_<backend>    vidops.nn.RegionNonLocal with the same (converted) weights, attention on
                      that region_attention backend (the region conv on its default backend).
BN runs in training mode (batch statistics) with gamma = 1 and beta = 0, as in a trained block, so
the attention path is not multiplied by the initial zero gamma. fwd+bwd is a training step: the
gradients of x and of every parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..registry import Case, CaseOptions, Target, compiled, dtype_of, itemsize, vidops_providers

OP = "region_non_local"
ATTENTION_OP = "region_attention"
ISSUE = "RegionNonLocal block goals"


@dataclass(frozen=True)
class Shape:
    label: str
    N: int
    C: int
    T: int
    H: int
    W: int
    kernel: tuple

    @property
    def L(self) -> int:
        return self.T * self.H * self.W

    def name(self) -> str:
        k = "x".join(map(str, self.kernel))
        return f"{self.label} block N={self.N} C={self.C} T={self.T} {self.H}x{self.W} k={k} L={self.L}"

    def as_dict(self) -> dict:
        return {"N": self.N, "C": self.C, "d": self.C // 2, "T": self.T, "H": self.H, "W": self.W,
                "L": self.L, "kernel": list(self.kernel), "attention": "softmax", "module": True}


def shapes(size: str) -> list:
    if size == "smoke":
        return [Shape("res3", 1, 64, 2, 5, 5, (3, 3, 3))]
    if size == "quick":
        return [Shape("res3", 1, 512, 8, 28, 28, (3, 7, 7)), Shape("res4", 2, 1024, 8, 14, 14, (3, 3, 3))]
    return [Shape("res3", 8, 512, 8, 28, 28, (3, 7, 7)), Shape("res4", 8, 1024, 8, 14, 14, (3, 3, 3))]


def reference_block(x, p):
    """The authors' block (ops/rnl.py, activation='softmax', use_norm=False) on the parameters p."""
    v = F.conv3d(x, p["theta.weight"], p["theta.bias"])
    pad = tuple((k - 1) // 2 for k in p["penta.weight"].shape[2:])
    groups = v.shape[1] // p["penta.weight"].shape[1]
    pe = F.conv3d(v, p["penta.weight"] * p["penta.mask"], padding=pad, groups=groups)
    N, d = v.shape[:2]
    pf, vf = pe.reshape(N, d, -1), v.reshape(N, d, -1)
    a = torch.softmax(torch.bmm(pf.transpose(1, 2), pf), dim=1)       # (N, keys, queries)
    y = torch.bmm(vf, a).reshape(v.shape)
    z = F.conv3d(y, p["W.0.weight"], p["W.0.bias"])
    z = F.batch_norm(z, p["W.1.running_mean"], p["W.1.running_var"], p["W.1.weight"], p["W.1.bias"],
                     training=True, momentum=0.1, eps=1e-5)
    return z + x


def reference_state(m) -> dict:
    """The module's weights in the reference's format (grouped penta.weight + penta.mask) as
    tensors that require grad where the reference trains them."""
    from ...nn.region_non_local import depthwise_to_diagonalwise

    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    mask, w = depthwise_to_diagonalwise(sd["penta.weight"])
    sd["penta.weight"], sd["penta.mask"] = w, mask
    for k in ("theta.weight", "theta.bias", "penta.weight", "W.0.weight", "W.0.bias", "W.1.weight", "W.1.bias"):
        sd[k].requires_grad_(True)
    return sd


def traffic(s: Shape, dtype: str, mode: str) -> int:
    """x read, z written, and the block's d-channel intermediates (V, P, y) each written and read
    once: the least a non-fused block moves."""
    es = itemsize(dtype)
    io = s.N * s.L * (2 * s.C + 6 * (s.C // 2))
    return es * io if mode == "fwd" else 3 * es * io


def flop_count(s: Shape) -> int:
    d = s.C // 2
    return s.N * (4 * s.L * s.L * d + 2 * 2 * s.L * s.C * d)   # attention + the two 1x1 convs


def _size(quick: bool, options: CaseOptions) -> str:
    return "smoke" if options.smoke else ("quick" if quick else "full")


def cases(device: torch.device, quick: bool, options: CaseOptions | None = None) -> list:
    from ...nn import RegionNonLocal

    options = options or CaseOptions()
    out = []
    for s in shapes(_size(quick, options)):
        for dtype in options.dtypes:
            for mode in options.modes:
                def setup(s=s, dtype=dtype, mode=mode):
                    torch.manual_seed(0)
                    dt = dtype_of(dtype)
                    m = RegionNonLocal(s.C, s.kernel).to(device=device, dtype=dt)
                    with torch.no_grad():
                        m.W[1].weight.fill_(1.0)
                    m.train()
                    x = torch.randn(s.N, s.C, s.T, s.H, s.W, generator=torch.Generator().manual_seed(1))
                    x = x.to(device=device, dtype=dt)
                    return {"x": x, "module": m, "params": reference_state(m)}

                def make_vidops(backend):
                    def run(i):
                        i["module"].attention_backend = backend
                        return i["module"](i["x"])
                    return run

                providers = {
                    "reference": lambda i: reference_block(i["x"], i["params"]),
                    "reference_compiled": lambda i, f=compiled(reference_block): f(i["x"], i["params"]),
                }
                providers.update(vidops_providers(ATTENTION_OP, device, make_vidops))
                if mode == "fwd+bwd":
                    providers = {k: _clearing_grads(f) for k, f in providers.items()}
                t = []
                if device.type == "cuda" and mode == "fwd+bwd":
                    t.append(Target("speedup", 2.0, "reference", source=ISSUE + ": fwd+bwd >= 2x the reference block"))
                out.append(Case(
                    op=OP, name=s.name(), mode=mode, dtype=dtype, setup=setup, providers=providers,
                    bytes=traffic(s, dtype, mode), flops=flop_count(s) * (1 if mode == "fwd" else 3),
                    shape=s.as_dict(), grad_inputs=("x",) if mode == "fwd+bwd" else (), targets=t,
                    note="BN in training mode, gamma 1; fwd+bwd: gradients of x and every parameter",
                ))
    return out


def _clearing_grads(forward):
    """The provider with its parameters' .grad cleared first (outside autograd's timing, inside the
    repetition: a training step zeroes them too)."""
    def run(i):
        for p in i["module"].parameters():
            p.grad = None
        for p in i["params"].values():
            p.grad = None
        return forward(i)
    return run
